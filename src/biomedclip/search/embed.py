"""Embed a collection at scale: images decoded in DataLoader workers, one autocast region, resumable chunks.

Why not :meth:`biomedclip.models.runtime.ModelRunner.encode_images`: that decodes every image in
the calling process and keeps all of them in memory — right for a few thousand evaluation images,
wrong for a million figures. Here

* a :class:`torch.utils.data.DataLoader` decodes and preprocesses in worker processes while the
  main process runs the model (pinned memory on CUDA), and batches never straddle a chunk, so each
  finished chunk is written (atomically) as soon as its last batch is done — see
  :mod:`biomedclip.search.store`;
* the model runs on the runner's device inside one inference-mode + autocast region for the whole
  run (so weight casts are cached, not redone per batch); device and precision follow the
  runtime's rules (:mod:`biomedclip.models.runtime`: ``auto`` = CUDA with bf16/fp16 if present,
  else CPU with bf16 where the CPU has native bf16, else fp32);
* an unreadable item (truncated, corrupt, decompression bomb, bad DICOM) is recorded in the
  chunk with its error and skipped; it never stops the run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from biomedclip.io.columns import CsvColumns
from biomedclip.io.medical import ReadOptions
from biomedclip.models.runtime import ModelLike, ModelRunner, as_runner
from biomedclip.search import IMAGE_CHUNK_SIZE, TEXT_CHUNK_SIZE
from biomedclip.search.items import Item, discover_images, discover_texts, load_item_image
from biomedclip.search.store import ERRORS, EmbeddingStoreError, EmbeddingWriter, RunSpec

ProgressFn = Callable[[int, int, float], None]
"""``progress(done, total, items_per_second)``; ``done`` counts rows of resumed chunks too."""

ITEM_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, EOFError,
                                                 Image.DecompressionBombError)
"""What a broken input raises while being decoded (PIL, pydicom/nibabel via io.medical)."""


def default_workers() -> int:
    """Decoding workers: one per core beyond the one the model uses (at least one, at most 8)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores - 1))


FAILURES_SHOWN = 5
"""Failed items a "nothing embedded" error names (all of them are in ``errors.jsonl``)."""


class NothingEmbeddedError(EmbeddingStoreError):
    """Every input failed: the folder holds no vectors, so there is nothing to index or search."""


