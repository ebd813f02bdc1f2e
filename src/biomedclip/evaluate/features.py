"""Features of evaluation datasets: embedded through the model runtime, bad items skipped, cached.

The model runs in :class:`biomedclip.models.runtime.ModelRunner` (device, precision, encoding);
this module adds what evaluation needs on top: lazy per-batch loading of a dataset, a record of
the items that could not be read, and the feature cache. Everything returns float32 numpy arrays
with unit-norm rows, so metrics code is plain numpy and never needs the model.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from biomedclip.evaluate.cache import CachedFeatures, FeatureCache, model_fingerprint
from biomedclip.models.runtime import ModelRunner


@dataclass
class PairSample:
    """One figure–caption pair read back from a shard."""

    key: str
    image: Image.Image
    caption: str
    meta: dict[str, Any]


def read_shard_pairs(data: Path, split: str, limit: int | None = None) -> list[PairSample]:
    """All pairs of one split of a shard build (small eval splits; images decoded to RGB)."""
    import webdataset as wds

    shards = sorted((Path(data) / split).glob("*.tar"))
    if not shards:
        raise FileNotFoundError(f"no shards for split {split!r} in {data}")
    pairs: list[PairSample] = []
    for sample in wds.WebDataset([str(p) for p in shards], shardshuffle=False):
        with Image.open(io.BytesIO(sample["jpg"])) as im:
            image = im.convert("RGB")
        pairs.append(PairSample(sample["__key__"], image, sample["txt"].decode("utf-8"),
                                json.loads(sample["json"])))
        if limit is not None and len(pairs) >= limit:
            break
    return pairs


# -- datasets: lazy loading, bad items skipped, features cached ---------------------------------------

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)`` — called after every batch."""


def encode_image_source(runner: ModelRunner, source: Any, *, batch_size: int | None = None,
                        progress: ProgressFn | None = None) -> CachedFeatures:
    """Embed every readable image of an :class:`~biomedclip.evaluate.datasets.ImageSource`.

    Images are loaded one batch at a time (memory stays flat on large sets). An image that
    cannot be read is skipped and listed in ``skipped`` with the file and the reason; the
    features of the rest come back with their indices in ``kept``.
    """
    from biomedclip.io.medical import MedicalImageError

    size = batch_size or runner.runtime.batch_size("image")
    total = len(source)
    chunks: list[torch.Tensor] = []
    kept: list[int] = []
    skipped: list[dict[str, Any]] = []
    for start in range(0, total, size):
        pixels, indices = [], []
        for i in range(start, min(start + size, total)):
            try:
                pixels.append(runner.preprocess(source.load(i)))
                indices.append(i)
            except (MedicalImageError, OSError, ValueError) as exc:
                skipped.append({"index": i, "item": source.describe(i), "error": str(exc)})
        if pixels:
            with runner.session():
                chunks.append(runner.encode_pixels(torch.stack(pixels)))
            kept += indices
        if progress is not None:
            progress(min(start + size, total), total)
    feats = torch.cat(chunks).numpy() if chunks else np.zeros((0, runner.embed_dim), np.float32)
    return CachedFeatures(feats, np.asarray(kept, dtype=np.int64), skipped)


def cached_image_features(runner: ModelRunner, source: Any, data_fingerprint: str, name: str, cache: FeatureCache,
                          *, batch_size: int | None = None,
                          progress: ProgressFn | None = None) -> tuple[CachedFeatures, bool]:
    """Image features from the cache, or embedded and stored there. Returns (features, cache hit).

    The key includes the runtime (``cpu-bf16``, ``cuda-fp16``, …): features of one model differ
    slightly between precisions, and a report must say which it used.
    """
    model_fp = model_fingerprint(runner)
    key = f"{name}-images-{runner.runtime.tag}"
    hit = cache.load(model_fp, data_fingerprint, key)
    if hit is not None:
        if progress is not None:
            progress(len(source), len(source))
        return hit, True
    entry = encode_image_source(runner, source, batch_size=batch_size, progress=progress)
    cache.save(model_fp, data_fingerprint, key, entry, model_name=runner.name, items=len(source))
    return entry, False


def cached_text_features(runner: ModelRunner, texts: Sequence[str], data_fingerprint: str, name: str,
                         cache: FeatureCache, *, batch_size: int | None = None) -> tuple[np.ndarray, bool]:
    """Text features (e.g. retrieval captions) from the cache, or embedded and stored there."""
    model_fp = model_fingerprint(runner)
    key = f"{name}-texts-{runner.runtime.tag}"
    hit = cache.load(model_fp, data_fingerprint, key)
    if hit is not None and len(hit.features) == len(texts):
        return hit.features, True
    feats = runner.encode_texts(texts, batch_size=batch_size)
    cache.save(model_fp, data_fingerprint, key, CachedFeatures(feats, np.arange(len(texts))),
               model_name=runner.name, items=len(texts))
    return feats, False
