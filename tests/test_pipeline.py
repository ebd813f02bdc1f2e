"""The build end to end on the synthetic corpus: outputs, splits, determinism, resume after SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from biomedclip.data.pipeline import BuildConfig, BuildError, build
from biomedclip.synth import synthesize

SPLITS = {"train": 0.7, "val": 0.15, "test": 0.15}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    synthesize(root, 160, seed=3, workers=2, broken_fraction=0.05)
    return root


def _sources(corpus: Path) -> list[str]:
    return [str(corpus / "folders"), str(corpus / "packages")]


def shard_digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.glob("*/*.tar"))}


def comparable_stats(out: Path) -> dict:
    stats = json.loads((out / "stats.json").read_text())
    stats.pop("elapsed_s")
    return stats


@pytest.fixture(scope="module")
def reference_build(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "shards"
    build(BuildConfig(sources=_sources(corpus), out=out, splits=SPLITS, workers=2, shard_size=50))
    return out


def test_outputs_are_consistent(corpus: Path, reference_build: Path) -> None:
    out = reference_build
    stats = json.loads((out / "stats.json").read_text())
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    labels = [json.loads(line) for line in (corpus / "labels.jsonl").read_text().splitlines()]

    # every kept pair is in exactly one shard, with the manifest's caption and metadata
    samples = {}
    for split in SPLITS:
        urls = [str(p) for p in sorted((out / split).glob("*.tar"))]
        for s in wds.WebDataset(urls, shardshuffle=False) if urls else []:
            assert s["__key__"] not in samples
            samples[s["__key__"]] = (split, s)
    assert len(samples) == len(manifest) == stats["figures"]["kept"] > 100
    for row in manifest:
        split, sample = samples[row["key"]]
        meta = json.loads(sample["json"])
        assert row["split"] == split == meta["split"]
        assert sample["txt"].decode() == row["caption"]
        assert meta["sha256"] == row["sha256"] and meta["pmcid"] == row["pmcid"]
        assert row["shard"].startswith(f"{split}/")
        assert row["key"].startswith(row["pmcid"] + "_")

    # splits are by article: no article in two splits; all three splits used
    split_of: dict[str, set[str]] = {}
    for row in manifest:
        split_of.setdefault(row["pmcid"], set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert {r["split"] for r in manifest} == set(SPLITS)

    # counts add up, and every deliberately broken item was counted with its file named
    assert stats["articles"]["seen"] == len(list((corpus / "folders").rglob("*.nxml"))) + len(
        list((corpus / "packages").glob("*.tar.gz")))
    broken = [lab for lab in labels if lab.get("broken")]
    assert broken, "the corpus should contain broken items"
    malformed_articles = {b["pmcid"] for b in broken if b["broken"] == "malformed_xml"}
    figure_errors = [b for b in broken if b["broken"] not in ("no_caption", "malformed_xml")]
    assert stats["errors"].get("malformed_xml", 0) == len(malformed_articles)
    assert stats["error_count"] == len(malformed_articles) + len(figure_errors)
    error_sources = [item["source"] for item in stats["error_items"]]
    for item in figure_errors:
        assert any(item["pmcid"] in s and f"#{item['fig_id']}" in s for s in error_sources), item
    drops = [json.loads(line) for line in (out / "drops.jsonl").read_text().splitlines()]
    assert len(drops) == stats["figures"]["dropped"]
    assert {d["reason"] for d in drops} == set(stats["dropped"])
    for item in stats["error_items"]:
        assert item["source"] and item["reason"] and item["detail"]
    kept_keys = {r["key"] for r in manifest}
    assert not kept_keys & {b["key"] for b in broken}
    assert stats["dropped"].get("no_caption", 0) >= sum(1 for b in broken if b["broken"] == "no_caption")


def test_same_output_with_one_worker(corpus: Path, reference_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    build(BuildConfig(sources=_sources(corpus), out=out, splits=SPLITS, workers=1, shard_size=50))
    assert shard_digests(out) == shard_digests(reference_build)
    assert pq.read_table(out / "manifest.parquet").equals(pq.read_table(reference_build / "manifest.parquet"))
    assert comparable_stats(out) == comparable_stats(reference_build)


def test_refuses_non_empty_out_and_changed_settings(corpus: Path, reference_build: Path, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("user file")
    with pytest.raises(BuildError, match="not empty"):
        build(BuildConfig(sources=_sources(corpus), out=tmp_path, splits=SPLITS))
    with pytest.raises(BuildError, match="--resume"):
        build(BuildConfig(sources=_sources(corpus), out=reference_build, splits=SPLITS, shard_size=50))
    with pytest.raises(BuildError, match="other sources or settings"):
        build(BuildConfig(sources=_sources(corpus), out=reference_build, splits=SPLITS, shard_size=7),
              resume=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "biomedclip.cli", *args]


def test_resume_after_sigkill_is_identical(corpus: Path, reference_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = ["data", "build", *_sources(corpus), "--out", str(out), "--splits", "train=0.7,val=0.15,test=0.15",
            "--shard-size", "50", "--workers", "2"]
    kills = 0
    # Kill it at several points: each run gets further, then the last one finishes.
    for wait_for in (20, 60, 110):
        proc = subprocess.Popen(_cli(*args, "--resume", "--checkpoint-seconds", "0"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        state_file = out / "_build" / "state.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = json.loads(state_file.read_text())["articles_done"]
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= wait_for:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2, "the build finished before it could be killed; make the corpus larger"
    assert (out / "_build" / "state.json").exists() and not (out / "stats.json").exists()
    result = subprocess.run(_cli(*args, "--resume"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert shard_digests(out) == shard_digests(reference_build)
    assert pq.read_table(out / "manifest.parquet").equals(pq.read_table(reference_build / "manifest.parquet"))
    assert comparable_stats(out) == comparable_stats(reference_build)
    # a finished build answers --resume without redoing anything
    again = subprocess.run(_cli(*args, "--resume"), capture_output=True, text=True)
    assert again.returncode == 0 and shard_digests(out) == shard_digests(reference_build)


@pytest.mark.timeout(300)
def test_ray_executor_gives_the_same_output(corpus: Path, reference_build: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    build(BuildConfig(sources=_sources(corpus), out=out, splits=SPLITS, workers=2, shard_size=50,
                      executor="ray", batch_size=16))
    assert shard_digests(out) == shard_digests(reference_build)
    assert pq.read_table(out / "manifest.parquet").equals(pq.read_table(reference_build / "manifest.parquet"))


def test_real_oa_packages_and_articles(realdata: Path, tmp_path: Path) -> None:
    """The genuine OA package yields its one figure with the full-size JPEG, not the GIF thumbnail."""
    import io

    from PIL import Image

    out = tmp_path / "real"
    stats = build(BuildConfig(sources=[str(realdata / "jats" / "packages"), str(realdata / "jats" / "nxml")],
                              out=out, workers=2, splits={"train": 1.0}))
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [r["pmcid"] for r in rows] == ["PMC12419688"]
    row = rows[0]
    assert row["graphic"] == "koaf197f1.jpg"
    assert (row["orig_width"], row["orig_height"]) == (750, 495)
    assert row["width"] == 512 and row["license"].startswith("cc-by")
    assert len(row["caption"].split()) > 10
    sample = next(iter(wds.WebDataset(str(out / "train" / "00000.tar"), shardshuffle=False)))
    with Image.open(io.BytesIO(sample["jpg"])) as im:
        assert im.size == (512, 338)
    # 9 real articles without images + 2 packages: every captioned figure of the loose nxml files is
    # found, and reported as a missing image (their media are not shipped), never silently lost.
    assert stats["articles"]["seen"] == 11
    assert stats["articles"]["failed"] == 0
    assert stats["errors"] == {"missing_image": stats["figures"]["found"] - 1 - sum(stats["dropped"].values())}
