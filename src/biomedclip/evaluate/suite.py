"""Run a list of evaluation tasks against one model and write one combined report.

Every ``biomedclip eval`` command goes through :func:`run_suite`: the single-task commands build
a one-task :class:`SuiteConfig`, ``biomedclip eval suite CONFIG.yaml`` reads one from YAML::

    model: local-dir:run/bundle          # anything load_model accepts
    out: reports/tiny                    # optional; --out overrides
    seed: 0
    bootstrap: 1000                      # resamples for the 95% CIs
    cache_dir: ~/.cache/biomedclip/features   # or `cache: false`
    tasks:
      - kind: zeroshot                   # zeroshot | retrieval | linear-probe
        data: data/pneumoniamnist.npz    # relative paths are relative to this file
        task: pneumoniamnist             # built-in name or .json/.txt task file
        split: test
      - kind: linear-probe
        data: data/pneumoniamnist.npz
        task: pneumoniamnist
        shots: [1, 2, 4, 8, 16]
        seeds: 3
        fractions: [0.01, 0.1, 1.0]
      - kind: retrieval
        data: shards                     # shard build folder or CSV path,caption
        split: test
        ks: [1, 5, 10]
      - kind: zeroshot
        data: data/chestxray.csv         # a CSV with other column names:
        path_col: filename               #   path_col, label_col, caption_col, split_col
        label_col: finding               #   (default: path, label, caption, split)

A task that fails (missing data, labels that match no class, …) is recorded under ``errors`` in
results.json and the report, and the other tasks still run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from biomedclip.errors import BiomedclipError
from biomedclip.evaluate.linear_probe import DEFAULT_CS, DEFAULT_FRACTIONS, DEFAULT_SHOTS
from biomedclip.evaluate.retrieval import DEFAULT_KS
from biomedclip.io.columns import CsvColumns
from biomedclip.io.medical import ReadOptions
from biomedclip.models.runtime import ModelLike, ModelRunner

__all__ = ["KINDS", "SuiteConfig", "SuiteError", "SuiteOutcome", "TaskConfig", "load_suite_config", "run_suite"]

KINDS = ("zeroshot", "retrieval", "linear-probe")
Progress = Callable[[str, int, int], None]


class SuiteError(BiomedclipError, ValueError):
    """The configuration cannot be run; the message names the file/key and the fix."""


@dataclass
class TaskConfig:
    """One task of a suite (fields not used by its kind are ignored)."""

    kind: str
    data: Path
    name: str | None = None
    task: str | None = None
    split: str = "test"
    limit: int | None = None
    read_options: ReadOptions = field(default_factory=ReadOptions)  # suite-file keys window, slice, axis
    ks: Sequence[int] = DEFAULT_KS
    shots: Sequence[int] = DEFAULT_SHOTS
    seeds: int = 3
    fractions: Sequence[float] = DEFAULT_FRACTIONS
    cs: Sequence[float] = DEFAULT_CS
    path_col: str | None = None  # CSV column names (None: the usual path, label, caption, split)
    label_col: str | None = None
    caption_col: str | None = None
    split_col: str | None = None

    def label(self) -> str:
        return self.name or f"{self.kind}:{self.data.name}"

    def columns(self) -> CsvColumns:
        """The CSV column mapping of this task."""
        return CsvColumns(path=self.path_col, label=self.label_col, caption=self.caption_col, split=self.split_col)


@dataclass
class SuiteConfig:
    """A model and the tasks to run on it."""

    model: str
    tasks: list[TaskConfig]
    out: Path | None = None
    seed: int = 0
    bootstrap: int = 1000
    level: float = 0.95
    cache_dir: Path | None = None  # None = default location
    cache: bool = True
    batch_size: int | None = None  # None = the runtime's default for the device (64 on CPU, 256 on CUDA)
    device: str = "auto"
    precision: str = "auto"
    tokenizer: Path | None = None
    title: str = "BiomedCLIP evaluation"
    source: str = "command line"


@dataclass
class SuiteOutcome:
    """What a run produced: the task results, the failures and the report files."""

    results: list[Any]
    errors: list[dict[str, str]]
    files: dict[str, Path]
    model: dict[str, Any] = field(default_factory=dict)


_TASK_KEYS = (set(TaskConfig.__dataclass_fields__) - {"read_options"}) | {"window", "slice", "slice_index", "axis"}
_SUITE_KEYS = {"model", "tasks", "out", "seed", "bootstrap", "level", "cache_dir", "cache", "batch_size",
               "device", "precision", "tokenizer", "title"}


def _path(value: Any, base: Path) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _task_from_dict(raw: Any, index: int, base: Path, where: str) -> TaskConfig:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: tasks[{index}] must be a mapping with at least kind and data")
    unknown = sorted(set(raw) - _TASK_KEYS)
    if unknown:
        raise SuiteError(f"{where}: tasks[{index}] has unknown keys {unknown}; allowed: {sorted(_TASK_KEYS)}")
    kind = str(raw.get("kind", "")).replace("_", "-")
    if kind not in KINDS:
        raise SuiteError(f"{where}: tasks[{index}].kind must be one of {KINDS}, got {raw.get('kind')!r}")
    if "data" not in raw:
        raise SuiteError(f"{where}: tasks[{index}] needs data: (a folder, .csv, .npz or shard build)")
    task = raw.get("task")
    if task is not None and (base / str(task)).exists():
        task = str(base / str(task))
    window = raw.get("window")
    try:
        return TaskConfig(
            kind=kind, data=_path(raw["data"], base), name=raw.get("name"), task=str(task) if task else None,
            split=str(raw.get("split", "test")), limit=int(raw["limit"]) if raw.get("limit") else None,
            read_options=ReadOptions(
                window=(float(window[0]), float(window[1])) if window else None,
                slice_index=int(raw["slice"]) if raw.get("slice") is not None else raw.get("slice_index"),
                axis=int(raw.get("axis", -1))),
            ks=[int(k) for k in raw.get("ks", DEFAULT_KS)],
            shots=[int(k) for k in raw.get("shots", DEFAULT_SHOTS)], seeds=int(raw.get("seeds", 3)),
            fractions=[float(f) for f in raw.get("fractions", DEFAULT_FRACTIONS)],
            cs=[float(c) for c in raw.get("cs", DEFAULT_CS)],
            **{key: str(raw[key]) for key in ("path_col", "label_col", "caption_col", "split_col") if raw.get(key)},
        )
    except (TypeError, ValueError, IndexError) as exc:
        raise SuiteError(f"{where}: tasks[{index}] has a value of the wrong type ({exc})") from exc


def load_suite_config(path: str | Path) -> SuiteConfig:
    """Read a YAML suite file (see the module docstring); relative paths are relative to it."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SuiteError(f"{path}: suite config not found") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SuiteError(f"{path}: not a readable YAML file ({exc})") from exc
    if not isinstance(doc, dict):
        raise SuiteError(f"{path}: the top level must be a mapping with model: and tasks:")
    unknown = sorted(set(doc) - _SUITE_KEYS)
    if unknown:
        raise SuiteError(f"{path}: unknown keys {unknown}; allowed: {sorted(_SUITE_KEYS)}")
    if not doc.get("model"):
        raise SuiteError(f"{path}: needs model: (built-in name, local-dir:BUNDLE, hf-hub:ORG/NAME or checkpoint)")
    tasks = doc.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise SuiteError(f"{path}: needs a non-empty tasks: list")
    base = path.parent.resolve()
    model = str(doc["model"])
    if model.startswith("local-dir:") and not Path(model[len("local-dir:"):]).is_absolute():
        model = f"local-dir:{base / model[len('local-dir:'):]}"
    elif (base / model).exists():
        model = str(base / model)
    try:
        return SuiteConfig(
            model=model, tasks=[_task_from_dict(t, i, base, str(path)) for i, t in enumerate(tasks)],
            out=_path(doc["out"], base) if doc.get("out") else None, seed=int(doc.get("seed", 0)),
            bootstrap=int(doc.get("bootstrap", 1000)), level=float(doc.get("level", 0.95)),
            cache_dir=_path(doc["cache_dir"], base) if doc.get("cache_dir") else None,
            cache=bool(doc.get("cache", True)),
            batch_size=int(doc["batch_size"]) if doc.get("batch_size") else None,
            device=str(doc.get("device", "auto")), precision=str(doc.get("precision", "auto")),
            tokenizer=_path(doc["tokenizer"], base) if doc.get("tokenizer") else None,
            title=str(doc.get("title", "BiomedCLIP evaluation")), source=str(path),
        )
    except (TypeError, ValueError) as exc:
        raise SuiteError(f"{path}: a setting has the wrong type ({exc})") from exc


