"""CLI for the models stage: ``biomedclip tokenizer train|stats`` and ``biomedclip export``.

Registered by the top-level ``biomedclip.cli``: ``app.add_typer(tokenizer_app, name="tokenizer")``
and ``app.command("export")(export_command)``. Commands stay thin — parse, call the library,
print a summary — and heavy imports (torch, transformers) happen inside the commands so
``biomedclip --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from biomedclip.models.names import check_model_option
from biomedclip.models.tokenizer import DEFAULT_CONTEXTS
from biomedclip.ui import console

tokenizer_app = typer.Typer(help="Train and inspect domain WordPiece vocabularies.", no_args_is_help=True)


def _shard_progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("shards · {task.fields[captions]:,} captions"), TimeElapsedColumn(), console=console)


@tokenizer_app.command("train")
def tokenizer_train(
    shards: Annotated[str, typer.Argument(help="Build folder (<dir>/<split>/NNNNN.tar), split folder, .tar or glob.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Tokenizer folder to write.")],
    vocab_size: Annotated[int, typer.Option("--vocab-size", min=16, help="Target vocab size (PubMedBERT: 30522).")]
    = 30522,
    split: Annotated[str, typer.Option(help="Which split's captions to learn from.")] = "train",
    min_frequency: Annotated[int, typer.Option(min=1, help="Minimum pair frequency for a merge.")] = 2,
) -> None:
    """Learn a lower-cased WordPiece vocab ([PAD]=0 … [MASK]=4, PubMedBERT layout) from shard captions."""
    from biomedclip.models.tokenizer import iter_captions, list_shards, train_tokenizer

    shard_list = list_shards(shards, split)
    counted = 0
    with _shard_progress() as bar:
        task = bar.add_task("reading", total=len(shard_list), captions=0)

        def counting():
            nonlocal counted
            for caption in iter_captions(shards, split, on_shard=lambda _: bar.advance(task)):
                counted += 1
                if counted % 1000 == 0:
                    bar.update(task, captions=counted)
                yield caption

        folder = train_tokenizer(counting(), vocab_size, out, min_frequency=min_frequency)
        bar.update(task, captions=counted)
    size = sum(1 for _ in (folder / "vocab.txt").open(encoding="utf-8"))
    console.print(f"[green]vocab of {size:,} tokens[/green] from {counted:,} captions → {folder}")
    if size < vocab_size:
        console.print(f"[yellow]note:[/yellow] smaller than --vocab-size {vocab_size:,}: the corpus has no more "
                      f"pairs occurring ≥ {min_frequency}×")
    console.print(f"check context coverage: biomedclip tokenizer stats {shards} --tokenizer {folder}")


def _stats_tables(stats: dict) -> tuple[Table, Table]:
    lengths = Table(title="Tokens per caption (incl. [CLS]/[SEP])")
    for col in ("captions", "vocab", "[UNK] rate", "mean", "p50", "p90", "p95", "p99", "max"):
        lengths.add_column(col, justify="right")
    lengths.add_row(f"{stats['captions']:,}", f"{stats['vocab_size']:,}", f"{stats['unk_rate']:.2%}",
                    f"{stats['mean']:.1f}", *(f"{stats[k]:.0f}" for k in ("p50", "p90", "p95", "p99")),
                    f"{stats['max']:,}")
    fits = Table(title="Captions that fit the context untruncated")
    fits.add_column("context", justify="right")
    fits.add_column("share", justify="right")
    for ctx, share in stats["fits"].items():
        fits.add_row(str(ctx), f"{share:.1%}")
    return lengths, fits


@tokenizer_app.command("stats")
def tokenizer_stats_command(
    shards: Annotated[str, typer.Argument(help="Build folder, split folder, .tar or glob.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", "-t", help="Tokenizer folder (vocab.txt …).")],
    split: Annotated[str, typer.Option(help="Which split's captions to measure.")] = "train",
    plot: Annotated[Path | None, typer.Option(help="Write a token-length histogram PNG here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the numbers as JSON here.")] = None,
    context: Annotated[list[int] | None, typer.Option(help="Context length to report coverage for (repeatable).")]
    = None,
) -> None:
    """Token-length percentiles and the share of captions each context length covers (paper: 256 ≈ 90%)."""
    from biomedclip.models.tokenizer import iter_captions, list_shards, measure_tokens, plot_token_lengths

    contexts = tuple(context) if context else DEFAULT_CONTEXTS
    shard_list = list_shards(shards, split)
    with _shard_progress() as bar:
        task = bar.add_task("tokenising", total=len(shard_list), captions=0)
        measured = measure_tokens(iter_captions(shards, split, on_shard=lambda _: bar.advance(task)), tokenizer)
        bar.update(task, captions=int(measured.lengths.size))
    stats = measured.stats(contexts)
    for table in _stats_tables(stats):
        console.print(table)
    if plot is not None:
        console.print(f"histogram: {plot_token_lengths(measured.lengths, plot, contexts=contexts)}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        console.print(f"numbers: {json_out}")


def export_command(
    source: Annotated[str, typer.Argument(
        help="What to export: checkpoint (epoch_N.pt) or run folder, bundle folder / local-dir:PATH, "
             "hf-hub:ORG/NAME, or a built-in name (fresh random init).", callback=check_model_option)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write.")],
    base: Annotated[str | None, typer.Option(
        help="Architecture of a checkpoint when its run folder does not say (bundle or built-in name).")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer folder to ship instead of the source's.")] = None,
    hf_model_name: Annotated[str | None, typer.Option(
        help="Name to record as the text tower (default: the bundle's absolute path, which plain open_clip "
             "resolves offline).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a model already in --out.")] = False,
) -> None:
    """Write an open_clip local-dir: bundle that plain open_clip.create_model_from_pretrained loads."""
    from biomedclip.models.factory import export_bundle

    with console.status(f"exporting {source}"):
        folder = export_bundle(source, out, base=base, tokenizer_dir=tokenizer, hf_model_name=hf_model_name,
                               overwrite=overwrite)
    files = ", ".join(sorted(p.name for p in folder.iterdir()))
    console.print(f"[green]bundle[/green] {folder} ({files})")
    console.print(f"load it with open_clip.create_model_from_pretrained('local-dir:{folder}')")
