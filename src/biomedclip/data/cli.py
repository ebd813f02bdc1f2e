"""CLI for the data stage: ``biomedclip data synth|build|update|captions|stats``.

Registered by the top-level ``biomedclip.cli`` (``app.add_typer(data_app, name="data")``; the
evaluation stage adds ``data overlap`` to the same group). Commands stay thin — parse options,
call the library, print a summary — and import the pipeline inside the command so
``biomedclip --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from biomedclip.ui import build_progress, console, count_progress, resumable

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

    with count_progress("synthesising", articles) as progress:
        summary = synthesize(out, articles, seed=seed, workers=workers, package_fraction=package_fraction,
                             broken_fraction=broken_fraction, progress=progress, overwrite=overwrite)
    console.print(f"[green]wrote[/green] {summary.articles} articles ({summary.packages} packages, "
                  f"{summary.figures} figures) to {out}")


@data_app.command("build")
@resumable()
def data_build(
    sources: Annotated[list[str], typer.Argument(
        help="Article sources, any mix: folders of *.nxml/*.xml with media beside them, PMCxxxx.tar.gz "
             "packages, or fsspec URLs (s3://pmc-oa-opendata/..., https://..., file://...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (shards, manifest, stats).")],
    executor: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    workers: Annotated[int, typer.Option(help="Worker processes / Ray CPUs (0 = all cores).")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted build in --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete what an earlier build (failed or finished) left in --out "
                                                 "and start again; only folders a build wrote.")] = False,
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
    pmc_cloud: Annotated[bool | None, typer.Option(
        "--pmc-cloud/--no-pmc-cloud", rich_help_panel="PMC Cloud bucket",
        help="Read s3/http(s) sources as PMC Cloud bucket roots (through the inventory) or as plain folders. "
             "Default: automatic for s3://pmc-oa-opendata/ and any bucket root holding inventory-reports/.")] = None,
    license: Annotated[list[str], typer.Option(  # noqa: A002 - the flag's natural name
        "--license", rich_help_panel="PMC Cloud bucket",
        help="Keep these licence codes (repeatable or comma-separated): 'CC BY', 'cc-by-nc', 'CC0', 'TDM' (author "
             "manuscripts), 'cc' = every Creative Commons licence (default), 'any'.")] = [],  # noqa: B006
    keep_retracted: Annotated[bool, typer.Option(rich_help_panel="PMC Cloud bucket",
                                                 help="Keep retracted articles (dropped by default).")] = False,
    keep_historical_ocr: Annotated[bool, typer.Option(rich_help_panel="PMC Cloud bucket",
                                                      help="Keep scanned historical (OCR) articles.")] = False,
    versions: Annotated[str, typer.Option(rich_help_panel="PMC Cloud bucket",
                                          help="Which version of each PMCID: newest, or newest-published (the newest "
                                               "that is not an author manuscript).")] = "newest",
    pmcids: Annotated[Path | None, typer.Option(rich_help_panel="PMC Cloud bucket",
                                                help="Only these PMCIDs (a file, one per line, e.g. from an "
                                                     "ESearch query); absent ones are counted.")] = None,
    limit: Annotated[int, typer.Option(min=0, rich_help_panel="PMC Cloud bucket",
                                       help="Process at most N articles, newest PMCIDs first (0 = all).")] = 0,
    since: Annotated[Path | None, typer.Option(rich_help_panel="PMC Cloud bucket",
                                               help="Update a previous build folder: only new, changed and removed "
                                                    "articles (see also `data update`).")] = None,
    inventory_snapshot: Annotated[str, typer.Option(rich_help_panel="PMC Cloud bucket",
                                                    help="Use this inventory (YYYY-MM-DDTHH-MMZ, from a previous "
                                                         "stats.json) instead of the newest complete one.")] = "",
    max_attempts: Annotated[int, typer.Option(min=1, rich_help_panel="PMC Cloud bucket",
                                              help="Attempts per request (503 SlowDown, timeouts, resets).")] = 8,
    request_timeout: Annotated[float, typer.Option(min=0.1, rich_help_panel="PMC Cloud bucket",
                                                   help="Seconds before a request times out.")] = 60.0,
) -> None:
    """Extract figure–caption pairs from PMC articles into WebDataset shards + manifest.parquet."""
    from biomedclip.data.executors import default_workers
    from biomedclip.data.filters import FilterConfig
    from biomedclip.data.pipeline import BuildConfig, build
    from biomedclip.data.sources import parse_storage_options
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
    from biomedclip.data.pmc_cloud import CC_LICENSES, PmcOptions, parse_licenses

    pmc = PmcOptions(
        mode="auto" if pmc_cloud is None else "on" if pmc_cloud else "off",
        licenses=parse_licenses(license) if license else CC_LICENSES, keep_retracted=keep_retracted,
        keep_historical_ocr=keep_historical_ocr, versions=versions,  # type: ignore[arg-type]
        pmcids_file=str(pmcids) if pmcids else None, limit=limit or None, since=str(since) if since else None,
        snapshot=inventory_snapshot or None, max_attempts=max_attempts, timeout_s=request_timeout,
    )
    config = BuildConfig(
        sources=list(sources), out=out, splits=split_shares, filters=filters, max_side=max_side,
        shard_size=shard_size, executor=executor, workers=workers or default_workers(),  # type: ignore[arg-type]
        storage_options=parse_storage_options(storage_option) or None, ray_address=ray_address or None,
        checkpoint_seconds=checkpoint_seconds, pmc=pmc,
    )
    with build_progress() as show:
        stats = build(config, resume=resume, overwrite=overwrite, progress=show)
    print_summary(stats, console)
    console.print(f"[green]shards, manifest.parquet and stats.json in[/green] {out}")
    if strict and stats["error_count"]:
        console.print(f"[red]--strict: {stats['error_count']} item errors[/red] (see {out / 'errors.jsonl'})")
        raise typer.Exit(1)


@data_app.command("update")
def data_update(
    previous: Annotated[Path, typer.Argument(help="A finished PMC Cloud build folder (or the last update).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the update's shards, manifest, "
                                                          "removed.parquet and stats.")],
    executor: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    workers: Annotated[int, typer.Option(help="Worker processes / Ray CPUs (0 = all cores).")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted update in --out.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit non-zero if any item had an error.")] = False,
    storage_option: Annotated[list[str], typer.Option(
        help="fsspec storage option key=value, repeatable (credentials are not stored in a build: "
             "pass them again).")] = [],  # noqa: B006
    ray_address: Annotated[str, typer.Option(help="Connect to an existing Ray cluster (default: start one).")] = "",
    max_attempts: Annotated[int, typer.Option(min=1, help="Attempts per request.")] = 8,
    request_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds before a request times out.")] = 60.0,
) -> None:
    """Bring a PMC Cloud build up to date from the bucket's newest inventory, into a new folder.

    Only new articles and versions and changed ones are built (new shards); retracted, withdrawn
    and superseded samples of earlier builds are listed in OUT/removed.parquet. Nothing already
    written is touched. Same settings as PREVIOUS.
    """
    from biomedclip.data.executors import default_workers
    from biomedclip.data.pipeline import build
    from biomedclip.data.pmc_cloud import update_config
    from biomedclip.data.sources import parse_storage_options
    from biomedclip.data.summary import print_summary

    if executor not in ("local", "ray"):
        raise typer.BadParameter("use 'local' or 'ray'", param_hint="--executor")
    config = update_config(previous, out, executor=executor, workers=workers or default_workers(),
                           storage_options=parse_storage_options(storage_option) or None,
                           ray_address=ray_address or None, max_attempts=max_attempts, timeout_s=request_timeout)
    with build_progress() as show:
        stats = build(config, resume=resume, progress=show)
    print_summary(stats, console)
    info = stats.get("pmc_cloud", {})
    console.print(f"[green]update of {previous} in[/green] {out}: {info.get('plan', {}).get('update', {})}; "
                  f"{info.get('tombstones', 0)} samples of earlier builds in {out / 'removed.parquet'}")
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
    from biomedclip.data.captions import CaptionsConfig, dump_captions
    from biomedclip.data.executors import default_workers
    from biomedclip.data.sources import parse_storage_options
    from biomedclip.ui import progress_bar

    if executor not in ("local", "ray"):
        raise typer.BadParameter("use 'local' or 'ray'", param_hint="--executor")
    config = CaptionsConfig(
        sources=list(sources), out=out, metadata=metadata, citing_sentences=citing_sentences,
        executor=executor, workers=workers or default_workers(), overwrite=overwrite,  # type: ignore[arg-type]
        storage_options=parse_storage_options(storage_option) or None, ray_address=ray_address or None,
    )
    with progress_bar() as bar:
        task = bar.add_task("reading captions", total=None, info="")
        stats = dump_captions(config, progress=lambda p: bar.update(
            task, completed=p.articles, info=f"figures {p.figures:,} · errors {p.errors:,}"))
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

    stats = load_stats(folder)
    lengths = caption_lengths(folder)
    print_summary(stats, console, lengths, max_errors=errors)
    target = plot_caption_histogram(lengths, plot or folder / "caption_lengths.png")
    console.print(f"caption-length histogram: {target}")

