"""CLI for evaluation: ``biomedclip eval zeroshot|retrieval|linear-probe|suite|tasks`` and ``data overlap``.

Registered by the top-level ``biomedclip.cli`` (``app.add_typer(eval_app, name="eval")`` and
``data_app.command("overlap")(overlap_command)``). Commands stay thin: each builds a
:class:`~biomedclip.evaluate.suite.SuiteConfig` and calls :func:`~biomedclip.evaluate.suite.run_suite`,
which writes results.json, report.md and the plots into ``--out``. Heavy imports happen inside
the commands so ``biomedclip --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from biomedclip.errors import BiomedclipError
from biomedclip.io.cli import (
    AxisOpt,
    CaptionColOpt,
    LabelColOpt,
    PathColOpt,
    SliceOpt,
    SplitColOpt,
    WindowOpt,
    csv_columns,
    read_options,
)
from biomedclip.models.names import check_model_option
from biomedclip.models.runtime import DEVICE_HELP, IMAGE_BATCH, PRECISION_HELP
from biomedclip.options import DeviceOpt, PrecisionOpt, runtime_from_options
from biomedclip.ui import console, progress_bar

eval_app = typer.Typer(
    help="Evaluate a model: zero-shot classification, retrieval, linear probes (k-shot, label fractions), suites. "
         "Every run writes results.json, report.md and PNG plots into its own --out folder; image features are "
         "cached per (model, dataset) so repeated runs do not re-embed.",
    no_args_is_help=True,
)

ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="Built-in name, local-dir:BUNDLE (or a bundle folder), hf-hub:ORG/NAME, or an "
                          "open_clip_train checkpoint / run folder.", callback=check_model_option)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Report folder for this run (results.json, report.md, "
                                                            "PNGs); must not already hold a report.")]
SplitOpt = Annotated[str, typer.Option(help="Split to evaluate (train, val or test).")]
SeedOpt = Annotated[int, typer.Option(help="Seed for bootstrap resampling, subsets and k-shot draws.")]
BootOpt = Annotated[int, typer.Option("--bootstrap", min=10, help="Bootstrap resamples for the confidence intervals.")]
LevelOpt = Annotated[float, typer.Option(min=0.5, max=0.999, help="Confidence level of the intervals.")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Feature cache folder (default $BIOMEDCLIP_CACHE or ~/.cache/biomedclip/features).")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Embed from scratch and store nothing.")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Evaluate at most N items per split (seeded random "
                                                            "subset) for a quick run.")]
BatchOpt = Annotated[int | None, typer.Option(min=1, metavar="N", help=f"Images per forward pass (default: "
                                                                      f"{IMAGE_BATCH['cpu']} on CPU, "
                                                                      f"{IMAGE_BATCH['cuda']} on CUDA).")]
TokOpt = Annotated[Path | None, typer.Option(help="Tokenizer folder, for built-in (random-init) models.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Write into an --out folder that already holds a report.")]


def _check_columns(data: Path, columns: Any, needed: str) -> Any:
    """Resolve a CSV's columns before the model loads: a missing column fails in a second, not after loading.

    ``needed`` is the role besides the path this kind of evaluation reads (label or caption); column
    flags on data that is not a CSV fail too (they would be ignored).
    """
    from biomedclip.evaluate.datasets import DatasetError, read_csv_table
    from biomedclip.io.columns import find_column

    if data.suffix.lower() != ".csv" or not data.is_file():
        if not columns.is_default():
            raise DatasetError(f"{data}: {', '.join(columns.flags())} name CSV columns, but --data is not a .csv")
        return columns
    header, _ = read_csv_table(data)
    for role in ("path", needed):
        find_column(header, role, columns, data, error=DatasetError)
    find_column(header, "split", columns, data, required=False, error=DatasetError)
    return columns


def _numbers(value: str, kind: type, hint: str) -> list[Any]:
    try:
        return [kind(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"a comma-separated list of numbers, got {value!r}", param_hint=hint) from exc


@contextmanager
def _live_progress() -> Iterator[Any]:
    """A ``progress(stage, done, total)`` callback drawing one bar per stage."""
    with progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, info="")
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and value == value and value not in (float("inf"), float("-inf"))


def _fmt(value: Any) -> str:
    """A metric as a person reads it: 4 decimals, '–' for undefined (NaN/None), integers as they are."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else str(value)
    if not _finite(value):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else f"{value:,}"


