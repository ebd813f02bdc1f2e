"""`biomedclip train`: prepare a run folder, run open_clip_train on our shards, export the bundle.

The trainer itself is open_clip's (``open_clip_train.main``): its data loader reads our
WebDataset shards directly, its loss, optimizer and scheduler are the ones the paper used. This
module only decides the arguments (recipe → flags, shards → URLs and sample counts), launches it
in this process or under torchrun, follows its log, and turns the last checkpoint into a model
bundle that plain open_clip loads.

Run folder::

    RUN/init_bundle/        the model the run starts from (built-in name → fresh bundle)
    RUN/logs/<name>/        open_clip_train's own output: out.log, checkpoints/, tensorboard/
    RUN/metrics.csv         every logged step: loss, learning rate, samples/s
    RUN/bundle/             the trained model as an open_clip local-dir: bundle
    RUN/summary.json        samples/s, final loss, validation retrieval metrics
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from biomedclip.errors import BiomedclipError
from biomedclip.models.checkpoints import latest_checkpoint, resolve_model_folder
from biomedclip.train.monitor import LogFollower, StepRecord, plot_loss, read_log, write_csv
from biomedclip.train.recipe import Recipe, open_clip_args, plan_schedule


class TrainError(BiomedclipError, RuntimeError):
    """A run that cannot start or did not produce a checkpoint; the message says what to do."""


@dataclass
class TrainConfig:
    """One training run."""

    data: Path
    out: Path
    model: str = "biomedclip-tiny"
    recipe: Recipe = field(default_factory=Recipe)
    tokenizer: Path | None = None
    text_init: Path | None = None
    nproc: int = 1
    torchrun_args: list[str] = field(default_factory=list)
    resume: bool = False
    name: str = "train"
    device: str = "auto"  # auto|cpu|cuda|cuda:N — the runtime's rules; several processes = one GPU each
    allow_tiny_data: bool = False  # train even when the train split holds fewer pairs than one batch


def split_shards(data: Path, split: str) -> tuple[list[Path], int]:
    """The tar shards of one split and its sample count (``[], 0`` when the build has no such split).

    The sample count comes from the build's stats (open_clip_train needs it up front), so only a
    finished build can be trained on.
    """
    from biomedclip.data.build_folder import BuildFolder, NotABuildError

    try:
        build = BuildFolder(data, finished=True)
    except NotABuildError as exc:
        raise TrainError(f"--data: {exc}") from exc
    shards = build.shards(split)
    samples = build.samples(split)
    if not shards or not samples:
        return [], 0
    return shards, samples


def data_warnings(config: TrainConfig, n_train: int, n_val: int) -> list[str]:
    """Refuse a train split smaller than one batch; return warnings about the data (no val split).

    open_clip_train resamples shards, so a build with a handful of pairs "trains" without
    complaint: one pair seen hundreds of times per epoch teaches the model nothing but that pair.
    ``allow_tiny_data`` is for smoke tests that want exactly that.
    """
    global_batch = config.recipe.batch_size * config.nproc
    if n_train < global_batch and not config.allow_tiny_data:
        per = f" ({config.recipe.batch_size} × {config.nproc} processes)" if config.nproc > 1 else ""
        raise TrainError(
            f"{config.data}: the train split holds {n_train:,} pair(s), fewer than one batch of {global_batch:,}"
            f"{per}; every batch would repeat the same pairs. Build more data, lower --batch-size to at most "
            f"{max(1, n_train // config.nproc):,}, or pass --allow-tiny-data to train anyway")
    notes = []
    if n_val == 0:
        notes.append(f"{config.data} has no val split: training runs without validation (no val loss or "
                     "retrieval metrics in the summary); build with e.g. --splits train=0.9,val=0.1")
    return notes


def shard_urls(shards: list[Path]) -> str:
    # open_clip_train accepts several shard paths joined with '::'
    return "::".join(str(p.resolve()) for p in shards)


def prepare_init_bundle(config: TrainConfig) -> Path:
    """The bundle training starts from (open_clip_train reads only bundles).

    The user's bundle as it is; a run folder's ``bundle/``; a checkpoint (a file, or a run folder
    stopped before its bundle was written) exported to ``RUN/init_bundle``; a fresh
    ``RUN/init_bundle`` for a built-in (or hub) name.
    """
    from biomedclip.models.factory import create_bundle, export_bundle, load_model

    model = config.model
    target = config.out / "init_bundle"
    if model.startswith("local-dir:"):
        return Path(model.removeprefix("local-dir:")).resolve()
    checkpoint: Path | None = None
    if Path(model).is_dir():
        kind, found = resolve_model_folder(model)
        if kind == "bundle":
            return found.resolve()
        checkpoint = found
    elif Path(model).is_file():
        checkpoint = Path(model)
    if target.exists() and config.resume:
        return target
    if checkpoint is not None:
        return export_bundle(load_model(checkpoint, tokenizer_dir=config.tokenizer), target, overwrite=True)
    return create_bundle(target, model, tokenizer_dir=config.tokenizer, text_init=config.text_init,
                         seed=config.recipe.seed, overwrite=True)


class _BelowWarning(logging.Filter):
    """Lets only warnings and errors through (for handlers that write to the user's terminal)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def _run_in_process(argv: list[str], log_file: Path) -> None:
    """open_clip_train.main in this process, its console logging sent to a file instead of ours.

    open_clip_train adds a stderr handler to the root logger and sets every logger to INFO. For the
    run, handlers already on the root logger (e.g. one ``logging.basicConfig`` installed) are taken
    off and handlers of other loggers that write to the terminal (transformers has its own) let only
    warnings through; everything is restored afterwards, so the caller's console (progress bars on
    stdout) stays readable while open_clip's full log goes to ``log_file`` and the run's out.log.
    """
    from open_clip_train.main import main as open_clip_main

    root = logging.getLogger()
    handlers_before = list(root.handlers)
    levels_before = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    root_level = root.level
    quiet = _BelowWarning()
    terminal_handlers = [h for name in logging.root.manager.loggerDict
                         for h in getattr(logging.getLogger(name), "handlers", [])]
    for handler in handlers_before:
        root.removeHandler(handler)
    for handler in terminal_handlers:
        handler.addFilter(quiet)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as sink, contextlib.redirect_stderr(sink):
        try:
            try:
                status = open_clip_main(argv)
            except SystemExit as exc:  # its argparse rejects an argument: usage text on stderr, then exit 2
                status = exc.code
        finally:
            for handler in set(root.handlers) - set(handlers_before):
                root.removeHandler(handler)
                handler.close()
            for handler in handlers_before:
                root.addHandler(handler)
            for handler in terminal_handlers:
                handler.removeFilter(quiet)
            for name, level in levels_before.items():
                logging.getLogger(name).setLevel(level)
            root.setLevel(root_level)
    if status not in (None, 0):
        raise TrainError(f"open_clip_train stopped with status {status}{_trainer_error(log_file)}; see {log_file}")


def _run_torchrun(argv: list[str], nproc: int, torchrun_args: list[str], log_file: Path) -> None:
    """open_clip_train.main under torchrun: ``nproc`` processes here, node args passed through."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if not any(a.startswith(("--nnodes", "--rdzv", "--master")) for a in torchrun_args):
        launcher.append("--standalone")
    threads = max(1, (os.cpu_count() or 1) // nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    args_file = log_file.parent / "trainer_args.json"
    args_file.write_text(json.dumps(argv))
    with open(log_file, "a") as sink:
        result = subprocess.run([*launcher, *torchrun_args, "-m", "biomedclip.train.worker", str(args_file)],
                                stdout=sink, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise TrainError(f"torchrun exited with status {result.returncode}{_trainer_error(log_file)}; see {log_file}")


def _trainer_error(log_file: Path) -> str:
    """``: <reason>`` from the trainer's log, or ``""``: its last argparse ``error:`` line or exception line.

    The trainer's stderr goes to ``log_file``, so without this a rejected argument would stop the
    run with nothing on the user's terminal but a status code.
    """
    try:
        lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-200:]
    except OSError:
        return ""
    for line in reversed(lines):
        _, sep, reason = line.partition("error: ")  # argparse: "main.py: error: argument --x: invalid choice …"
        if sep and reason.strip():
            return f": {reason.strip()}"
    for line in reversed(lines):
        if re.match(r"\w+(Error|Exception): \S", line):  # the last line of a traceback
            return f": {line.strip()}"
    return ""


def train(config: TrainConfig, on_step: Callable[[StepRecord], None] | None = None,
          on_start: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) training; return the summary also written to RUN/summary.json."""
    from biomedclip.models.runtime import resolve_device

    device = resolve_device(config.device)  # fails at once when the GPU asked for is not here
    precision = config.recipe.resolved_precision(device)  # and on a precision name open_clip would refuse
    if device.type == "cuda" and config.nproc > 1:
        import torch

        if config.nproc > torch.cuda.device_count():
            raise TrainError(f"--nproc {config.nproc} on CUDA means one process per GPU, but this node has "
                             f"{torch.cuda.device_count()}; use --nproc {torch.cuda.device_count()} (per node)")
    elif device.type not in ("cuda", "cpu"):
        raise TrainError(f"training runs on CUDA GPUs or the CPU, not on {device}")
    out = Path(config.out).resolve()
    run_logs = out / "logs" / config.name
    if (run_logs / "out.log").exists() and not config.resume:
        raise TrainError(f"{out} already holds a run: pass --resume to continue it, or choose a new --out")
    if config.resume and not (run_logs / "out.log").exists():
        raise TrainError(f"nothing to resume in {out}: no run log at {run_logs / 'out.log'}")
    train_shards, n_train = split_shards(config.data, "train")
    if not train_shards:
        raise TrainError(f"no training shards in {config.data}/train: build shards with a non-zero train share")
    val_shards, n_val = split_shards(config.data, "val")
    notes = data_warnings(config, n_train, n_val)
    if config.resume and latest_checkpoint(run_logs) is None:
        notes.append(f"--resume: the run in {out} stopped before its first epoch ended, so it saved no checkpoint "
                     "(open_clip_train writes one at the end of each epoch); training starts again from step 0")
    out.mkdir(parents=True, exist_ok=True)  # only once the data is known to be trainable
    schedule = plan_schedule(config.recipe, n_train, world_size=config.nproc)
    bundle = prepare_init_bundle(config)
    argv = open_clip_args(
        config.recipe, schedule, model=f"local-dir:{bundle}", train_data=shard_urls(train_shards),
        val_data=shard_urls(val_shards) if val_shards else None, val_samples=n_val, logs=out / "logs",
        name=config.name, resampled=True, world_size=config.nproc, resume="latest" if config.resume else None,
        device=device,
    )
    plan = {"train_samples": n_train, "val_samples": n_val, "schedule": asdict(schedule),
            "device": str(device) if config.nproc == 1 or device.type == "cpu" else "cuda:LOCAL_RANK",
            "precision": precision, "nproc": config.nproc, "warnings": notes, "argv": argv}
    (out / "plan.json").write_text(json.dumps(plan, indent=2))
    if on_start:
        on_start(plan)

    started = time.monotonic()
    console_log = out / "trainer.log"
    with LogFollower(run_logs / "out.log", on_step or (lambda _: None)):
        if config.nproc == 1:
            _run_in_process(argv, console_log)
        else:
            _run_torchrun(argv, config.nproc, config.torchrun_args, console_log)
    seconds = time.monotonic() - started

    checkpoint = latest_checkpoint(run_logs)
    if checkpoint is None:
        raise TrainError(f"training wrote no checkpoint in {run_logs / 'checkpoints'}; see {console_log}")
    log = read_log(run_logs / "out.log")
    write_csv(log, out / "metrics.csv")
    plot_loss(out / "metrics.csv", out / "loss.png")  # raw per-step loss + one EMA across epochs
    from biomedclip.models.factory import export_bundle, load_model

    export_bundle(load_model(checkpoint, base=bundle), out / "bundle", overwrite=True)
    summary = _summary(log, schedule.total_steps, seconds, checkpoint, out)
    summary["warnings"] = notes
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _summary(log: Any, total_steps: int, seconds: float, checkpoint: Path, out: Path) -> dict[str, Any]:
    steps = log.steps
    rates = [s.samples_per_s for s in steps[1:]] or [s.samples_per_s for s in steps]
    last_eval = log.evals[-1] if log.evals else {}
    return {
        "steps_logged": len(steps),
        "total_steps": total_steps,
        "wall_seconds": round(seconds, 1),
        "samples_per_s": round(sum(rates) / len(rates), 1) if rates else None,
        "first_loss": steps[0].loss if steps else None,
        "final_loss": steps[-1].loss if steps else None,
        "val": {k: last_eval[k] for k in last_eval if "R@" in k or "median_rank" in k or k == "clip_val_loss"},
        "checkpoint": str(checkpoint),
        "bundle": str(out / "bundle"),
        "metrics_csv": str(out / "metrics.csv"),
        "loss_plot": str(out / "loss.png") if steps else None,
        "tensorboard": str(checkpoint.parent.parent / "tensorboard"),
    }

