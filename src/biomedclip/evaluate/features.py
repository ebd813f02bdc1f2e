"""Features of evaluation datasets: embedded through the model runtime, bad items skipped, cached.

The model runs in :class:`biomedclip.models.runtime.ModelRunner` (device, precision, encoding);
this module adds what evaluation needs on top: lazy per-batch loading of a dataset, a record of
the items that could not be read, and the feature cache. Everything returns float32 numpy arrays
with unit-norm rows, so metrics code is plain numpy and never needs the model.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from biomedclip.errors import BiomedclipError
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
    from biomedclip.data.build_folder import BuildFolder, NotABuildError

    build = BuildFolder(data)
    if not build.shards(split):
        raise NotABuildError(build.missing_split(split))
    pairs: list[PairSample] = []
    for sample in build.iter_samples(split):
        if sample.jpg is None or sample.txt is None:
            continue
        with Image.open(io.BytesIO(sample.jpg)) as im:
            image = im.convert("RGB")
        pairs.append(PairSample(sample.key, image, sample.txt, sample.json))
        if limit is not None and len(pairs) >= limit:
            break
    return pairs


# -- datasets: lazy loading, bad items skipped, features cached ---------------------------------------

FAILURES_SHOWN = 5
"""Skipped items named when none could be read (the report lists all of them otherwise)."""


class UnreadableImagesError(BiomedclipError, ValueError):
    """Not one image of an evaluation split could be read; the message names the first and why."""


def _failure(skipped: dict[str, Any]) -> str:
    """``item: why`` for one skipped item, the item named once (readers often start their error with it)."""
    item, error = str(skipped.get("item")), str(skipped.get("error"))
    return f"{item}: {error.removeprefix(f'{item}: ')}"


def require_readable(entry: CachedFeatures, total: int, where: str) -> CachedFeatures:
    """``entry`` when it holds at least one feature; otherwise the error listing the first failures.

    With partial failures the skipped items are listed in the report; with total failure there is
    no report, so the reason has to be in the error itself (a wrong --window, a folder of
    non-images, a missing DICOM plugin).
    """
    if len(entry.kept):
        return entry
    first = "; ".join(_failure(s) for s in entry.skipped[:FAILURES_SHOWN])
    more = f" (first {FAILURES_SHOWN} of {len(entry.skipped):,})" if len(entry.skipped) > FAILURES_SHOWN else ""
    raise UnreadableImagesError(f"{where}: none of the {total:,} images could be read{more}: "
                                f"{first or 'no errors recorded'}")


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