def _cache_text(hits: Any) -> str:
    """``True`` / ``{'train': True, 'val': False}`` → 'hit' / 'train hit, val embedded'."""
    def word(hit: Any) -> str:
        return "hit" if hit else "embedded"

    if isinstance(hits, dict):
        return ", ".join(f"{split} {word(hit)}" for split, hit in hits.items())
    return word(hits)


def _print_outcome(outcome: Any, out: Path) -> None:
    from rich.table import Table

    from biomedclip.evaluate.metrics import CLIP_BENCHMARK_METRICS
    from biomedclip.evaluate.report import clip_benchmark_line

    for result in outcome.results:
        table = Table(title=f"{result.name} · {result.kind.replace('_', ' ')} · {result.data.get('evaluated', '')}"
                            f"{' items' if result.data.get('evaluated') else ''}", title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_column("95% CI", justify="right")
        for name, value in result.metrics.items():
            if name in CLIP_BENCHMARK_METRICS:  # aliases: one line below the table, as in report.md
                continue
            ci = result.ci.get(name)
            table.add_row(name, _fmt(value), f"{_fmt(ci[0])} – {_fmt(ci[1])}" if ci and _finite(ci[0]) else "")
        console.print(table)
        if (aliases := clip_benchmark_line(result)) is not None:
            console.print(aliases, highlight=False)
        d = result.details
        if "majority_accuracy" in d:
            console.print(f"majority-class accuracy: {d['majority_accuracy']:.4f}")
        if "chosen_C" in d:
            console.print(f"C chosen on validation: {d['chosen_C']:g}")
        for row in d.get("kshot", {}).get("summary", []):
            console.print(f"  k={row['k']:>2}: accuracy {row['accuracy_mean']:.4f} ± {row['accuracy_sd']:.4f}")
        for row in d.get("fractions", {}).get("summary", []):
            console.print(f"  {row['fraction']:>6.0%} labels: accuracy {row['accuracy_mean']:.4f} ± "
                          f"{row['accuracy_sd']:.4f}")
        skipped = d.get("skipped_items") or []
        if skipped:
            console.print(f"[yellow]{len(skipped)} unreadable item(s) skipped[/yellow], e.g. {skipped[0]['item']}: "
                          f"{skipped[0]['error']}")
        hits = d.get("cache_hit")
        if hits is not None:
            console.print(f"[dim]feature cache: {_cache_text(hits)}[/dim]")
    for err in outcome.errors:
        console.print(f"[red]task failed[/red] {err['task']}: {err['error']}")
    console.print(f"[green]report[/green] {out / 'report.md'} · [green]numbers[/green] {out / 'results.json'}")


def _run(config: Any, out: Path, overwrite: bool) -> None:
    from biomedclip.evaluate.suite import run_suite

    with _live_progress() as progress:
        outcome = run_suite(config, out, overwrite=overwrite, progress=progress)
    if not outcome.results:
        raise BiomedclipError("; ".join(f"{e['task']}: {e['error']}" for e in outcome.errors) + " (no report written)")
    _print_outcome(outcome, out)
    if outcome.errors:
        raise typer.Exit(1)


def _suite(model: str, tasks: list[Any], *, seed: int, bootstrap: int, level: float, cache_dir: Path | None,
           no_cache: bool, batch_size: int | None, tokenizer: Path | None, device: str, precision: str) -> Any:
    from biomedclip.evaluate.suite import SuiteConfig

    runtime_from_options(device, precision)  # a missing GPU or a bad precision fails before anything loads
    return SuiteConfig(model=model, tasks=tasks, seed=seed, bootstrap=bootstrap, level=level, cache_dir=cache_dir,
                       cache=not no_cache, batch_size=batch_size, tokenizer=tokenizer, device=device,
                       precision=precision)


@eval_app.command("zeroshot")
def zeroshot_command(
    model: ModelOpt,
    data: Annotated[Path, typer.Option("--data", "-d", help="Image folder (one sub-folder per class, optionally in "
                                                              "train/val/test), CSV path,label[,split] or "
                                                              "MedMNIST-style .npz.")],
    out: OutOpt,
    task: Annotated[str | None, typer.Option(help="Built-in task (see `biomedclip eval tasks`) or a .json/.txt task "
                                                  "file with class names and prompt templates; default: the "
                                                  "dataset's label names with BiomedCLIP's templates.")] = None,
    split: SplitOpt = "test",
    name: Annotated[str | None, typer.Option(help="Name of the task in the report.")] = None,
    seed: SeedOpt = 0, bootstrap: BootOpt = 1000, level: LevelOpt = 0.95, limit: LimitOpt = None,
    window: WindowOpt = None, slice_index: SliceOpt = None, axis: AxisOpt = -1, batch_size: BatchOpt = None,
    cache_dir: CacheOpt = None, no_cache: NoCacheOpt = False, tokenizer: TokOpt = None, overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "auto",
    path_col: PathColOpt = None, label_col: LabelColOpt = None, split_col: SplitColOpt = None,
) -> None:
    """Zero-shot classification with prompt ensembles, bootstrap CIs, confusion matrix and ROC plots.

    Each class is the mean of its normalised prompt embeddings ("this is an image of {}", …); reports accuracy,
    balanced accuracy, macro-F1, per-class recall and macro one-vs-rest AUROC with 95% bootstrap intervals.
    Multi-label data (CSV labels a|b, .npz 0/1 columns) scores each class against "no {class}".
    """
    from biomedclip.evaluate.suite import TaskConfig

    columns = _check_columns(data, csv_columns(path=path_col, label=label_col, split=split_col), "label")
    cfg = TaskConfig(kind="zeroshot", data=data, name=name, task=task, split=split, limit=limit,
                     read_options=read_options(window, slice_index, axis), **columns.to_dict())
    _run(_suite(model, [cfg], seed=seed, bootstrap=bootstrap, level=level, cache_dir=cache_dir, no_cache=no_cache,
                batch_size=batch_size, tokenizer=tokenizer, device=device, precision=precision), out, overwrite)


@eval_app.command("retrieval")
def retrieval_command(
    model: ModelOpt,
    data: Annotated[Path, typer.Option("--data", "-d", help="Shard build folder (from `biomedclip data build`) or a "
                                                              "CSV with path,caption columns (repeat a path for "
                                                              "several captions).")],
    out: OutOpt,
    split: SplitOpt = "test",
    k: Annotated[str, typer.Option("--k", help="Comma-separated K values for Recall@K.")] = "1,5,10",
    name: Annotated[str | None, typer.Option(help="Name of the task in the report.")] = None,
    seed: SeedOpt = 0, bootstrap: BootOpt = 1000, level: LevelOpt = 0.95,
    limit: Annotated[int | None, typer.Option(min=1, help="Use the first N images (with all their captions).")] = None,
    batch_size: BatchOpt = None, cache_dir: CacheOpt = None, no_cache: NoCacheOpt = False, tokenizer: TokOpt = None,
    overwrite: OverwriteOpt = False, device: DeviceOpt = "auto", precision: PrecisionOpt = "auto",
    path_col: PathColOpt = None, caption_col: CaptionColOpt = None, split_col: SplitColOpt = None,
) -> None:
    """Image→text and text→image Recall@K and median rank, with bootstrap CIs over queries.

    An image with several captions counts as found when any of them is in the top K; ties count against the
    model (a model with constant embeddings scores at chance).
    """
    from biomedclip.evaluate.suite import TaskConfig

    ks = _numbers(k, int, "--k")
    if not ks or min(ks) < 1:
        raise typer.BadParameter("K values must be ≥ 1", param_hint="--k")
    columns = _check_columns(data, csv_columns(path=path_col, caption=caption_col, split=split_col), "caption")
    cfg = TaskConfig(kind="retrieval", data=data, name=name, split=split, limit=limit, ks=ks, **columns.to_dict())
    _run(_suite(model, [cfg], seed=seed, bootstrap=bootstrap, level=level, cache_dir=cache_dir, no_cache=no_cache,
                batch_size=batch_size, tokenizer=tokenizer, device=device, precision=precision), out, overwrite)


@eval_app.command("linear-probe")
def linear_probe_command(
    model: ModelOpt,
    data: Annotated[Path, typer.Option("--data", "-d", help="Classification data with train (and ideally val) and "
                                                              "test splits: folder, CSV or .npz.")],
    out: OutOpt,
    task: Annotated[str | None, typer.Option(help="Task file / built-in task for class names and the metric used "
                                                  "to choose C (e.g. macro_auroc for tcga_til).")] = None,
    shots: Annotated[str, typer.Option(help="k-shot sizes (examples per class), comma-separated; '' to skip.")]
    = "1,2,4,8,16",
    fractions: Annotated[str, typer.Option(help="Label fractions of the training split, comma-separated.")]
    = "0.01,0.1,1.0",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per k-shot size / label fraction (mean ± sd).")] = 3,
    cs: Annotated[str | None, typer.Option(help="Comma-separated C grid for LogisticRegression "
                                                "(default 1e-3 … 1e4, 8 values).")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the task in the report.")] = None,
    seed: SeedOpt = 0, bootstrap: BootOpt = 1000, level: LevelOpt = 0.95, limit: LimitOpt = None,
    window: WindowOpt = None, slice_index: SliceOpt = None, axis: AxisOpt = -1, batch_size: BatchOpt = None,
    cache_dir: CacheOpt = None, no_cache: NoCacheOpt = False, tokenizer: TokOpt = None, overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "auto",
    path_col: PathColOpt = None, label_col: LabelColOpt = None, split_col: SplitColOpt = None,
) -> None:
    """Logistic regression on frozen image features, plus k-shot and label-fraction runs with curves.

    C is chosen on the validation split only (carved from train when missing). k-shot draws k examples per
    class for training and for choosing C, with several seeds (mean ± sd); label fractions train on 1%/10%/100%.
    """
    from biomedclip.evaluate.linear_probe import DEFAULT_CS
    from biomedclip.evaluate.suite import TaskConfig

    shot_list = _numbers(shots, int, "--shots")
    fraction_list = _numbers(fractions, float, "--fractions")
    if any(f <= 0 or f > 1 for f in fraction_list):
        raise typer.BadParameter("fractions must be in (0, 1]", param_hint="--fractions")
    if any(s < 1 for s in shot_list):
        raise typer.BadParameter("shots must be ≥ 1", param_hint="--shots")
    grid = _numbers(cs, float, "--cs") if cs else list(DEFAULT_CS)
    columns = _check_columns(data, csv_columns(path=path_col, label=label_col, split=split_col), "label")
    cfg = TaskConfig(kind="linear-probe", data=data, name=name, task=task, limit=limit,
                     read_options=read_options(window, slice_index, axis), shots=shot_list, seeds=seeds,
                     fractions=fraction_list, cs=grid, **columns.to_dict())
    _run(_suite(model, [cfg], seed=seed, bootstrap=bootstrap, level=level, cache_dir=cache_dir, no_cache=no_cache,
                batch_size=batch_size, tokenizer=tokenizer, device=device, precision=precision), out, overwrite)


@eval_app.command("suite")
def suite_command(
    config: Annotated[Path, typer.Argument(help="YAML file: model, tasks (kind, data, task, split, …) and settings; "
                                                "see docs/evaluation.md.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (default: the config's out:).")]
    = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Evaluate this model instead of the "
                                                                     "config's.", callback=check_model_option)]
    = None,
    overwrite: OverwriteOpt = False,
    device: Annotated[str | None, typer.Option("--device", metavar="DEVICE", help="Override the config's device: "
                                                                                  + DEVICE_HELP)] = None,
    precision: Annotated[str | None, typer.Option("--precision", metavar="PRECISION",
                                                  help="Override the config's precision: " + PRECISION_HELP)] = None,
) -> None:
    """Run every task of a YAML suite against one model and write one combined report."""
    from biomedclip.evaluate.suite import load_suite_config

    cfg = load_suite_config(config)
    if model:
        cfg.model = model
    cfg.device = device or cfg.device
    cfg.precision = precision or cfg.precision
    runtime_from_options(cfg.device, cfg.precision)
    target = out or cfg.out
    if target is None:
        raise BiomedclipError(f"{config}: no out: in the config; pass --out")
    _run(cfg, target, overwrite)


