"""Train/val/test assignment by article, stable everywhere.

Splitting by article (never by figure) keeps near-identical panels of one paper from landing on
both sides of an evaluation. The assignment depends only on the article id and the fractions, so
any worker, machine, Python version or re-run puts an article in the same split, and growing the
corpus never moves an article that was already assigned.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

__all__ = ["DEFAULT_SPLITS", "assign_split", "parse_splits"]

#: The proportions of PMC-15M's train/validation/test split, as reported for BiomedCLIP: Zhang et
#: al., "BiomedCLIP: a multimodal biomedical foundation model pretrained from fifteen million
#: scientific image-text pairs", arXiv:2303.00915. There they are proportions of pairs; here they
#: are proportions of articles (the pair proportions follow on average).
DEFAULT_SPLITS: dict[str, float] = {"train": 0.951, "val": 0.001, "test": 0.048}

_TOLERANCE = 1e-6
# 53 bits of the digest give a uniform float in [0, 1) with every value exactly representable.
_UNIT_BITS = 53


def parse_splits(text: str) -> dict[str, float]:
    """Parse a CLI value like ``train=0.8,val=0.1,test=0.1`` into validated fractions.

    Names must be Python identifiers (they become shard folder names and manifest values),
    unique; fractions finite, non-negative and summing to 1 within 1e-6.
    Raises ValueError saying what is wrong and what was expected.
    """
    if not text or not text.strip():
        raise ValueError("splits are empty; expected e.g. 'train=0.8,val=0.1,test=0.1'")
    fractions: dict[str, float] = {}
    for part in text.split(","):
        name, value = _parse_item(part.strip(), text)
        if name in fractions:
            raise ValueError(f"split {name!r} is given twice in {text!r}")
        fractions[name] = value
    validate_splits(fractions)
    return fractions


def _parse_item(item: str, text: str) -> tuple[str, float]:
    """One ``name=fraction`` item."""
    if item.count("=") != 1:
        raise ValueError(f"bad split item {item!r} in {text!r}; expected name=fraction, e.g. 'val=0.1'")
    name, raw = (s.strip() for s in item.split("="))
    if not name.isidentifier():
        raise ValueError(f"split name {name!r} must be an identifier (letters, digits, '_')")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"split {name!r} has fraction {raw!r}, which is not a number") from None
    return name, value


def validate_splits(fractions: dict[str, float]) -> None:
    """Raise ValueError unless ``fractions`` is a usable split specification."""
    if not fractions:
        raise ValueError("no splits given; expected e.g. {'train': 0.9, 'test': 0.1}")
    for name, value in fractions.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"split name {name!r} must be an identifier (letters, digits, '_')")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"split {name!r} has fraction {value!r}; fractions must be finite and ≥ 0")
    total = math.fsum(fractions.values())
    if abs(total - 1.0) > _TOLERANCE:
        listed = ", ".join(f"{k}={v:g}" for k, v in fractions.items())
        raise ValueError(f"split fractions must sum to 1, got {total:.9g} ({listed})")


def assign_split(article_id: str, fractions: dict[str, float]) -> str:
    """The split of one article: a uniform draw from SHA-256 of its id, cut by the fractions.

    Splits are laid out in name order (not the order given), so ``val=0.1,train=0.9`` and
    ``train=0.9,val=0.1`` assign identically. A split with fraction 0 never receives articles.
    """
    cuts = _cut_points(tuple(sorted(fractions.items())))
    digest = hashlib.sha256(article_id.encode("utf-8")).digest()
    u = (int.from_bytes(digest[:8], "big") >> (64 - _UNIT_BITS)) / (1 << _UNIT_BITS)
    for upper, name in cuts:
        if u < upper:
            return name
    return cuts[-1][1]  # u fell in the float rounding gap just below 1.0


@lru_cache(maxsize=64)
def _cut_points(items: tuple[tuple[str, float], ...]) -> tuple[tuple[float, str], ...]:
    """Cumulative upper bounds per split with a positive fraction (validated once per spec)."""
    validate_splits(dict(items))
    cuts, total = [], 0.0
    for name, value in items:
        if value > 0:
            total += value
            cuts.append((total, name))
    return tuple(cuts)