def _run_task(loaded: ModelRunner, cfg: TaskConfig, suite: SuiteConfig, cache: Any, progress: Progress | None) -> Any:
    from biomedclip.evaluate.datasets import load_classification, load_retrieval
    from biomedclip.evaluate.linear_probe import evaluate_linear_probe
    from biomedclip.evaluate.retrieval import evaluate_retrieval
    from biomedclip.evaluate.taskfile import default_task, load_task
    from biomedclip.evaluate.zeroshot import evaluate_zeroshot

    options = cfg.read_options
    label = cfg.label()

    def report(stage: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: progress(f"{label}: {stage}", done, total)) if progress else None

    common = {"cache": cache, "n_bootstrap": suite.bootstrap, "seed": suite.seed, "level": suite.level,
              "batch_size": suite.batch_size, "name": cfg.name}
    if cfg.kind == "retrieval":
        pairs = load_retrieval(cfg.data, cfg.split, limit=cfg.limit, options=options, columns=cfg.columns())
        return evaluate_retrieval(loaded, pairs, ks=cfg.ks, progress=report(f"embedding {cfg.split}"), **common)
    data = load_classification(cfg.data, options=options, columns=cfg.columns()).limited(cfg.limit, suite.seed)
    task = load_task(cfg.task) if cfg.task else None
    if cfg.kind == "zeroshot":
        task = task or default_task(data)
        return evaluate_zeroshot(loaded, data, task, split=cfg.split, progress=report(f"embedding {cfg.split}"),
                                 **common)
    stage_progress = (lambda stage, done, total: progress(f"{label}: {stage}", done, total)) if progress else None
    return evaluate_linear_probe(loaded, data, task=task, shots=cfg.shots, fractions=cfg.fractions, seeds=cfg.seeds,
                                 cs=cfg.cs, progress=stage_progress, **common)


