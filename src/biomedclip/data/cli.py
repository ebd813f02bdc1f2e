"""CLI for the data stage: ``biomedclip data synth|build|captions|stats``.

Registered by the top-level ``biomedclip.cli`` (``app.add_typer(data_app, name="data")``; the
evaluation stage adds ``data overlap`` to the same group). Commands stay thin — parse options,
call the library, print a summary — and import the pipeline inside the command so
``biomedclip --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from biomedclip.ui import build_progress, console, count_progress

data_app = typer.Typer(help="Build figure–caption datasets from PMC articles.", no_args_is_help=True)


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

