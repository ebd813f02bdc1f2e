"""CLI for using a model: ``biomedclip embed``, ``index``, ``search`` and ``classify``.

Registered on the top-level app by :func:`register`. Commands stay thin — parse, call the
library, print — and import torch/faiss inside the command so ``biomedclip --help`` stays fast.
``--json`` output goes to stdout alone (no progress bars or tables), for scripts.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperCommand

from biomedclip.errors import BiomedclipError
from biomedclip.io.cli import AxisOpt, CaptionColOpt, PathColOpt, SliceOpt, WindowOpt, csv_columns, read_options
from biomedclip.models.names import check_model_option
from biomedclip.models.runtime import IMAGE_BATCH, TEXT_BATCH, ModelRunner, Runtime
from biomedclip.options import DeviceOpt, Fp32Opt, PrecisionOpt, runtime_from_options
from biomedclip.search import IMAGE_CHUNK_SIZE, TEXT_CHUNK_SIZE
from biomedclip.ui import RERUN_HINT, console, print_error, progress_bar, resumable

MODEL_HELP = ("Model: built-in name, local-dir:BUNDLE (e.g. RUN/bundle after training), hf-hub:ORG/NAME "
              "or a checkpoint.")
_SIZE_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9, "T": 1e12, "TB": 1e12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class GreedyListCommand(TyperCommand):
    """Lets list options take several values after one flag: ``--labels "chest x-ray" "brain MRI" …``.

    click has no variadic options, so before parsing, ``--labels a b c`` is rewritten to
    ``--labels a --labels b --labels c``; values run until the next token that starts with ``-``.
    """

    greedy: tuple[str, ...] = ("--labels", "-l", "--templates", "-t")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        flag: str | None = None
        for token in args:
            if token.startswith("-"):
                flag = token.split("=", 1)[0] if token.split("=", 1)[0] in self.greedy else None
                rewritten.append(token)
                if token == "--":
                    flag = None
            elif flag is not None and rewritten[-1] != flag:
                rewritten += [flag, token]
            else:
                rewritten.append(token)
        return super().parse_args(ctx, rewritten)


def parse_size(text: str) -> int:
    """Bytes from '8GB', '512MiB', '1.5G' or a plain number."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise typer.BadParameter(f"not a size: {text!r} (e.g. 8GB, 512MiB, 2e9)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def _load_model(name: str, runtime: Runtime, quiet: bool = False) -> ModelRunner:
    """Load ``name`` onto an already checked runtime (a missing GPU has failed before this)."""
    from biomedclip.models.runtime import load_runner

    if quiet:
        return load_runner(name, device=runtime.device, precision=runtime.precision)
    with console.status(f"loading {name} on {runtime.device} ({runtime.precision})"):
        return load_runner(name, device=runtime.device, precision=runtime.precision)


# -- embed -----------------------------------------------------------------------------------------

def _check_embed_columns(inputs: list[Path], columns: Any, text: bool) -> Any:
    """Check ``--path-col``/``--caption-col`` against the tables among ``inputs`` before the model loads.

    A column flag with no table to apply to, or ``--path-col`` with ``--text``, would be silently
    ignored; a named column missing from a CSV fails here, naming the CSV and the columns it has.
    """
    from biomedclip.io.columns import find_column
    from biomedclip.search.items import TEXT_TABLE_COLUMNS

    if columns.is_default():
        return columns
    if text and columns.path:
        raise BiomedclipError("--path-col names the image column of a file list; with --text use --caption-col")
    tables = (".csv", ".jsonl", ".json", ".parquet") if text else (".csv",)
    csvs = [p for p in inputs if p.is_file() and p.suffix.lower() in tables]
    if not csvs:
        kind = "a .csv/.jsonl/.parquet table" if text else "a .csv file list"
        raise BiomedclipError(f"{', '.join(columns.flags())} name columns of {kind}, and no INPUT is one")
    import csv as csv_module

    for path in (p for p in csvs if p.suffix.lower() == ".csv"):
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv_module.reader(fh), [])
        if not text:
            find_column(header, "path", columns, path, candidates=("path",))
        find_column(header, "caption", columns, path, required=text,
                    candidates=TEXT_TABLE_COLUMNS if text else ("caption",))
    return columns


