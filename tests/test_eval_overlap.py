"""Leakage check: exact / perceptual image matches and identical / near-identical texts."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from biomedclip.evaluate.overlap import OverlapError, check_overlap, near_hash_pairs, normalise_text, write_overlap


def test_band_index_finds_exactly_the_brute_force_pairs() -> None:
    rng = np.random.default_rng(0)
    corpus = rng.integers(0, 2**63, size=3000, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 3000).astype(
        np.uint64)
    queries = corpus[:40].copy()
    for i in range(40):  # flip 0..6 random bits
        for bit in rng.choice(64, size=i % 7, replace=False):
            queries[i] ^= np.uint64(1) << np.uint64(bit)
    queries = np.concatenate([queries, rng.integers(0, 2**63, size=20, dtype=np.uint64)])
    for distance in (0, 3, 4, 6):
        expected = sorted((qi, int(j), int(d)) for qi, q in enumerate(queries)
                          for j, d in enumerate(np.bitwise_count(corpus ^ q)) if d <= distance)
        assert near_hash_pairs(queries, corpus, distance) == expected
    assert near_hash_pairs(queries[:0], corpus, 4) == []


def test_text_normalisation() -> None:
    assert normalise_text("  Chest  X-ray, PA view.") == normalise_text("chest x ray pa VIEW")
    assert normalise_text("ﬁbrosis") == "fibrosis"  # NFKC folds the ligature


def test_overlap_against_shards(learn_data, realdata: Path, tmp_path: Path) -> None:
    manifest = pq.read_table(learn_data["shards"] / "manifest.parquet").to_pylist()
    train = [r for r in manifest if r["split"] == "train"]
    evalset = tmp_path / "eval"
    (evalset / "x").mkdir(parents=True)
    # 1) the original figure file of a training pair: exact (sha256) match
    original = next(r for r in train if Path(r["source"]).suffix == ".nxml" and r["orig_format"] == "PNG")
    shutil.copy(Path(original["source"]).parent / original["graphic"], evalset / "x" / "copy.png")
    # 2) a resized, re-encoded copy of another training image: perceptual match only
    import webdataset as wds

    sample = next(iter(wds.WebDataset(sorted(str(p) for p in (learn_data["shards"] / "train").glob("*.tar")),
                                      shardshuffle=False)))
    with Image.open(io.BytesIO(sample["jpg"])) as im:
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4)).save(evalset / "x" / "resized.jpg",
                                                                                quality=80)
    # 3) an unrelated real image: no match; 4) an unreadable file: counted and skipped
    shutil.copy(realdata / "images" / "retina.jpg", evalset / "x" / "retina.jpg")
    (evalset / "x" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    report = check_overlap(learn_data["shards"], evalset)
    by_item = {}
    for m in report.matches:
        by_item.setdefault(Path(m["eval_item"]).name, set()).add((m["type"], m["shard_key"]))
    assert ("exact_image", original["key"]) in by_item["copy.png"]
    assert ("perceptual_image", sample["__key__"]) in by_item["resized.jpg"]
    assert not any(t == "exact_image" for t, _ in by_item["resized.jpg"])
    assert "retina.jpg" not in by_item
    c = report.counts
    assert c["eval_images"] == 3 and c["eval_skipped"] == 1 and c["exact_image_items"] == 1
    assert c["perceptual_image_items"] >= 1 and c["pretraining_images"] == len(train)
    assert report.skipped[0]["item"].endswith("broken.png")
    files = write_overlap(report, tmp_path / "out")
    assert "exact image (sha256) | 1" in files["markdown"].read_text()


def test_caption_overlap(learn_data, realdata: Path, tmp_path: Path) -> None:
    train = [r for r in pq.read_table(learn_data["shards"] / "manifest.parquet").to_pylist() if r["split"] == "train"]
    caption = train[0]["caption"]
    words = caption.split()
    near = " ".join(words[:-1] + ["different"])
    shutil.copy(realdata / "images" / "cell.png", tmp_path / "cell.png")
    (tmp_path / "pairs.csv").write_text(
        "path,caption\n"
        f"cell.png,\"{caption.upper()}!!\"\n"
        f"cell.png,\"{near}\"\n"
        "cell.png,A completely unrelated sentence about weather in spring.\n")
    report = check_overlap(learn_data["shards"], tmp_path / "pairs.csv", text_threshold=0.8)
    types = {(m["type"], m["eval_text"][:20]) for m in report.matches}
    assert ("identical_text", caption.upper()[:20]) in types
    assert ("near_identical_text", near[:20]) in types
    assert report.counts["identical_text_items"] == 1 and report.counts["eval_texts"] == 3
    assert not any("weather" in m["eval_text"] for m in report.matches)


def test_overlap_bad_inputs(learn_data, tmp_path: Path) -> None:
    with pytest.raises(OverlapError, match="not a folder"):
        check_overlap(tmp_path / "none", learn_data["shards"])
    with pytest.raises(OverlapError, match="not found"):
        check_overlap(learn_data["shards"], tmp_path / "none.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OverlapError, match="no manifest.parquet"):
        check_overlap(tmp_path / "empty", learn_data["shards"])
