"""Small random and text helpers shared by every step that draws from an article's RNG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    """Uniform choice that keeps Python types (``rng.choice`` would return numpy scalars)."""
    return seq[int(rng.integers(len(seq)))]


def _pickw(rng: np.random.Generator, seq: Sequence[Any], weights: Sequence[float]) -> Any:
    """Weighted choice over a short sequence."""
    cum = np.cumsum(weights)
    return seq[int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))]


def _cap(text: str) -> str:
    """Capitalise the first letter only (``"chest X-ray"`` → ``"Chest X-ray"``, keeps ``CXR``)."""
    return text[:1].upper() + text[1:]
