"""Which figure/caption pairs to keep: caption and image filters, and build-wide deduplication.

The per-figure filters run inside the extraction workers; the :class:`Deduplicator` runs once, in
the process that writes the shards, and sees every kept image of the build in a fixed order, so
the same input always yields the same output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biomedclip.data.records import PreparedImage

__all__ = [
    "CAPTION_DROP_REASONS",
    "DEDUP_REASONS",
    "IMAGE_DROP_REASONS",
    "Deduplicator",
    "FilterConfig",
    "caption_drop_reason",
    "hamming",
    "image_drop_reason",
]

CAPTION_DROP_REASONS: frozenset[str] = frozenset({"no_caption", "caption_too_short", "caption_too_long"})
IMAGE_DROP_REASONS: frozenset[str] = frozenset({"image_too_small", "extreme_aspect_ratio"})
DEDUP_REASONS: frozenset[str] = frozenset({"duplicate_exact", "duplicate_perceptual"})


@dataclass
class FilterConfig:
    """Thresholds for keeping a figure/caption pair (all overridable from the CLI).

    - ``min_caption_chars`` = 20: shorter captions are labels ("Figure 1.", "(A)") that carry no
      description for the text encoder to learn from.
    - ``max_caption_chars`` = 20_000: real captions, even long multi-panel ones, stay well below
      this; anything longer is extraction garbage (a whole section swallowed into the caption) and
      would only be truncated by the tokenizer anyway. Checked before any other work, so a 1 MB
      caption is cheap to drop.
    - ``min_image_side`` = 64 (on the ORIGINAL size): icons, equation snippets and inline symbols
      are smaller; a real figure resized down stays useful, a 40 px glyph blown up does not.
    - ``max_aspect_ratio`` = 10.0: long/short side beyond 10 are rulers, banners, gel strips and
      sequence tracks that become a few pixels tall after the square crop at training time.
    - ``dedup_exact`` = True: the same file re-used across articles (logos, journal banners,
      reprinted figures) would be over-weighted in training and leak between splits.
    - ``dedup_perceptual`` = True: the same picture re-encoded or resized by another publisher is
      a duplicate too; sha256 alone misses it.
    - ``phash_max_distance`` = 4 (of 64 bits): re-encodes and rescales of one picture land within
      a few bits, while distinct figures are ~32 apart on average; 4 keeps false merges of
      different-but-similar figures (e.g. two blots on the same template) rare.
    """

    min_caption_chars: int = 20
    max_caption_chars: int = 20_000
    min_image_side: int = 64
    max_aspect_ratio: float = 10.0
    dedup_exact: bool = True
    dedup_perceptual: bool = True
    phash_max_distance: int = 4


def caption_drop_reason(caption: str, cfg: FilterConfig) -> str | None:
    """Why the caption disqualifies its figure (``no_caption``, ``caption_too_short``,
    ``caption_too_long``), or None to keep it. Lengths count characters after stripping."""
    text = caption.strip()
    if not text:
        return "no_caption"
    if len(text) > cfg.max_caption_chars:
        return "caption_too_long"
    if len(text) < cfg.min_caption_chars:
        return "caption_too_short"
    return None


def image_drop_reason(img: PreparedImage, cfg: FilterConfig) -> str | None:
    """Why the image disqualifies its figure (``image_too_small``, ``extreme_aspect_ratio``), or None.

    Uses the original size: the stored copy is capped at 512 px, which says nothing about whether
    the source was a real figure or an icon.
    """
    short, long = sorted((img.orig_width, img.orig_height))
    if short < cfg.min_image_side:
        return "image_too_small"
    if long > cfg.max_aspect_ratio * short:
        return "extreme_aspect_ratio"
    return None


# --- deduplication ---------------------------------------------------------------------------------

_U64 = np.uint64
_MASK64 = (1 << 64) - 1


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex-encoded hashes (e.g. two 16-character phashes)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _popcount(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element (numpy ≥ 2 has a native ufunc; older numpy uses a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return _BYTE_POPCOUNT[values.view(np.uint8)].reshape(*values.shape, 8).sum(axis=-1)


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK64 if shift else value


def _rotl_array(values: np.ndarray, shift: int) -> np.ndarray:
    if not shift:
        return values
    return (values << _U64(shift)) | (values >> _U64(64 - shift))


class _SortedRuns:
    """A growing multiset of uint64 values kept as a few sorted numpy arrays (log-structured).

    New values arrive in batches (``add_batch``); a batch becomes a sorted run and runs of similar
    size are merged, binary-counter style, so there are at most log2(n / batch) runs and a range
    query costs one binary search per run. Storage is 8 bytes per value, with no Python object per
    value, which is what lets the dedup index hold tens of millions of images.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def add_batch(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        self._runs.append(np.sort(values))  # a copy: callers may reuse their buffer
        while len(self._runs) >= 2 and self._runs[-2].size <= self._runs[-1].size:
            newer, older = self._runs.pop(), self._runs.pop()
            # a stable sort of two concatenated sorted runs is a linear merge (timsort/radix)
            self._runs.append(np.sort(np.concatenate((older, newer)), kind="stable"))

    def contains(self, value: int) -> bool:
        key = _U64(value)
        for run in self._runs:
            i = int(run.searchsorted(key))
            if i < run.size and run[i] == key:
                return True
        return False

    def in_range(self, lo: int, end: int) -> list[np.ndarray]:
        """Non-empty slices of the runs holding values v with lo <= v < end (end may be 2**64)."""
        if end > _MASK64:
            starts = [int(run.searchsorted(_U64(lo))) for run in self._runs]
            bounds = [(start, run.size) for start, run in zip(starts, self._runs, strict=True)]
        else:
            keys = np.array([lo, end], dtype=_U64)
            bounds = [tuple(run.searchsorted(keys).tolist()) for run in self._runs]
        return [run[a:b] for (a, b), run in zip(bounds, self._runs, strict=True) if b > a]

    def __len__(self) -> int:
        return sum(run.size for run in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(run.nbytes for run in self._runs)


class Deduplicator:
    """Exact (sha256) and perceptual (phash) duplicate detection across a whole build.

    ``check`` answers ``duplicate_exact``, ``duplicate_perceptual`` or None without recording;
    ``add`` records a kept image. The first image of a group is kept, so a fixed input order gives
    a reproducible result.

    Perceptual lookup uses multi-index hashing: the 64-bit phash is split into d+1 contiguous bands
    (d = ``phash_max_distance``). Two hashes within Hamming distance d differ in at most d bits, so
    by pigeonhole at least one band is identical. Each band has an index of all kept hashes sorted
    by that band (stored rotated so the band is in the top bits, which turns "same band value"
    into a contiguous range of a sorted uint64 array); candidates from the d+1 ranges are verified
    with a popcount. Expected work per lookup is d+1 binary searches per run plus
    ~n / 2^(64/(d+1)) candidates per band, instead of n comparisons.

    Memory: 8 bytes per image for the exact index (the first 64 bits of the sha256: a false match
    needs a 64-bit collision, ~1e-5 even at 15M images) plus 8·(d+1) bytes for the perceptual
    index, all in numpy arrays. The most recent ``buffer_size`` images sit in a small array that
    is scanned directly and folded into the sorted indexes when full.
    """

    def __init__(self, cfg: FilterConfig | None = None, *, buffer_size: int = 8192) -> None:
        cfg = cfg if cfg is not None else FilterConfig()
        if not 0 <= cfg.phash_max_distance < 64:
            raise ValueError(f"phash_max_distance must be in 0..63, got {cfg.phash_max_distance}")
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be ≥ 1, got {buffer_size}")
        self.exact = cfg.dedup_exact
        self.perceptual = cfg.dedup_perceptual
        self.max_distance = cfg.phash_max_distance
        self._bands = _band_layout(self.max_distance + 1)
        self._sha_runs = _SortedRuns()
        self._band_runs = [_SortedRuns() for _ in self._bands]
        self._buffer_size = buffer_size
        self._buf_sha = np.empty(buffer_size, dtype=_U64)
        self._buf_phash = np.empty(buffer_size, dtype=_U64)
        self._buffered = 0
        self._count = 0

    def check(self, sha256: str, phash: str) -> str | None:
        """``duplicate_exact`` / ``duplicate_perceptual`` if an added image matches, else None."""
        if self.exact and self._seen_sha(_sha_key(sha256)):
            return "duplicate_exact"
        if self.perceptual and self._near_phash(_phash_key(phash)):
            return "duplicate_perceptual"
        return None

    def add(self, sha256: str, phash: str) -> None:
        """Record a kept image so later copies of it are reported by ``check``."""
        self._buf_sha[self._buffered] = _sha_key(sha256)
        self._buf_phash[self._buffered] = _phash_key(phash)
        self._buffered += 1
        self._count += 1
        if self._buffered == self._buffer_size:
            self._flush()

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the indexes (for logging memory use on large builds)."""
        runs = self._sha_runs.nbytes + sum(r.nbytes for r in self._band_runs)
        return runs + self._buf_sha.nbytes + self._buf_phash.nbytes

    def _seen_sha(self, key: int) -> bool:
        if np.any(self._buf_sha[: self._buffered] == _U64(key)):
            return True
        return self._sha_runs.contains(key)

    def _near_phash(self, key: int) -> bool:
        d = self.max_distance
        recent = self._buf_phash[: self._buffered]
        if recent.size and bool((_popcount(recent ^ _U64(key)) <= d).any()):
            return True
        candidates: list[np.ndarray] = []
        queries: list[int] = []
        for (shift, width), runs in zip(self._bands, self._band_runs, strict=True):
            rotated = _rotl(key, shift)
            low_bits = 64 - width
            lo = (rotated >> low_bits) << low_bits
            for found in runs.in_range(lo, lo + (1 << low_bits)):
                candidates.append(found)
                queries.append(rotated)
        if not candidates:
            return False
        # one vectorised check for all bands and runs; rotation preserves the Hamming distance,
        # so each candidate is compared with the query rotated the same way
        stacked = np.concatenate(candidates)
        rotated_queries = np.repeat(np.array(queries, dtype=_U64), [c.size for c in candidates])
        return bool((_popcount(stacked ^ rotated_queries) <= d).any())

    def _flush(self) -> None:
        n = self._buffered
        if self.exact:
            self._sha_runs.add_batch(self._buf_sha[:n])
        if self.perceptual:
            phashes = self._buf_phash[:n]
            for (shift, _width), runs in zip(self._bands, self._band_runs, strict=True):
                runs.add_batch(_rotl_array(phashes, shift))  # sorted into a new array
        self._buffered = 0


def _band_layout(n_bands: int) -> list[tuple[int, int]]:
    """(rotate-left shift, width) per band: contiguous bands from the top bit, widths differ ≤ 1."""
    base, extra = divmod(64, n_bands)
    layout, offset = [], 0
    for i in range(n_bands):
        width = base + (1 if i < extra else 0)
        layout.append((offset, width))
        offset += width
    return layout


def _sha_key(sha256: str) -> int:
    if len(sha256) != 64:
        raise ValueError(f"sha256 must be a 64-character hex digest, got {sha256!r}")
    return int(sha256[:16], 16)


def _phash_key(phash: str) -> int:
    value = int(phash, 16)
    if value >> 64:
        raise ValueError(f"phash must be 64 bits (16 hex characters), got {phash!r}")
    return value
