"""Split parsing and the stable, uniform, by-article assignment."""

from __future__ import annotations

import hashlib

import pytest

from biomedclip.data.splits import DEFAULT_SPLITS, assign_split, parse_splits


def test_default_splits_sum_to_one() -> None:
    assert DEFAULT_SPLITS == {"train": 0.951, "val": 0.001, "test": 0.048}
    assert abs(sum(DEFAULT_SPLITS.values()) - 1) < 1e-9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train=0.8,val=0.1,test=0.1", {"train": 0.8, "val": 0.1, "test": 0.1}),
        (" train = 0.9 , test = 0.1 ", {"train": 0.9, "test": 0.1}),
        ("all=1", {"all": 1.0}),
        ("train=1,val=0,test=0", {"train": 1.0, "val": 0.0, "test": 0.0}),
        ("a=0.3333333,b=0.3333333,c=0.3333334", {"a": 0.3333333, "b": 0.3333333, "c": 0.3333334}),
    ],
)
def test_parse_splits(text: str, expected: dict[str, float]) -> None:
    assert parse_splits(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("train=0.8,val=0.1", "sum to 1"),
        ("train=0.9,val=0.2,test=-0.1", "≥ 0"),
        ("train=0.5,train=0.5", "twice"),
        ("train=abc", "not a number"),
        ("train", "name=fraction"),
        ("train=0.5=0.5", "name=fraction"),
        ("my-split=1", "identifier"),
        ("=1", "identifier"),
        ("train=nan", "finite"),
        ("train=inf", "finite"),
        ("train=0.8,,test=0.2", "name=fraction"),
    ],
)
def test_parse_splits_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_splits(text)


def test_assign_split_is_stable_and_matches_a_sha256_recomputation() -> None:
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}
    ids = [f"PMC{i}" for i in range(1, 200)]
    first = [assign_split(a, fractions) for a in ids]
    assert first == [assign_split(a, dict(fractions)) for a in ids]
    # independent recomputation: names in sorted order, first 53 bits of sha256 as a uniform draw
    for article_id, split in zip(ids, first, strict=True):
        digest = hashlib.sha256(article_id.encode("utf-8")).digest()
        u = (int.from_bytes(digest[:8], "big") >> 11) / 2**53
        expected = "test" if u < 0.1 else "train" if u < 0.9 else "val"
        assert split == expected


def test_assign_split_ignores_the_order_fractions_are_given_in() -> None:
    a = {"train": 0.7, "val": 0.2, "test": 0.1}
    b = {"test": 0.1, "val": 0.2, "train": 0.7}
    assert all(assign_split(f"PMC{i}", a) == assign_split(f"PMC{i}", b) for i in range(500))


def test_proportions_on_20k_ids_and_one_split_each() -> None:
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    counts = dict.fromkeys(fractions, 0)
    for i in range(20_000):
        split = assign_split(f"PMC{1_000_000 + i}", fractions)
        counts[split] += 1  # KeyError would mean an unknown split
    assert sum(counts.values()) == 20_000
    for name, fraction in fractions.items():
        # binomial standard deviation is ≤ 0.0033 here; allow ~4 sigma
        assert abs(counts[name] / 20_000 - fraction) < 0.013, counts


def test_default_proportions_small_val_split_still_used() -> None:
    counts = dict.fromkeys(DEFAULT_SPLITS, 0)
    for i in range(20_000):
        counts[assign_split(f"PMC{i}", DEFAULT_SPLITS)] += 1
    assert 5 <= counts["val"] <= 45  # expected 20
    assert abs(counts["test"] / 20_000 - 0.048) < 0.008


def test_zero_fraction_split_never_assigned() -> None:
    fractions = {"train": 0.5, "val": 0.0, "test": 0.5}
    assert {assign_split(f"id{i}", fractions) for i in range(2000)} == {"train", "test"}


def test_assign_split_validates_fractions() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        assign_split("PMC1", {"train": 0.5})
    with pytest.raises(ValueError):
        assign_split("PMC1", {})
