"""Embed a collection at scale: images decoded in DataLoader workers, bf16 inference, resumable chunks.

Why not :func:`biomedclip.evaluate.features.encode_images`: that decodes every image in the main
process and keeps all of them in memory — right for a few thousand evaluation images, wrong for a
million figures. Here

* a :class:`torch.utils.data.DataLoader` decodes and preprocesses in worker processes while the
  main process runs the model, and batches never straddle a chunk, so each finished chunk is
  written (atomically) as soon as its last batch is done — see :mod:`biomedclip.search.store`;
* the model runs under ``torch.inference_mode`` and, on CPUs with native bf16 (AVX512-BF16/AMX)
  or a GPU, one bf16 autocast region for the whole run (so weight casts are cached, not redone
  per batch); ``bf16=False`` forces fp32;
* an unreadable item (truncated, corrupt, decompression bomb, bad DICOM) is recorded in the
  chunk with its error and skipped; it never stops the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from biomedclip.search.items import Item, discover_images, discover_texts, load_item_image
from biomedclip.search.store import EmbeddingWriter, RunSpec

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


def resolve_precision(bf16: bool) -> str:
    """'bf16' when asked for and fast here (native bf16 CPU or GPU), else 'fp32'."""
    from biomedclip.train.recipe import bf16_available

    return "bf16" if bf16 and bf16_available() else "fp32"


def autocast_for(precision: str) -> Any:
    """The autocast context for a precision from :func:`resolve_precision`."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def _load(model: Any) -> Any:
    if isinstance(model, str | Path):
        from biomedclip.models.factory import load_model

        return load_model(model)
    return model


def model_identity(loaded: Any) -> str:
    """A stable name for the model that made the vectors (bundle paths made absolute)."""
    name = str(loaded.name)
    if name.startswith("local-dir:"):
        return "local-dir:" + str(Path(name[len("local-dir:"):]).resolve())
    return name


# -- images ----------------------------------------------------------------------------------------

class ImageItems(torch.utils.data.Dataset):
    """Plan rows → (row, preprocessed tensor or None, error or None); runs in DataLoader workers."""

    def __init__(self, items: Sequence[Item], preprocess: Callable[[Image.Image], torch.Tensor],
                 window: tuple[float, float] | None = None, slice_index: int | None = None, axis: int = -1) -> None:
        self.items = items
        self.preprocess = preprocess
        self.window, self.slice_index, self.axis = window, slice_index, axis

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = load_item_image(self.items[index], window=self.window, slice_index=self.slice_index,
                                    axis=self.axis)
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
    model: Any,
    out: str | Path,
    *,
    split: Sequence[str] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    chunk_size: int = 2048,
    dtype: str = "float32",
    bf16: bool = True,
    window: tuple[float, float] | None = None,
    slice_index: int | None = None,
    axis: int = -1,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Embed every image of ``inputs`` into the embeddings folder ``out``; returns its info.

    Re-running the same call continues an interrupted run (only missing chunks are computed).

    Args:
        inputs: image folders, file lists, shards, single files (see :mod:`biomedclip.search.items`).
        model: a :class:`~biomedclip.models.factory.LoadedModel` or anything ``load_model`` takes.
        split: shard splits to embed (default: all).
        workers: decoding processes (default :func:`default_workers`; 0 decodes in this process).
        chunk_size: rows per stored chunk — the unit of resumption.
        dtype: ``float32`` or ``float16`` for the stored vectors.
        bf16: use bf16 autocast where the hardware supports it (``False`` forces fp32).
        window, slice_index, axis: DICOM/NIfTI display options (see :mod:`biomedclip.io.medical`).
    """
    loaded = _load(model)
    precision = resolve_precision(bf16)
    spec = RunSpec(kind="image", model=model_identity(loaded), dtype=dtype, chunk_size=chunk_size,
                   inputs=[str(Path(p).resolve()) for p in inputs],
                   options={"split": list(split) if split else None, "precision": precision,
                            "window": list(window) if window else None, "slice_index": slice_index, "axis": axis})
    writer = EmbeddingWriter(out, spec, lambda: discover_images(inputs, split=split), overwrite=overwrite)
    pending = writer.pending_chunks()
    total = len(writer.items)
    done = writer.done_rows()
    started = time.perf_counter()
    processed = 0
    if progress is not None:
        progress(done, total, 0.0)
    if pending:
        n_workers = default_workers() if workers is None else workers
        dataset = ImageItems(writer.items, loaded.preprocess_val, window, slice_index, axis)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=ChunkBatches([writer.chunk_range(i) for i in pending], batch_size),
            num_workers=n_workers, collate_fn=collate_items, prefetch_factor=4 if n_workers else None)
        buffers = {i: _ChunkBuffer([], [], {}, len(writer.chunk_range(i))) for i in pending}
        net = loaded.model.eval()
        with torch.inference_mode(), autocast_for(precision):
            for rows, pixels, errors in loader:
                chunk = rows[0] // chunk_size if rows else next(iter(errors)) // chunk_size
                buf = buffers[chunk]
                if pixels is not None:
                    feats = net.encode_image(pixels).float()
                    buf.vectors.append(torch.nn.functional.normalize(feats, dim=-1).numpy())
                    buf.ok += rows
                buf.errors.update(errors)
                buf.remaining -= len(rows) + len(errors)
                processed += len(rows) + len(errors)
                if buf.remaining == 0:
                    vectors = np.concatenate(buf.vectors) if buf.vectors else np.zeros((0, _dim(loaded)), np.float32)
                    writer.write_chunk(chunk, vectors, buf.ok, buf.errors)
                    del buffers[chunk]
                if progress is not None:
                    progress(done + processed, total, processed / max(time.perf_counter() - started, 1e-9))
    seconds = time.perf_counter() - started
    return writer.finish({"precision": precision, "seconds_last_run": round(seconds, 3),
                          "items_per_s_last_run": round(processed / seconds, 2) if processed else None,
                          "resumed": writer.resumed})


def _dim(loaded: Any) -> int:
    return int(loaded.model_cfg.get("embed_dim", 0))


# -- texts -----------------------------------------------------------------------------------------

def embed_texts(
    inputs: Sequence[str | Path],
    model: Any,
    out: str | Path,
    *,
    split: Sequence[str] | None = None,
    batch_size: int = 256,
    chunk_size: int = 8192,
    dtype: str = "float32",
    bf16: bool = True,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Embed captions/texts (see :func:`biomedclip.search.items.discover_texts`) into ``out``, resumably."""
    from biomedclip.evaluate.features import encode_texts

    loaded = _load(model)
    precision = resolve_precision(bf16)
    spec = RunSpec(kind="text", model=model_identity(loaded), dtype=dtype, chunk_size=chunk_size,
                   inputs=[str(Path(p).resolve()) for p in inputs],
                   options={"split": list(split) if split else None, "precision": precision})
    writer = EmbeddingWriter(out, spec, lambda: discover_texts(inputs, split=split), overwrite=overwrite)
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
            vectors.append(encode_texts(loaded, texts, batch_size=batch_size, bf16=precision == "bf16"))
            processed += len(batch)
            if progress is not None:
                progress(done + processed, total, processed / max(time.perf_counter() - started, 1e-9))
        writer.write_chunk(chunk, np.concatenate(vectors), rows, {})
    seconds = time.perf_counter() - started
    return writer.finish({"precision": precision, "seconds_last_run": round(seconds, 3),
                          "items_per_s_last_run": round(processed / seconds, 2) if processed else None,
                          "resumed": writer.resumed})
