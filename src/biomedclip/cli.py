"""The ``biomedclip`` command: one sub-command (group) per pipeline stage.

Commands stay thin — parse options, call the library, print a summary — so every stage is also
usable from Python and the CLI never holds logic the tests cannot reach.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from biomedclip.ui import build_progress, console, count_progress

app = typer.Typer(
    help="BiomedCLIP, end to end: PMC articles → figure–caption shards → model → evaluation → search.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Build figure–caption datasets from PMC articles.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _register_model_commands() -> None:
    from biomedclip.models.cli import export_command, tokenizer_app

    app.add_typer(tokenizer_app, name="tokenizer")
    app.command("export")(export_command)


_register_model_commands()


def _register_search_commands() -> None:
    from biomedclip.search.cli import register
    from biomedclip.serve.cli import serve_command

    register(app)
    app.command("serve")(serve_command)


_register_search_commands()


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the corpus to (folders/, packages/, labels.jsonl).")],
    articles: Annotated[int, typer.Option("--articles", "-n", min=1, help="Number of articles.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    package_fraction: Annotated[float, typer.Option(min=0.0, max=1.0,
                                                    help="Share of articles written as .tar.gz packages.")] = 0.3,
    broken_fraction: Annotated[float, typer.Option(min=0.0, max=1.0,
                                                   help="Share of deliberately broken items.")] = 0.03,
    overwrite: Annotated[bool, typer.Option(help="Replace a corpus already in OUT.")] = False,
) -> None:
    """Write a synthetic PMC-style corpus (JATS + figures) whose images show what captions say."""
    from biomedclip.synth import synthesize

    try:
        with count_progress("synthesising", articles) as progress:
            summary = synthesize(out, articles, seed=seed, workers=workers, package_fraction=package_fraction,
                                 broken_fraction=broken_fraction, progress=progress, overwrite=overwrite)
    except FileExistsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"[green]wrote[/green] {summary.articles} articles ({summary.packages} packages, "
                  f"{summary.figures} figures) to {out}")


@data_app.command("build")
def data_build(
    sources: Annotated[list[str], typer.Argument(
        help="Article sources, any mix: folders of *.nxml/*.xml with media beside them, PMCxxxx.tar.gz "
             "packages, or fsspec URLs (s3://pmc-oa-opendata/..., https://..., file://...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (shards, manifest, stats).")],
    executor: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    workers: Annotated[int, typer.Option(help="Worker processes / Ray CPUs (0 = all cores).")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted build in --out.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit non-zero if any item had an error.")] = False,
    splits: Annotated[str, typer.Option(help="Split shares by article, e.g. train=0.8,val=0.1,test=0.1.")]
    = "train=0.951,val=0.001,test=0.048",
    shard_size: Annotated[int, typer.Option(min=1, help="Samples per shard.")] = 1000,
    max_side: Annotated[int, typer.Option(min=16, help="Cap on the stored image's long side (px).")] = 512,
    min_caption_chars: Annotated[int, typer.Option(min=0, help="Drop shorter captions.")] = 20,
    max_caption_chars: Annotated[int, typer.Option(min=1, help="Drop longer captions.")] = 20_000,
    min_image_side: Annotated[int, typer.Option(min=1, help="Drop images whose shorter side is smaller.")] = 64,
    max_aspect_ratio: Annotated[float, typer.Option(min=1.0, help="Drop images more elongated than this.")] = 10.0,
    phash_distance: Annotated[int, typer.Option(min=0, max=16,
                                                help="Perceptual-duplicate threshold (Hamming bits).")] = 4,
    no_dedup: Annotated[bool, typer.Option(help="Keep duplicates (exact and perceptual).")] = False,
    storage_option: Annotated[list[str], typer.Option(
        help="fsspec storage option key=value, repeatable (e.g. endpoint_url=http://127.0.0.1:9000).")] = [],  # noqa: B006
    ray_address: Annotated[str, typer.Option(help="Connect to an existing Ray cluster (default: start one).")] = "",
    checkpoint_seconds: Annotated[float, typer.Option(hidden=True, help="Seconds between checkpoints.")] = 2.0,
) -> None:
    """Extract figure–caption pairs from PMC articles into WebDataset shards + manifest.parquet."""
    from biomedclip.data.executors import default_workers
    from biomedclip.data.filters import FilterConfig
    from biomedclip.data.pipeline import BuildConfig, BuildError, build
    from biomedclip.data.sources import SourceError, parse_storage_options
    from biomedclip.data.splits import parse_splits
    from biomedclip.data.summary import print_summary

    if executor not in ("local", "ray"):
        raise typer.BadParameter("use 'local' or 'ray'", param_hint="--executor")
    try:
        split_shares = parse_splits(splits)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--splits") from exc
    filters = FilterConfig(
        min_caption_chars=min_caption_chars, max_caption_chars=max_caption_chars, min_image_side=min_image_side,
        max_aspect_ratio=max_aspect_ratio, phash_max_distance=phash_distance,
        dedup_exact=not no_dedup, dedup_perceptual=not no_dedup,
    )
    config = BuildConfig(
        sources=list(sources), out=out, splits=split_shares, filters=filters, max_side=max_side,
        shard_size=shard_size, executor=executor, workers=workers or default_workers(),  # type: ignore[arg-type]
        storage_options=parse_storage_options(storage_option) or None, ray_address=ray_address or None,
        checkpoint_seconds=checkpoint_seconds,
    )
    try:
        with build_progress() as show:
            stats = build(config, resume=resume, progress=show)
    except (BuildError, SourceError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print_summary(stats, console)
    console.print(f"[green]shards, manifest.parquet and stats.json in[/green] {out}")
    if strict and stats["error_count"]:
        console.print(f"[red]--strict: {stats['error_count']} item errors[/red] (see {out / 'errors.jsonl'})")
        raise typer.Exit(1)


@data_app.command("captions")
def data_captions(
    sources: Annotated[list[str], typer.Argument(
        help="Article sources, as for `data build`: folders, PMCxxxx.tar.gz packages, fsspec URLs.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (captions.parquet, errors.jsonl, "
                                                          "stats.json).")],
    metadata: Annotated[bool, typer.Option(help="Add article title, journal, year, type and licence.")] = False,
    citing_sentences: Annotated[bool, typer.Option(help="Add the body sentences citing each figure.")] = False,
    executor: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    workers: Annotated[int, typer.Option(help="Worker processes / Ray CPUs (0 = all cores).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT/captions.parquet if it exists.")] = False,
    storage_option: Annotated[list[str], typer.Option(
        help="fsspec storage option key=value, repeatable.")] = [],  # noqa: B006
    ray_address: Annotated[str, typer.Option(help="Connect to an existing Ray cluster (default: start one).")] = "",
) -> None:
    """Dump every figure's caption to Parquet without reading any image (fast; for text-only uses).

    One row per <fig>: key, pmcid, pmid, doi, fig_id, label, caption_title, caption, graphics,
    source; --metadata and --citing-sentences add columns (and cost). Figures without a caption
    are kept with an empty one, so counts match the articles.
    """
    from biomedclip.data.captions import CaptionsConfig, CaptionsError, dump_captions
    from biomedclip.data.executors import default_workers
    from biomedclip.data.sources import SourceError, parse_storage_options
    from biomedclip.ui import progress_bar

    if executor not in ("local", "ray"):
        raise typer.BadParameter("use 'local' or 'ray'", param_hint="--executor")
    config = CaptionsConfig(
        sources=list(sources), out=out, metadata=metadata, citing_sentences=citing_sentences,
        executor=executor, workers=workers or default_workers(), overwrite=overwrite,  # type: ignore[arg-type]
        storage_options=parse_storage_options(storage_option) or None, ray_address=ray_address or None,
    )
    try:
        with progress_bar() as bar:
            task = bar.add_task("reading captions", total=None, info="")
            stats = dump_captions(config, progress=lambda p: bar.update(
                task, completed=p.articles, info=f"figures {p.figures:,} · errors {p.errors:,}"))
    except (CaptionsError, SourceError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    articles, figures = stats["articles"], stats["figures"]
    console.print(
        f"{articles['seen']:,} articles ({articles['failed']:,} failed), {figures['found']:,} figures "
        f"({figures['with_caption']:,} with a caption) → [green]{out / 'captions.parquet'}[/green]"
    )
    if stats["error_count"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats["errors"].items()))
        console.print(f"[yellow]{stats['error_count']} errors[/yellow] ({reasons}); see {out / 'errors.jsonl'}")


@data_app.command("stats")
def data_stats(
    folder: Annotated[Path, typer.Argument(help="A build's output folder.")],
    plot: Annotated[Path | None, typer.Option(help="Where to write the caption-length histogram PNG "
                                                    "(default FOLDER/caption_lengths.png).")] = None,
    errors: Annotated[int, typer.Option(help="How many error items to list.")] = 10,
) -> None:
    """Summarise a build: counts, splits, drop and error reasons, caption-length histogram."""
    from biomedclip.data.summary import caption_lengths, load_stats, plot_caption_histogram, print_summary

    try:
        stats = load_stats(folder)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    lengths = caption_lengths(folder)
    print_summary(stats, console, lengths, max_errors=errors)
    target = plot_caption_histogram(lengths, plot or folder / "caption_lengths.png")
    console.print(f"caption-length histogram: {target}")


@app.command("train")
def train_command(
    data: Annotated[Path, typer.Option(help="Shard build folder (output of `data build`): train/ and val/ splits.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (logs, checkpoints, bundle, metrics.csv).")],
    model: Annotated[str, typer.Option(help="Built-in name (biomedclip-tiny, biomedclip-small, "
                                            "biomedclip-vit-b16-bert256) or local-dir:BUNDLE to continue from.")]
    = "biomedclip-tiny",
    tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer folder for a built-in model "
                                                        "(from `biomedclip tokenizer train`).")] = None,
    text_init: Annotated[Path | None, typer.Option(help="Local HF BERT folder to initialise the text tower "
                                                        "(e.g. PubMedBERT), as in the paper.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training split.")] = 1,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps instead of --epochs.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Per-process batch size.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (paper: 5e-4).")] = 5e-4,
    warmup: Annotated[int, typer.Option(help="Warm-up steps (paper: 2000; capped at 10% of the run).")] = 2000,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (paper: 0.2).")] = 0.2,
    precision: Annotated[str, typer.Option(help="auto (bf16 autocast where supported), amp_bf16, fp32, …")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="Data-loader workers per process.")] = 1,
    grad_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory.")] = False,
    patch_dropout: Annotated[float, typer.Option(min=0.0, max=0.95, help="Drop this share of image patches.")] = 0.0,
    lock_image: Annotated[bool, typer.Option(help="Freeze the image tower (LiT).")] = False,
    lock_text: Annotated[bool, typer.Option(help="Freeze the text tower.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")] = False,
    nproc: Annotated[int, typer.Option(min=1, help="Processes (torchrun, gloo on CPU / nccl on GPU).")] = 1,
    torchrun_arg: Annotated[list[str], typer.Option(
        help="Passed to torchrun, repeatable: --torchrun-arg=--nnodes=2 --torchrun-arg=--node-rank=0 "
             "--torchrun-arg=--master-addr=HOST.")] = [],  # noqa: B006
) -> None:
    """Pretrain with the BiomedCLIP recipe (open_clip_train on our shards); export RUN/bundle."""
    from biomedclip.train.launch import TrainConfig, TrainError
    from biomedclip.train.recipe import Recipe

    recipe = Recipe(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup,
                    weight_decay=weight_decay, precision=precision, workers=workers,
                    grad_checkpointing=grad_checkpointing, patch_dropout=patch_dropout, lock_image=lock_image,
                    lock_text=lock_text, seed=seed)
    config = TrainConfig(data=data, out=out, model=model, recipe=recipe, tokenizer=tokenizer, text_init=text_init,
                         nproc=nproc, torchrun_args=list(torchrun_arg), resume=resume)
    try:
        summary = run_training_with_progress(config)
    except TrainError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print_train_summary(summary)


def run_training_with_progress(config) -> dict:
    """Train with a live bar (loss, samples/s); shared by `train` and the demo."""
    from biomedclip.train.launch import train
    from biomedclip.ui import progress_bar

    with progress_bar() as bar:
        task = bar.add_task("training", total=None, info="preparing model and data …")
        steps_per_epoch = [1]

        def started(plan: dict) -> None:
            steps_per_epoch[0] = plan["schedule"]["steps_per_epoch"]
            bar.update(task, total=plan["schedule"]["total_steps"],
                       info=f"{plan['train_samples']:,} pairs · {plan['precision']} · {plan['nproc']} proc")

        def step(record) -> None:
            spe = steps_per_epoch[0]
            done = record.epoch * spe + round(record.samples_in_epoch / max(1, record.samples_per_epoch) * spe)
            bar.update(task, completed=done,
                       info=f"loss {record.loss:.3f} · {record.samples_per_s:,.0f} samples/s")

        return train(config, on_step=step, on_start=started)


def print_train_summary(summary: dict) -> None:
    """The numbers a researcher checks first after a run."""
    from rich.table import Table

    table = Table(title="Training run", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("steps", f"{summary['total_steps']:,}")
    table.add_row("samples/s", str(summary["samples_per_s"]))
    table.add_row("loss first → final", f"{summary['first_loss']} → {summary['final_loss']}")
    for key in ("image_to_text_R@1", "image_to_text_R@5", "image_to_text_R@10",
                "text_to_image_R@1", "text_to_image_R@5", "text_to_image_R@10"):
        if key in summary["val"]:
            table.add_row(f"val {key}", f"{summary['val'][key]:.3f}")
    table.add_row("wall time", f"{summary['wall_seconds']} s")
    console.print(table)
    console.print(f"bundle: {summary['bundle']}\nmetrics: {summary['metrics_csv']}\n"
                  f"TensorBoard: tensorboard --logdir {summary['tensorboard']}")


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Output folder (an earlier demo output there is replaced).")]
    = Path("demo_out"),
    articles: Annotated[int | None, typer.Option(min=50, help="Synthetic articles (default 2000; --small: 400).")]
    = None,
    steps: Annotated[int | None, typer.Option(min=10, help="Training steps (default 800; --small: 240).")] = None,
    small: Annotated[bool, typer.Option(help="A reduced run (~3 min) for tests and a first look.")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes (0 = all cores).")] = 0,
) -> None:
    """The whole system on a synthetic PMC-style corpus, in one command (≈10 min on 2 CPU cores).

    Synthesise articles → build shards → train the domain tokenizer → pretrain biomedclip-tiny →
    evaluate on the held-out test split against the untrained model → embed, index and search →
    OUT/report.md. Every step prints the CLI command that repeats it.
    """
    from dataclasses import replace

    from biomedclip.demo import DemoConfig, run_demo

    config = DemoConfig.small(workers) if small else DemoConfig(workers=workers)
    if articles:
        config = replace(config, articles=articles)
    if steps:
        config = replace(config, steps=steps)
    try:
        run_demo(out, config, console=console)
    except FileExistsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _register_eval_commands() -> None:
    from biomedclip.evaluate.cli import eval_app, overlap_command

    app.add_typer(eval_app, name="eval")
    data_app.command("overlap")(overlap_command)


_register_eval_commands()


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