@eval_app.command("tasks")
def tasks_command() -> None:
    """List the built-in task files (class names, templates, the paper's number)."""
    from rich.table import Table

    from biomedclip.evaluate.taskfile import builtin_tasks, load_task

    table = Table(title="Built-in tasks (use with --task NAME)", title_justify="left")
    for col in ("name", "classes", "templates", "paper"):
        table.add_column(col)
    for name in sorted(builtin_tasks()):
        t = load_task(name)
        paper = f"{t.paper['value']} {t.paper['metric']}" if t.paper else "–"
        table.add_row(name, "; ".join(t.classes), "; ".join(t.templates), paper)
    console.print(table)


def overlap_command(
    shards: Annotated[Path, typer.Argument(help="Pretraining shard build (output of `biomedclip data build`).")],
    eval_data: Annotated[Path, typer.Argument(help="Evaluation set: image folder, CSV (path,label or "
                                                   "path,caption), .npz or another shard build.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for overlap.json and overlap.md.")],
    split: Annotated[list[str], typer.Option(help="Pretraining split(s) to compare against, repeatable; 'all' for "
                                                  "every split.")] = ["train"],  # noqa: B006
    eval_split: Annotated[str | None, typer.Option(help="Only this split of the evaluation set.")] = None,
    phash_distance: Annotated[int, typer.Option(min=0, max=64, help="Perceptual match: pHash Hamming distance "
                                                                    "≤ this many bits.")] = 4,
    text_threshold: Annotated[float, typer.Option(min=0.0, max=1.01, help="Near-identical text: TF-IDF cosine ≥ "
                                                                          "this (above 1 disables).")] = 0.9,
    show: Annotated[int, typer.Option(help="How many matches to list on screen and in overlap.md.")] = 20,
) -> None:
    """Leakage check between pretraining shards and an evaluation set: counts plus a list of matches.

    Exact image matches (sha256 of the original file), perceptual matches (pHash, computed as the build does),
    identical texts (normalised) and near-identical texts (character n-gram TF-IDF cosine).
    """
    from rich.table import Table

    from biomedclip.evaluate.overlap import check_overlap, write_overlap

    splits = None if [s.lower() for s in split] == ["all"] else list(split)
    with _live_progress() as progress:
        report = check_overlap(shards, eval_data, shard_splits=splits, eval_split=eval_split,
                               max_distance=phash_distance, text_threshold=text_threshold, progress=progress)
    files = write_overlap(report, out, list_limit=show)
    c = report.counts
    table = Table(title=f"Overlap: {eval_data} vs {shards}", title_justify="left")
    table.add_column("check")
    table.add_column("items matched", justify="right")
    for label, key in (("exact image (sha256)", "exact_image_items"),
                       (f"perceptual image (pHash ≤ {phash_distance})", "perceptual_image_items"),
                       ("identical text", "identical_text_items"),
                       (f"near-identical text (≥ {text_threshold})", "near_identical_text_items")):
        table.add_row(label, f"{c[key]:,}")
    console.print(table)
    console.print(f"{c['eval_images']:,} evaluation images ({c['eval_skipped']} unreadable), {c['eval_texts']:,} "
                  f"texts vs {c['pretraining_images']:,} pretraining images")
    for m in report.matches[:show]:
        score = m.get("distance", m.get("similarity"))
        console.print(f"  {m['type']:<20} {m['eval_item']} ↔ {m['shard_key']} ({score})")
    console.print(f"[green]list[/green] {files['json']} · {files['markdown']}")