def model_info(model: ModelLike, source: str) -> dict[str, Any]:
    """What results.json records about the model (and the device/precision it ran with)."""
    from biomedclip.models.runtime import as_runner

    runner = as_runner(model)
    cfg = runner.model_cfg or {}
    return {"name": str(runner.name), "source": source, "fingerprint": runner.weights_sha256(),
            "embed_dim": cfg.get("embed_dim"), "context_length": runner.context_length,
            "image_size": (cfg.get("vision_cfg") or {}).get("image_size"), "temperature": runner.temperature,
            **runner.runtime.describe()}


def run_suite(config: SuiteConfig, out: Path, *, overwrite: bool = False, loaded: ModelLike | None = None,
              progress: Progress | None = None, on_task_done: Callable[[Any], None] | None = None) -> SuiteOutcome:
    """Load the model (unless ``loaded`` is given), run every task, write the report into ``out``.

    Raises :class:`~biomedclip.evaluate.report.ReportError` (output folder in use) or
    :class:`~biomedclip.models.factory.ModelLoadError` before any work; task failures are collected.
    When every task failed, no report is written (``files`` is empty).
    """
    from biomedclip.evaluate.cache import FeatureCache, default_cache_dir
    from biomedclip.evaluate.report import check_out_dir, write_report

    out = check_out_dir(out, overwrite=overwrite)
    from biomedclip.models.runtime import Runtime, as_runner, load_runner

    runtime = Runtime.resolve(config.device, config.precision)  # a missing GPU fails before the model loads
    if loaded is None:
        loaded = load_runner(config.model, device=runtime.device, precision=runtime.precision,
                             tokenizer_dir=config.tokenizer)
    else:
        loaded = as_runner(loaded)
    cache_root = (config.cache_dir or default_cache_dir()) if config.cache else None
    cache = FeatureCache(cache_root)
    results: list[Any] = []
    errors: list[dict[str, str]] = []
    for cfg in config.tasks:
        started = time.perf_counter()
        try:
            result = _run_task(loaded, cfg, config, cache, progress)
        except (ValueError, OSError, KeyError) as exc:  # DatasetError, TaskError, MedicalImageError are ValueErrors
            errors.append({"task": cfg.label(), "kind": cfg.kind, "data": str(cfg.data),
                           "error": f"{type(exc).__name__}: {exc}"})
            continue
        result.seconds = time.perf_counter() - started
        results.append(result)
        if on_task_done is not None:
            on_task_done(result)
    info = model_info(loaded, config.model)
    if not results:  # nothing to report: leave --out untouched so the same command can simply be rerun
        return SuiteOutcome(results, errors, {}, info)
    settings = {"config": config.source, "bootstrap": config.bootstrap, "level": config.level,
                "batch_size": config.batch_size, "cache_dir": str(cache_root) if cache_root else None,
                "tasks": [_task_settings(t) for t in config.tasks]}
    files = write_report(out, results, model=info, seed=config.seed, settings=settings, errors=errors,
                         title=config.title)
    return SuiteOutcome(results, errors, files, info)


def _task_settings(cfg: TaskConfig) -> dict[str, Any]:
    raw = asdict(cfg)
    raw.update(raw.pop("read_options"))  # window, slice_index, axis: flat, as suite files write them
    raw["data"] = str(cfg.data)
    return raw
