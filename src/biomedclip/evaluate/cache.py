"""Feature cache: embed a dataset once per (model, data), reuse it for every later run.

Embedding is the only expensive step of an evaluation; zero-shot, linear probe, k-shot and
label-fraction runs all reuse the same frozen image features. Entries live at
``CACHE/<model fingerprint>/<data fingerprint>/<name>.npz`` where

* the **model fingerprint** hashes every weight tensor, the preprocessing config and the tokenizer
  vocabulary — retraining or swapping a tokenizer gives a new key, renaming a bundle does not;
* the **data fingerprint** comes from the dataset (file names/sizes/mtimes or array bytes, and
  the DICOM/NIfTI reading options), see :mod:`biomedclip.evaluate.datasets`;
* ``name`` says which split and which tower (``test-images``, ``captions``), plus the precision.

Files are written atomically (temporary name, then rename), so an interrupted run never leaves a
half-written entry; an unreadable entry is ignored and recomputed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.models.runtime import ModelLike

log = logging.getLogger(__name__)

__all__ = ["CACHE_ENV", "CachedFeatures", "FeatureCache", "default_cache_dir", "model_fingerprint"]

CACHE_ENV = "BIOMEDCLIP_CACHE"
_KEY_CHARS = 24


def default_cache_dir() -> Path:
    """``$BIOMEDCLIP_CACHE``, else ``$XDG_CACHE_HOME/biomedclip/features``, else ``~/.cache/biomedclip/features``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "biomedclip" / "features"


def model_fingerprint(model: ModelLike) -> str:
    """sha256 over the weights, preprocessing config and tokenizer vocabulary (the cache's model key).

    The model runtime owns the hash (:meth:`biomedclip.models.runtime.ModelRunner.weights_sha256`,
    also recorded by embeddings and indexes); a bare ``LoadedModel`` is wrapped where it lies.
    """
    from biomedclip.models.runtime import as_runner

    return as_runner(model).weights_sha256()


@dataclass
class CachedFeatures:
    """Unit-norm features of the items that could be read, and the ones that could not."""

    features: np.ndarray  # [n_kept, D] float32
    kept: np.ndarray  # [n_kept] indices into the split
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"index", "item", "error"}


class FeatureCache:
    """A folder of cached features; ``FeatureCache(None)`` is a disabled cache (always a miss)."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def path(self, model_fp: str, data_fp: str, name: str) -> Path:
        if self.root is None:
            raise RuntimeError("the feature cache is disabled")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.root / model_fp[:_KEY_CHARS] / data_fp[:_KEY_CHARS] / f"{safe}.npz"

    def load(self, model_fp: str, data_fp: str, name: str) -> CachedFeatures | None:
        if self.root is None:
            return None
        path = self.path(model_fp, data_fp, name)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                if meta.get("model") != model_fp or meta.get("data") != data_fp:
                    return None  # a prefix collision: treat as a miss
                return CachedFeatures(npz["features"].astype(np.float32), npz["kept"].astype(np.int64),
                                      list(meta.get("skipped", [])))
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable cache entry %s (%s); recomputing", path, exc)
            return None

    def save(self, model_fp: str, data_fp: str, name: str, entry: CachedFeatures, **info: Any) -> Path | None:
        if self.root is None:
            return None
        path = self.path(model_fp, data_fp, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"model": model_fp, "data": data_fp, "name": name, "skipped": entry.skipped, **info},
                          default=str)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, features=entry.features.astype(np.float32), kept=entry.kept.astype(np.int64),
                         meta=np.array(meta))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
