"""Caption/image filters and the build-wide Deduplicator (checked against brute force)."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest

from biomedclip.data.filters import (
    Deduplicator,
    FilterConfig,
    caption_drop_reason,
    hamming,
    image_drop_reason,
)
from biomedclip.data.records import PreparedImage

CFG = FilterConfig()


def _image(orig_width: int, orig_height: int) -> PreparedImage:
    return PreparedImage(jpeg=b"", width=0, height=0, orig_width=orig_width, orig_height=orig_height,
                         orig_format="PNG", sha256="0" * 64, phash="0" * 16)


def _sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _hex(value: int) -> str:
    return f"{value:016x}"


# --- captions and images ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("", "no_caption"),
        ("   \n\t ", "no_caption"),
        ("Figure 1.", "caption_too_short"),
        ("   (A) panel      ", "caption_too_short"),
        ("x" * 20, None),
        ("Chest radiograph showing a right lower lobe opacity.", None),
        ("a" * 20_000, None),
        ("a" * 20_001, "caption_too_long"),
        ("word " * 200_000, "caption_too_long"),  # 1 MB: dropped, not a crash
    ],
)
def test_caption_drop_reason(caption: str, expected: str | None) -> None:
    assert caption_drop_reason(caption, CFG) == expected


def test_caption_thresholds_are_configurable() -> None:
    cfg = FilterConfig(min_caption_chars=5, max_caption_chars=10)
    assert caption_drop_reason("abcd", cfg) == "caption_too_short"
    assert caption_drop_reason("abcde", cfg) is None
    assert caption_drop_reason("abcdefghijk", cfg) == "caption_too_long"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((64, 64), None),
        ((63, 500), "image_too_small"),
        ((500, 10), "image_too_small"),
        ((0, 0), "image_too_small"),
        ((1000, 100), None),
        ((1001, 100), "extreme_aspect_ratio"),
        ((100, 1500), "extreme_aspect_ratio"),
        ((4000, 3000), None),
    ],
)
def test_image_drop_reason(size: tuple[int, int], expected: str | None) -> None:
    assert image_drop_reason(_image(*size), CFG) == expected


def test_image_filter_uses_original_size_not_capped_size() -> None:
    img = dataclasses.replace(_image(3000, 2000), width=512, height=341)
    assert image_drop_reason(img, FilterConfig(min_image_side=1000)) is None


def test_defaults() -> None:
    assert dataclasses.asdict(CFG) == {
        "min_caption_chars": 20, "max_caption_chars": 20_000, "min_image_side": 64,
        "max_aspect_ratio": 10.0, "dedup_exact": True, "dedup_perceptual": True, "phash_max_distance": 4,
    }


# --- dedup behaviour ----------------------------------------------------------------------------------

def test_exact_perceptual_and_distinct() -> None:
    dedup = Deduplicator(CFG)
    base = 0x0123456789ABCDEF
    assert dedup.check(_sha(1), _hex(base)) is None
    assert len(dedup) == 0  # check does not record
    dedup.add(_sha(1), _hex(base))
    assert len(dedup) == 1
    assert dedup.check(_sha(1), _hex(base)) == "duplicate_exact"
    assert dedup.check(_sha(1), _hex(base ^ 0xFFFF)) == "duplicate_exact"  # same file wins
    assert dedup.check(_sha(2), _hex(base)) == "duplicate_perceptual"
    assert dedup.check(_sha(2), _hex(base ^ 0b1111)) == "duplicate_perceptual"  # distance 4
    assert dedup.check(_sha(2), _hex(base ^ 0b11111)) is None  # distance 5
    assert dedup.check(_sha(3), _hex(~base & (2**64 - 1))) is None


def test_exact_uses_only_the_digest_prefix_consistently() -> None:
    dedup = Deduplicator(FilterConfig(dedup_perceptual=False))
    dedup.add("ab" * 32, "0" * 16)
    assert dedup.check("ab" * 32, "f" * 16) == "duplicate_exact"
    assert dedup.check("ab" * 31 + "cd", "0" * 16) == "duplicate_exact"  # same first 64 bits
    assert dedup.check("cd" * 32, "0" * 16) is None  # perceptual off
    with pytest.raises(ValueError):
        dedup.check("ab" * 8, "0" * 16)  # not a sha256 hex digest


def test_switches() -> None:
    only_phash = Deduplicator(FilterConfig(dedup_exact=False))
    only_phash.add(_sha(1), _hex(1))
    assert only_phash.check(_sha(1), _hex(0xFFFF_FFFF_0000_0000)) is None  # same file, far phash
    assert only_phash.check(_sha(9), _hex(3)) == "duplicate_perceptual"
    nothing = Deduplicator(FilterConfig(dedup_exact=False, dedup_perceptual=False))
    nothing.add(_sha(1), _hex(1))
    assert nothing.check(_sha(1), _hex(1)) is None


def test_matches_found_after_flush_into_sorted_runs() -> None:
    dedup = Deduplicator(CFG, buffer_size=4)
    for i in range(37):  # several flushes and merges
        dedup.add(_sha(i), _hex(i << 40))
    assert len(dedup) == 37
    for i in range(37):
        assert dedup.check(_sha(i), _hex(0)) == "duplicate_exact"
        assert dedup.check(_sha(1000 + i), _hex((i << 40) ^ 0b101)) == "duplicate_perceptual"
    assert dedup.check(_sha(5000), _hex(0xFFFF_0000_FFFF)) is None


def test_bad_hashes_and_settings() -> None:
    dedup = Deduplicator(CFG)
    with pytest.raises(ValueError):
        dedup.check(_sha(1), "not-hex")
    with pytest.raises(ValueError):
        dedup.add(_sha(1), "1" * 17)
    with pytest.raises(ValueError):
        Deduplicator(FilterConfig(phash_max_distance=64))
    with pytest.raises(ValueError):
        Deduplicator(FilterConfig(phash_max_distance=-1))


def test_hamming() -> None:
    assert hamming("0" * 16, "f" * 16) == 64
    assert hamming("00000000000000ff", "000000000000000f") == 4


# --- band index vs brute force ------------------------------------------------------------------------

def _flip_bits(rng: random.Random, value: int, count: int) -> int:
    for bit in rng.sample(range(64), count):
        value ^= 1 << bit
    return value


def _brute_force(stream: list[tuple[str, int]], max_distance: int) -> list[str | None]:
    kept_sha: set[str] = set()
    kept_phash: list[int] = []
    answers: list[str | None] = []
    for sha, phash in stream:
        if sha in kept_sha:
            answer = "duplicate_exact"
        elif any((phash ^ k).bit_count() <= max_distance for k in kept_phash):
            answer = "duplicate_perceptual"
        else:
            answer = None
            kept_sha.add(sha)
            kept_phash.append(phash)
        answers.append(answer)
    return answers


def _stream(seed: int, n: int) -> list[tuple[str, int]]:
    """Random 64-bit hashes plus planted near neighbours at distances 0..6 and exact repeats."""
    rng = random.Random(seed)
    stream: list[tuple[str, int]] = []
    for i in range(n):
        roll = rng.random()
        if stream and roll < 0.35:
            _, earlier = rng.choice(stream)
            stream.append((_sha(i), _flip_bits(rng, earlier, rng.randint(0, 6))))
        elif stream and roll < 0.40:
            stream.append(rng.choice(stream))
        else:
            stream.append((_sha(i), rng.getrandbits(64)))
    return stream


@pytest.mark.parametrize("max_distance", [0, 1, 2, 3, 4, 6, 10])
def test_band_index_agrees_with_brute_force(max_distance: int) -> None:
    stream = _stream(seed=max_distance, n=3000)
    expected = _brute_force(stream, max_distance)
    dedup = Deduplicator(FilterConfig(phash_max_distance=max_distance), buffer_size=97)
    answers = []
    for sha, phash in stream:
        answer = dedup.check(sha, _hex(phash))
        if answer is None:
            dedup.add(sha, _hex(phash))
        answers.append(answer)
    assert answers == expected
    assert len(dedup) == expected.count(None)
    # the planted neighbours must exercise both outcomes of the distance test
    assert expected.count("duplicate_perceptual") > 100 and expected.count(None) > 1500


def test_clustered_hashes_agree_with_brute_force() -> None:
    # real phashes are not uniform (many near-white figures): hammer a few dense clusters
    rng = random.Random(7)
    centres = [rng.getrandbits(64) for _ in range(5)]
    stream = [(_sha(i), _flip_bits(rng, rng.choice(centres), rng.randint(3, 12))) for i in range(2000)]
    expected = _brute_force(stream, 4)
    dedup = Deduplicator(CFG, buffer_size=64)
    answers = []
    for sha, phash in stream:
        answers.append(dedup.check(sha, _hex(phash)))
        if answers[-1] is None:
            dedup.add(sha, _hex(phash))
    assert answers == expected


def test_deterministic() -> None:
    stream = _stream(seed=99, n=1500)

    def run() -> list[str | None]:
        dedup = Deduplicator(CFG, buffer_size=50)
        out = []
        for sha, phash in stream:
            out.append(dedup.check(sha, _hex(phash)))
            if out[-1] is None:
                dedup.add(sha, _hex(phash))
        return out

    assert run() == run()


def test_memory_is_compact() -> None:
    dedup = Deduplicator(CFG, buffer_size=1024)
    rng = random.Random(3)
    for i in range(20_000):
        dedup.add(_sha(i), _hex(rng.getrandbits(64)))
    # 8 bytes (sha prefix) + 8 per band (5 bands at distance 4), plus the fixed-size buffers
    assert dedup.nbytes <= 20_000 * 48 + 2 * 1024 * 8