def _require_vectors(info: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """``info`` unchanged when at least one vector was stored; else the error naming the first failures.

    Without this a run where every image was unreadable ended "0 images embedded … next:
    biomedclip index" with exit 0, and the failure only surfaced one command later.
    """
    if info.get("count"):
        return info
    errors_path = Path(out) / ERRORS
    first: list[str] = []
    if errors_path.is_file():
        with errors_path.open(encoding="utf-8") as fh:
            for line in fh:
                if len(first) >= FAILURES_SHOWN:
                    break
                row = json.loads(line)
                where, error = row.get("source") or row.get("key"), str(row.get("error"))
                first.append(f"{where}: {error.replace(f'{where}: ', '', 1)}")  # the path once, not twice
    failed = int(info.get("failed") or 0)
    listing = "; ".join(first) if first else "no item errors were recorded"
    raise NothingEmbeddedError(
        f"nothing was embedded: all {failed:,} input item(s) failed. First failures: {listing}"
        f"{' …' if failed > len(first) else ''} (all in {errors_path}). Fix or leave out those inputs, then "
        "re-run with --overwrite")


def _column_options(columns: CsvColumns | None) -> dict[str, Any]:
    """Chosen CSV columns as run options (they change the work list, so resuming must match them).

    Empty for the defaults, so folders embedded before column mapping existed still resume.
    """
    return {"columns": columns.to_dict()} if columns is not None and not columns.is_default() else {}


def _run_spec(kind: str, runner: ModelRunner, inputs: Sequence[str | Path], split: Sequence[str] | None,
              dtype: str, chunk_size: int, options: dict[str, Any]) -> RunSpec:
    """What must match for a run to resume an embeddings folder (model weights included)."""
    return RunSpec(kind=kind, model=runner.identity(), weights_sha256=runner.weights_sha256(), dtype=dtype,
                   chunk_size=chunk_size, inputs=[str(Path(p).resolve()) for p in inputs],
                   options={"split": list(split) if split else None, "precision": runner.precision, **options})


# -- images ----------------------------------------------------------------------------------------

class ImageItems(torch.utils.data.Dataset):
    """Plan rows → (row, preprocessed tensor or None, error or None); runs in DataLoader workers."""

    def __init__(self, items: Sequence[Item], preprocess: Callable[[Image.Image], torch.Tensor],
                 read_options: ReadOptions | None = None) -> None:
        self.items = items
        self.preprocess = preprocess
        self.read_options = read_options or ReadOptions()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = load_item_image(self.items[index], self.read_options)
            return index, self.preprocess(image), None
        except ITEM_ERRORS as exc:
            return index, None, f"{type(exc).__name__}: {exc}"


class ChunkBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of plan rows for the pending chunks, never crossing a chunk boundary."""

    def __init__(self, chunks: Sequence[range], batch_size: int) -> None:
        self.batches = [list(rows[i:i + batch_size]) for rows in chunks for i in range(0, len(rows), batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collate_items(batch: list[tuple[int, torch.Tensor | None, str | None]]
                  ) -> tuple[list[int], torch.Tensor | None, dict[int, str]]:
    """(rows that decoded, their stacked pixels, {row: error} for the rest)."""
    ok = [(i, t) for i, t, _ in batch if t is not None]
    errors = {i: e for i, t, e in batch if t is None}
    pixels = torch.stack([t for _, t in ok]) if ok else None
    return [i for i, _ in ok], pixels, errors


@dataclass
class _ChunkBuffer:
    ok: list[int]
    vectors: list[np.ndarray]
    errors: dict[int, str]
    remaining: int


def embed_images(
    inputs: Sequence[str | Path],
    model: ModelLike,
    out: str | Path,
    *,
    split: Sequence[str] | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    chunk_size: int = IMAGE_CHUNK_SIZE,
    dtype: str = "float32",
    device: str | None = None,
    precision: str | None = None,
    read_options: ReadOptions | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    columns: CsvColumns | None = None,
) -> dict[str, Any]:
    """Embed every image of ``inputs`` into the embeddings folder ``out``; returns its info.

    Re-running the same call continues an interrupted run (only missing chunks are computed).

    Args:
        inputs: image folders, file lists, shards, single files (see :mod:`biomedclip.search.items`).
        model: a :class:`~biomedclip.models.runtime.ModelRunner`, a ``LoadedModel`` or anything
            ``load_model`` takes.
        split: shard splits to embed (default: all).
        batch_size: images per forward pass (default: the runtime's, 64 on CPU, 256 on CUDA).
        workers: decoding processes (default :func:`default_workers`; 0 decodes in this process).
        chunk_size: rows per stored chunk — the unit of resumption.
        dtype: ``float32`` or ``float16`` for the stored vectors.
        device, precision: override the runner's (see :mod:`biomedclip.models.runtime`).
        read_options: DICOM/NIfTI window, slice and axis (:class:`~biomedclip.io.medical.ReadOptions`).
        columns: path and caption columns of ``.csv`` file lists (default ``path``, ``caption``).
    """
    runner = as_runner(model, device=device, precision=precision)
    read_options = read_options or ReadOptions()
    batch_size = batch_size or runner.runtime.batch_size("image")
    spec = _run_spec("image", runner, inputs, split, dtype, chunk_size,
                     {**read_options.to_dict(), **_column_options(columns)})
    writer = EmbeddingWriter(out, spec, lambda: discover_images(inputs, split=split, columns=columns),
                             overwrite=overwrite)
    pending = writer.pending_chunks()
    total = len(writer.items)
    done = writer.done_rows()
    started = time.perf_counter()
    processed = 0
    if progress is not None:
        progress(done, total, 0.0)
    if pending:
        n_workers = default_workers() if workers is None else workers
        dataset = ImageItems(writer.items, runner.preprocess, read_options)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=ChunkBatches([writer.chunk_range(i) for i in pending], batch_size),
            num_workers=n_workers, collate_fn=collate_items, prefetch_factor=4 if n_workers else None,
            pin_memory=runner.runtime.pin_memory)
        buffers = {i: _ChunkBuffer([], [], {}, len(writer.chunk_range(i))) for i in pending}
        with runner.session():
            for rows, pixels, errors in loader:
                chunk = rows[0] // chunk_size if rows else next(iter(errors)) // chunk_size
                buf = buffers[chunk]
                if pixels is not None:
                    buf.vectors.append(runner.encode_pixels(pixels).numpy())
                    buf.ok += rows
                buf.errors.update(errors)
                buf.remaining -= len(rows) + len(errors)
                processed += len(rows) + len(errors)
                if buf.remaining == 0:
                    empty = np.zeros((0, runner.embed_dim), np.float32)
                    vectors = np.concatenate(buf.vectors) if buf.vectors else empty
                    writer.write_chunk(chunk, vectors, buf.ok, buf.errors)
                    del buffers[chunk]
                if progress is not None:
                    progress(done + processed, total, processed / max(time.perf_counter() - started, 1e-9))
    seconds = time.perf_counter() - started
    return _require_vectors(writer.finish({**runner.runtime.describe(), "seconds_last_run": round(seconds, 3),
                                           "items_per_s_last_run": round(processed / seconds, 2) if processed else None,
                                           "resumed": writer.resumed}), out)


# -- texts -----------------------------------------------------------------------------------------

def embed_texts(
    inputs: Sequence[str | Path],
    model: ModelLike,
    out: str | Path,
    *,
    split: Sequence[str] | None = None,
    batch_size: int | None = None,
    chunk_size: int = TEXT_CHUNK_SIZE,
    dtype: str = "float32",
    device: str | None = None,
    precision: str | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    columns: CsvColumns | None = None,
) -> dict[str, Any]:
    """Embed captions/texts (see :func:`biomedclip.search.items.discover_texts`) into ``out``, resumably.

    ``columns.caption`` names the text column of ``.csv``/``.jsonl``/``.parquet`` tables.
    """
    runner = as_runner(model, device=device, precision=precision)
    batch_size = batch_size or runner.runtime.batch_size("text")
    spec = _run_spec("text", runner, inputs, split, dtype, chunk_size, _column_options(columns))
    writer = EmbeddingWriter(out, spec, lambda: discover_texts(inputs, split=split, columns=columns),
                             overwrite=overwrite)
    total, done = len(writer.items), writer.done_rows()
    started, processed = time.perf_counter(), 0
    if progress is not None:
        progress(done, total, 0.0)
    for chunk in writer.pending_chunks():
        rows = list(writer.chunk_range(chunk))
        vectors = []
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            texts = [writer.items[i].caption or "" for i in batch]
            vectors.append(runner.encode_texts(texts, batch_size=batch_size))
            processed += len(batch)
            if progress is not None:
                progress(done + processed, total, processed / max(time.perf_counter() - started, 1e-9))
        writer.write_chunk(chunk, np.concatenate(vectors), rows, {})
    seconds = time.perf_counter() - started
    return _require_vectors(writer.finish({**runner.runtime.describe(), "seconds_last_run": round(seconds, 3),
                                           "items_per_s_last_run": round(processed / seconds, 2) if processed else None,
                                           "resumed": writer.resumed}), out)
