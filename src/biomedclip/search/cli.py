"""CLI for using a model: ``biomedclip embed``, ``index``, ``search`` and ``classify``.

Registered on the top-level app by :func:`register`. Commands stay thin — parse, call the
library, print — and import torch/faiss inside the command so ``biomedclip --help`` stays fast.
``--json`` output goes to stdout alone (no progress bars or tables), for scripts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperCommand

from biomedclip.ui import console, progress_bar

MODEL_HELP = ("Model: built-in name, local-dir:BUNDLE (e.g. RUN/bundle after training), hf-hub:ORG/NAME "
              "or a checkpoint.")
WINDOW_HELP = "DICOM/NIfTI display window CENTER,WIDTH (e.g. 40,400 for CT soft tissue); default: the file's."
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


def parse_window(text: str | None) -> tuple[float, float] | None:
    """'CENTER,WIDTH' → (center, width)."""
    if not text:
        return None
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"use CENTER,WIDTH, e.g. 40,400 — got {text!r}", param_hint="--window") from exc
    return center, width


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _load_model(name: str, quiet: bool = False) -> Any:
    from biomedclip.models.factory import ModelLoadError, load_model

    try:
        if quiet:
            return load_model(name)
        with console.status(f"loading {name}"):
            return load_model(name)
    except ModelLoadError as exc:
        raise _fail(str(exc)) from exc


# -- embed -----------------------------------------------------------------------------------------

def embed_command(
    inputs: Annotated[list[Path], typer.Argument(
        help="What to embed, any mix: image folders (searched recursively; JPEG/PNG/TIFF/DICOM/NIfTI…), file "
             "lists (.txt one path per line, .csv with a path column), shard builds or .tar shards, single files. "
             "With --text: .txt (one text per line), .jsonl/.csv/.parquet with a caption column, or shards.",
        show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Embeddings folder (chunks/*.npy + metadata.parquet).")],
    text: Annotated[bool, typer.Option("--text", help="Embed texts (captions) instead of images.")] = False,
    split: Annotated[list[str] | None, typer.Option(help="Shard split(s) to embed, repeatable (default: all).")]
    = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images (or texts) per forward pass.")] = 64,
    workers: Annotated[int | None, typer.Option(min=0, help="Image-decoding worker processes "
                                                            "(default: cores − 1, at least 1).")] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows per stored chunk: the unit a killed run resumes from.")]
    = 2048,
    dtype: Annotated[str, typer.Option(help="Stored vector type: float32 or float16 (half the disk).")] = "float32",
    fp32: Annotated[bool, typer.Option("--fp32", help="Force fp32 inference (default: bf16 autocast on CPUs "
                                                      "with native bf16 and on GPUs).")] = False,
    window: Annotated[str | None, typer.Option(help=WINDOW_HELP)] = None,
    slice_index: Annotated[int | None, typer.Option("--slice", help="NIfTI slice / multi-frame index "
                                                                    "(default: middle slice).")] = None,
    axis: Annotated[int, typer.Option(help="NIfTI slicing axis (-1 axial, 1 coronal, 0 sagittal).")] = -1,
    overwrite: Annotated[bool, typer.Option(help="Discard what --out holds and start again.")] = False,
) -> None:
    """Embed images (or --text captions) into chunked .npy vectors + metadata.parquet.

    Interrupted? Run the same command again: finished chunks are kept, the rest is computed.
    """
    from biomedclip.search.embed import embed_images, embed_texts
    from biomedclip.search.items import InputError
    from biomedclip.search.store import EmbeddingStoreError

    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise _fail(f"no such file or folder: {', '.join(missing)}")
    loaded = _load_model(model)
    unit = "texts" if text else "images"
    try:
        with progress_bar() as bar:
            task = bar.add_task(f"embedding {unit}", total=None, info="listing inputs …")

            def show(done: int, total: int, rate: float) -> None:
                bar.update(task, completed=done, total=total, info=f"{rate:,.1f} {unit}/s" if rate else "")

            if text:
                info = embed_texts(inputs, loaded, out, split=split, batch_size=batch_size, chunk_size=chunk_size,
                                   dtype=dtype, bf16=not fp32, overwrite=overwrite, progress=show)
            else:
                info = embed_images(inputs, loaded, out, split=split, batch_size=batch_size, workers=workers,
                                    chunk_size=chunk_size, dtype=dtype, bf16=not fp32, window=parse_window(window),
                                    slice_index=slice_index, axis=axis, overwrite=overwrite, progress=show)
    except (InputError, EmbeddingStoreError) as exc:
        raise _fail(str(exc)) from exc
    rate = info.get("items_per_s_last_run")
    console.print(f"[green]{info['count']:,} {unit}[/green] embedded ({info['dim']}-d, {info['dtype']}, "
                  f"{info['precision']}) → {out}" + (f" · {rate:,.1f} {unit}/s" if rate else "")
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

    from biomedclip.search.index import IndexBuildError, build_index
    from biomedclip.search.store import EmbeddingStoreError, open_embeddings

    if threads:
        faiss.omp_set_num_threads(threads)
    budget = parse_size(max_memory) if max_memory else None
    try:
        emb = open_embeddings(embeddings)
        with console.status("building index") as status:
            info = build_index(emb, out, kind=kind, max_memory=budget, exact_below=exact_below,
                               target_recall=target_recall, recall_sample=recall_sample, overwrite=overwrite,
                               tune_queries=open_embeddings(tune_queries) if tune_queries else None,
                               progress=lambda stage: status.update(f"index: {stage} ({emb.count:,} vectors)"))
    except (IndexBuildError, EmbeddingStoreError) as exc:
        raise _fail(str(exc)) from exc
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
                                                                    "the index's embeddings).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the hits as JSON (for scripts).")] = False,
    window: Annotated[str | None, typer.Option(help=WINDOW_HELP)] = None,
    slice_index: Annotated[int | None, typer.Option("--slice", help="NIfTI slice (default: middle).")] = None,
    fp32: Annotated[bool, typer.Option("--fp32", help="Encode the query in fp32.")] = False,
) -> None:
    """Top-k collection items for a text or image query: score, key, caption, source."""
    from biomedclip.io.medical import MedicalImageError
    from biomedclip.search.index import IndexBuildError, VectorIndex
    from biomedclip.search.query import Searcher

    if (query is None) == (image is None):
        raise _fail("give either a text QUERY or --image FILE (not both)")
    try:
        vectors = VectorIndex(index)
        name = model or vectors.info.model
        if not name:
            raise _fail("the index does not record which model made it; pass --model")
        searcher = Searcher(vectors, _load_model(name, quiet=json_out), bf16=not fp32)
        if image is not None:
            hits = searcher.search_image(image, k, window=parse_window(window), slice_index=slice_index)
        else:
            hits = searcher.search_text(query or "", k)
    except (IndexBuildError, MedicalImageError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    if json_out:
        payload = {"query": query, "image": str(image) if image else None, "k": k,
                   "hits": [h.to_json() for h in hits]}
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return
    console.print(_hits_table(hits, f"top {len(hits)} for " + (f'"{query}"' if query else str(image))))


# -- classify --------------------------------------------------------------------------------------

def classify_command(
    files: Annotated[list[Path], typer.Argument(help="Image files: PNG, JPEG, TIFF, DICOM, NIfTI, …",
                                                show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)],
    labels: Annotated[list[str] | None, typer.Option(
        "--labels", "-l", help='Class names: --labels "chest x-ray" "brain MRI" … (values run to the next option).')]
    = None,
    templates: Annotated[list[str] | None, typer.Option(
        "--templates", "-t", help='Prompt templates with {} for the label, e.g. "a {} image" '
                                  '(default: "this is an image of {}", "{} presented in image").')] = None,
    task: Annotated[str | None, typer.Option(help="Built-in task (pcam, lc25000_lung, rsna_pneumonia, …) or a "
                                                  "task .json/.txt file: labels and templates from there.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON (for scripts).")] = False,
    window: Annotated[str | None, typer.Option(help=WINDOW_HELP)] = None,
    slice_index: Annotated[int | None, typer.Option("--slice", help="NIfTI slice (default: middle).")] = None,
    fp32: Annotated[bool, typer.Option("--fp32", help="Force fp32 inference.")] = False,
) -> None:
    """Zero-shot class probabilities per file (softmax at the model's learned temperature)."""
    from biomedclip.evaluate.taskfile import TaskError, load_task
    from biomedclip.search.classify import LabelError, classify_files, logit_scale

    chosen_templates = list(templates) if templates else None
    chosen_labels = list(labels or [])
    if task:
        try:
            spec = load_task(task)
        except TaskError as exc:
            raise _fail(str(exc)) from exc
        chosen_labels = chosen_labels or spec.classes
        chosen_templates = chosen_templates or spec.templates
    if not chosen_labels:
        raise _fail('give --labels "a" "b" … or --task NAME')
    loaded = _load_model(model, quiet=json_out)
    try:
        results = classify_files(loaded, files, chosen_labels, chosen_templates, bf16=not fp32,
                                 window=parse_window(window), slice_index=slice_index)
    except LabelError as exc:
        raise _fail(str(exc)) from exc
    if json_out:
        sys.stdout.write(json.dumps({"labels": chosen_labels, "templates": chosen_templates,
                                     "temperature": logit_scale(loaded),
                                     "results": [r.to_json() for r in results]}, ensure_ascii=False) + "\n")
    else:
        from rich.table import Table

        table = Table(title=f"Zero-shot probabilities (temperature {logit_scale(loaded):.1f})", title_justify="left")
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