@resumable(RERUN_HINT)
def embed_command(
    inputs: Annotated[list[Path], typer.Argument(
        help="What to embed, any mix: image folders (searched recursively; JPEG/PNG/TIFF/DICOM/NIfTI…), file "
             "lists (.txt one path per line, .csv with a path column), shard builds or .tar shards, single files. "
             "With --text: .txt (one text per line), .jsonl/.csv/.parquet with a caption column, or shards.",
        show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP, callback=check_model_option)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Embeddings folder (chunks/*.npy + metadata.parquet).")],
    text: Annotated[bool, typer.Option("--text", help="Embed texts (captions) instead of images.")] = False,
    split: Annotated[list[str] | None, typer.Option(help="Shard split(s) to embed, repeatable (default: all).")]
    = None,
    batch_size: Annotated[int | None, typer.Option(min=1, metavar="N", help="Images (or texts) per forward pass "
                                                   f"(default: images {IMAGE_BATCH['cpu']} on CPU / "
                                                   f"{IMAGE_BATCH['cuda']} on CUDA; texts {TEXT_BATCH['cpu']} / "
                                                   f"{TEXT_BATCH['cuda']}).")]
    = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Image-decoding worker processes "
                                                            "(default: cores − 1, at least 1).")] = None,
    chunk_size: Annotated[int | None, typer.Option(
        min=1, metavar="N", help=f"Rows per stored chunk: the unit a killed run resumes from "
                                 f"(default: {IMAGE_CHUNK_SIZE} images, {TEXT_CHUNK_SIZE} texts).")] = None,
    dtype: Annotated[str, typer.Option(help="Stored vector type: float32 or float16 (half the disk).")] = "float32",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    fp32: Fp32Opt = False,
    window: WindowOpt = None,
    slice_index: SliceOpt = None,
    axis: AxisOpt = -1,
    overwrite: Annotated[bool, typer.Option(help="Discard what --out holds and start again.")] = False,
    path_col: PathColOpt = None,
    caption_col: CaptionColOpt = None,
) -> None:
    """Embed images (or --text captions) into chunked .npy vectors + metadata.parquet.

    Interrupted? Run the same command again: finished chunks are kept, the rest is computed.
    """
    from biomedclip.search.embed import embed_images, embed_texts

    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise BiomedclipError(f"no such file or folder: {', '.join(missing)}")
    reading = read_options(window, slice_index, axis)  # a bad --window fails before the model loads
    columns = _check_embed_columns(inputs, csv_columns(path=path_col, caption=caption_col), text)
    runtime = runtime_from_options(device, precision, fp32)
    loaded = _load_model(model, runtime)
    unit = "texts" if text else "images"
    with progress_bar() as bar:
        task = bar.add_task(f"embedding {unit}", total=None, info="listing inputs …")

        def show(done: int, total: int, rate: float) -> None:
            bar.update(task, completed=done, total=total, info=f"{rate:,.1f} {unit}/s" if rate else "")

        if text:
            info = embed_texts(inputs, loaded, out, split=split, batch_size=batch_size,
                               chunk_size=chunk_size or TEXT_CHUNK_SIZE, dtype=dtype, overwrite=overwrite,
                               progress=show, columns=columns)
        else:
            info = embed_images(inputs, loaded, out, split=split, batch_size=batch_size, workers=workers,
                                chunk_size=chunk_size or IMAGE_CHUNK_SIZE, dtype=dtype, read_options=reading,
                                overwrite=overwrite, progress=show, columns=columns)
    rate = info.get("items_per_s_last_run")
    console.print(f"[green]{info['count']:,} {unit}[/green] embedded ({info['dim']}-d, {info['dtype']}, "
                  f"{info['device']}, {info['precision']}) → {out}" + (f" · {rate:,.1f} {unit}/s" if rate else "")
                  + (" · resumed" if info.get("resumed") else ""))
    if info["failed"]:
        console.print(f"[yellow]{info['failed']:,} items could not be read[/yellow]: see {out / 'errors.jsonl'}")
    console.print(f"next: biomedclip index {out} --out INDEX")


# -- index -----------------------------------------------------------------------------------------

def index_command(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings folder from `biomedclip embed`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index folder (index.faiss, index.json, metadata).")],
    kind: Annotated[str, typer.Option(help="auto | flat | ivf-flat | ivf-sq8 | ivf-pq | hnsw. auto: exact below "
                                           "--exact-below vectors, else the most accurate IVF fitting --max-memory.")]
    = "auto",
    max_memory: Annotated[str | None, typer.Option(help="Memory budget for the index, e.g. 8GB "
                                                        "(default: half the RAM).")] = None,
    exact_below: Annotated[int, typer.Option(min=1, help="Collections smaller than this get an exact index.")]
    = 50_000,
    target_recall: Annotated[float, typer.Option(min=0.0, max=1.0, help="Recall@10 the search setting is tuned "
                                                                        "to reach.")] = 0.95,
    recall_sample: Annotated[int, typer.Option(min=0, help="Sampled queries for measuring recall@10.")] = 1000,
    tune_queries: Annotated[Path | None, typer.Option(
        help="Embeddings of typical queries to tune recall on, e.g. captions from `biomedclip embed --text` "
             "(text queries sit apart from images; default: sampled collection vectors).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="FAISS threads for building (default: all).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an index already in --out.")] = False,
) -> None:
    """Build a FAISS inner-product index and report its recall@10 against exact search."""
    import faiss

    from biomedclip.search.index import build_index
    from biomedclip.search.store import open_embeddings

    if threads:
        faiss.omp_set_num_threads(threads)
    budget = parse_size(max_memory) if max_memory else None
    emb = open_embeddings(embeddings)
    with console.status("building index") as status:
        info = build_index(emb, out, kind=kind, max_memory=budget, exact_below=exact_below,
                           target_recall=target_recall, recall_sample=recall_sample, overwrite=overwrite,
                           tune_queries=open_embeddings(tune_queries) if tune_queries else None,
                           progress=lambda stage: status.update(f"index: {stage} ({emb.count:,} vectors)"))
    from rich.table import Table

    table = Table(title=f"Index {out}", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("type", f"{info.kind} ({info.factory})")
    table.add_row("vectors × dims", f"{info.count:,} × {info.dim}")
    table.add_row("search setting", ", ".join(f"{k}={v}" for k, v in info.search_params.items()) or "exact")
    if info.recall_at_10 is not None:
        sampled = "collection vectors" if info.recall_queries == "collection" else "queries"
        table.add_row("recall@10 vs exact", f"{info.recall_at_10:.3f} ({info.recall_sample:,} sampled {sampled})")
    table.add_row("size", f"{info.index_bytes / 2**20:,.1f} MiB")
    table.add_row("build time", f"{info.build_seconds:.1f} s")
    table.add_row("why", info.reason)
    console.print(table)
    if info.recall_at_10 is not None and info.recall_at_10 < target_recall:
        console.print(f"[yellow]recall@10 {info.recall_at_10:.3f} is below {target_recall}[/yellow]: this encoding "
                      "is too coarse; raise --max-memory or choose --kind ivf-flat / flat")
    console.print(f'next: biomedclip search {out} "your query"')


# -- search ----------------------------------------------------------------------------------------

def _hits_table(hits: list[Any], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col, kw in (("#", {"justify": "right"}), ("score", {"justify": "right"}), ("key", {}),
                    ("caption", {"ratio": 1}), ("source", {})):
        table.add_column(col, **kw)
    for hit in hits:
        caption = (hit.caption or "").replace("\n", " ")
        source = hit.pmcid or Path(hit.source).name
        if hit.offset >= 0:
            source = f"{source} ({Path(hit.source).parent.name}/{Path(hit.source).name})"
        table.add_row(str(hit.rank), f"{hit.score:.3f}", hit.key, caption[:200] + ("…" if len(caption) > 200 else ""),
                      source)
    return table


def search_command(
    index: Annotated[Path, typer.Argument(help="Index folder from `biomedclip index`.")],
    query: Annotated[str | None, typer.Argument(help="Text query, e.g. \"chest x-ray with pleural effusion\".",
                                                show_default=False)] = None,
    image: Annotated[Path | None, typer.Option("--image", "-i", help="Query by image instead "
                                                                      "(PNG/JPEG/TIFF/DICOM/NIfTI).")] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Results to return.")] = 10,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Query model (default: the model that made "
                                                                    "the index's embeddings).",
                                              callback=check_model_option)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the hits as JSON (for scripts).")] = False,
    window: WindowOpt = None,
    slice_index: SliceOpt = None,
    axis: AxisOpt = -1,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    fp32: Fp32Opt = False,
) -> None:
    """Top-k collection items for a text or image query: score, key, caption, source."""
    from biomedclip.search.index import VectorIndex
    from biomedclip.search.query import Searcher

    if (query is None) == (image is None):
        raise BiomedclipError("give either a text QUERY or --image FILE (not both)")
    reading = read_options(window, slice_index, axis)
    runtime = runtime_from_options(device, precision, fp32)
    vectors = VectorIndex(index)
    name = model or vectors.info.model
    if not name:
        raise BiomedclipError("the index does not record which model made it; pass --model")
    searcher = Searcher(vectors, _load_model(name, runtime, quiet=json_out))
    with warnings.catch_warnings():  # said once, below, instead of as a Python UserWarning
        warnings.simplefilter("ignore", UserWarning)
        searcher.model  # noqa: B018 - first use compares the query model's weights with the index's
    if searcher.model_warning:  # stderr: survives --quiet and keeps --json output parseable
        print_error(searcher.model_warning, prefix="warning")
    hits = searcher.search_image(image, k, reading) if image is not None else searcher.search_text(query or "", k)
    if json_out:
        # the shape of GET/POST /search: mode, then the query text or the image, never a null for the other
        asked = {"mode": "image", "image": str(image)} if image is not None else {"mode": "text", "query": query}
        payload = {**asked, "k": k, "hits": [h.to_json() for h in hits]}
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return
    console.print(_hits_table(hits, f"top {len(hits)} for " + (f'"{query}"' if query else str(image))))


# -- classify --------------------------------------------------------------------------------------

def classify_command(
    files: Annotated[list[Path], typer.Argument(help="Image files: PNG, JPEG, TIFF, DICOM, NIfTI, …",
                                                show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP, callback=check_model_option)],
    labels: Annotated[list[str] | None, typer.Option(
        "--labels", "-l", help='Class names: --labels "chest x-ray" "brain MRI" … (values run to the next option).')]
    = None,
    templates: Annotated[list[str] | None, typer.Option(
        "--templates", "-t", help='Prompt templates with {} for the label, e.g. "a {} image" '
                                  '(default: "this is an image of {}", "{} presented in image").')] = None,
    task: Annotated[str | None, typer.Option(help="Built-in task (pcam, lc25000_lung, rsna_pneumonia, …) or a "
                                                  "task .json/.txt file: labels and templates from there.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON (for scripts).")] = False,
    window: WindowOpt = None,
    slice_index: SliceOpt = None,
    axis: AxisOpt = -1,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    fp32: Fp32Opt = False,
) -> None:
    """Zero-shot class probabilities per file (softmax at the model's temperature, as zero-shot eval)."""
    from biomedclip.models.prompts import load_task
    from biomedclip.search.classify import check_labels, classify_files

    chosen_templates = list(templates) if templates else None
    chosen_labels = list(labels or [])
    if task:
        spec = load_task(task)
        chosen_labels = chosen_labels or spec.classes
        chosen_templates = chosen_templates or spec.templates
    if not chosen_labels:
        raise BiomedclipError('give --labels "a" "b" … or --task NAME')
    # cleaned labels and the templates that will be used (the defaults when none are given), checked
    # before the model loads and printed as used: --json never says "templates": null
    chosen_labels, chosen_templates = check_labels(chosen_labels, chosen_templates)
    reading = read_options(window, slice_index, axis)
    runtime = runtime_from_options(device, precision, fp32)
    loaded = _load_model(model, runtime, quiet=json_out)
    results = classify_files(loaded, files, chosen_labels, chosen_templates, read_options=reading)
    if json_out:
        sys.stdout.write(json.dumps({"labels": chosen_labels, "templates": chosen_templates,
                                     "temperature": loaded.temperature, **runtime.describe(),
                                     "results": [r.to_json() for r in results]}, ensure_ascii=False) + "\n")
    else:
        from rich.table import Table

        table = Table(title=f"Zero-shot probabilities (temperature {loaded.temperature:.1f}, {runtime.device}, "
                            f"{runtime.precision})", title_justify="left")
        table.add_column("file")
        for label in chosen_labels:
            table.add_column(label, justify="right")
        table.add_column("prediction")
        for r in results:
            if r.error:
                table.add_row(Path(r.file).name, *["–"] * len(chosen_labels), f"[red]{r.error}[/red]")
                continue
            best = max(r.probabilities.values())
            cells = [f"[bold]{p:.3f}[/bold]" if p == best else f"{p:.3f}" for p in r.probabilities.values()]
            table.add_row(Path(r.file).name, *cells, r.prediction or "")
        console.print(table)
    if any(r.error for r in results):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add embed, index, search and classify to the top-level ``biomedclip`` app."""
    app.command("embed")(embed_command)
    app.command("index")(index_command)
    app.command("search")(search_command)
    app.command("classify", cls=GreedyListCommand)(classify_command)
