"""Image and text embeddings for evaluation: batched, normalised, bf16 autocast on capable CPUs.

Everything returns float32 numpy arrays with unit-norm rows, so metrics code is plain numpy and
never needs the model.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

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
