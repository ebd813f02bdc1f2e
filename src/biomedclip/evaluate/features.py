"""Image and text embeddings for evaluation: batched, normalised, bf16 autocast on capable CPUs.

Everything returns float32 numpy arrays with unit-norm rows, so metrics code is plain numpy and
never needs the model.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from biomedclip.evaluate.cache import CachedFeatures, FeatureCache, model_fingerprint
from biomedclip.train.recipe import bf16_available


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


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled and bf16_available())


def _normalise(chunks: list[torch.Tensor]) -> np.ndarray:
    feats = torch.cat(chunks).float()
    return torch.nn.functional.normalize(feats, dim=-1).numpy()


@torch.inference_mode()
def encode_images(loaded: Any, images: Iterable[Image.Image], batch_size: int = 64, bf16: bool = True) -> np.ndarray:
    """Unit-norm image embeddings ([N, D] float32) with the model's eval preprocessing."""
    model = loaded.model.eval()
    chunks = []
    for batch in _batches(list(images), batch_size):
        pixels = torch.stack([loaded.preprocess_val(im) for im in batch])
        with _autocast(bf16):
            chunks.append(model.encode_image(pixels).float())
    return _normalise(chunks)


@torch.inference_mode()
def encode_texts(loaded: Any, texts: Sequence[str], batch_size: int = 256, bf16: bool = True) -> np.ndarray:
    """Unit-norm text embeddings ([N, D] float32), tokenised with the model's tokenizer."""
    model = loaded.model.eval()
    chunks = []
    for batch in _batches(list(texts), batch_size):
        tokens = loaded.tokenizer(list(batch))
        with _autocast(bf16):
            chunks.append(model.encode_text(tokens).float())
    return _normalise(chunks)


# -- datasets: lazy loading, bad items skipped, features cached ---------------------------------------

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)`` — called after every batch."""


def encode_image_source(loaded: Any, source: Any, *, batch_size: int = 64, bf16: bool = True,
                        progress: ProgressFn | None = None) -> CachedFeatures:
    """Embed every readable image of an :class:`~biomedclip.evaluate.datasets.ImageSource`.

    Images are loaded one batch at a time (memory stays flat on large sets). An image that
    cannot be read is skipped and listed in ``skipped`` with the file and the reason; the
    features of the rest come back with their indices in ``kept``.
    """
    from biomedclip.io.medical import MedicalImageError

    model = loaded.model.eval()
    total = len(source)
    chunks: list[torch.Tensor] = []
    kept: list[int] = []
    skipped: list[dict[str, Any]] = []
    for start in range(0, total, batch_size):
        pixels, indices = [], []
        for i in range(start, min(start + batch_size, total)):
            try:
                pixels.append(loaded.preprocess_val(source.load(i)))
                indices.append(i)
            except (MedicalImageError, OSError, ValueError) as exc:
                skipped.append({"index": i, "item": source.describe(i), "error": str(exc)})
        if pixels:
            with torch.inference_mode(), _autocast(bf16):
                chunks.append(model.encode_image(torch.stack(pixels)).float())
            kept += indices
        if progress is not None:
            progress(min(start + batch_size, total), total)
    dim = int(loaded.model_cfg.get("embed_dim", 0)) if hasattr(loaded, "model_cfg") else 0
    feats = _normalise(chunks) if chunks else np.zeros((0, dim), np.float32)
    return CachedFeatures(feats, np.asarray(kept, dtype=np.int64), skipped)


def _precision_tag(bf16: bool) -> str:
    return "bf16" if bf16 and bf16_available() else "fp32"


def cached_image_features(loaded: Any, source: Any, data_fingerprint: str, name: str, cache: FeatureCache,
                          *, batch_size: int = 64, bf16: bool = True,
                          progress: ProgressFn | None = None) -> tuple[CachedFeatures, bool]:
    """Image features from the cache, or embedded and stored there. Returns (features, cache hit)."""
    model_fp = model_fingerprint(loaded)
    key = f"{name}-images-{_precision_tag(bf16)}"
    hit = cache.load(model_fp, data_fingerprint, key)
    if hit is not None:
        if progress is not None:
            progress(len(source), len(source))
        return hit, True
    entry = encode_image_source(loaded, source, batch_size=batch_size, bf16=bf16, progress=progress)
    cache.save(model_fp, data_fingerprint, key, entry, model_name=getattr(loaded, "name", ""), items=len(source))
    return entry, False


def cached_text_features(loaded: Any, texts: Sequence[str], data_fingerprint: str, name: str, cache: FeatureCache,
                         *, batch_size: int = 256, bf16: bool = True) -> tuple[np.ndarray, bool]:
    """Text features (e.g. retrieval captions) from the cache, or embedded and stored there."""
    model_fp = model_fingerprint(loaded)
    key = f"{name}-texts-{_precision_tag(bf16)}"
    hit = cache.load(model_fp, data_fingerprint, key)
    if hit is not None and len(hit.features) == len(texts):
        return hit.features, True
    feats = encode_texts(loaded, texts, batch_size=batch_size, bf16=bf16)
    cache.save(model_fp, data_fingerprint, key, CachedFeatures(feats, np.arange(len(texts))),
               model_name=getattr(loaded, "name", ""), items=len(texts))
    return feats, False
