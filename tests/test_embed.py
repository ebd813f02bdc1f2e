"""Embedding at scale: inputs of every kind, chunked storage, metadata, errors, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from search_assets import bundle, indexed, loaded_model
from typer.testing import CliRunner

from biomedclip.cli import app
from biomedclip.evaluate.features import read_shard_pairs
from biomedclip.io.medical import ReadOptions
from biomedclip.models.runtime import as_runner
from biomedclip.search.embed import embed_images, embed_texts
from biomedclip.search.items import InputError, discover_images, shard_items
from biomedclip.search.store import EmbeddingStoreError, open_embeddings

# The first test to ask for the session's trained model builds it (corpus, shards, training), which takes
# longer than pytest's default per-test timeout on a 2-core machine.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def assets(learn_data, trained_run, tmp_path_factory):
    return indexed(learn_data, trained_run, tmp_path_factory.mktemp("search"))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_shard_embeddings_match_the_evaluation_encoder(learn_data, trained_run, assets):
    emb = open_embeddings(assets["emb"])
    manifest = pq.read_table(learn_data["shards"] / "manifest.parquet").to_pylist()
    test_keys = [r["key"] for r in manifest if r["split"] == "test"]
    meta = emb.metadata().to_pylist()
    assert emb.kind == "image" and emb.count == len(test_keys) == len(meta)
    assert sorted(r["key"] for r in meta) == sorted(test_keys)
    assert [r["id"] for r in meta] == list(range(emb.count))
    assert emb.info["chunks"] == -(-len(test_keys) // 50)
    by_key = {r["key"]: r for r in manifest}
    for row in meta[:5]:
        assert row["caption"] == by_key[row["key"]]["caption"]
        assert row["pmcid"] == by_key[row["key"]]["pmcid"] and row["split"] == "test"
        assert json.loads(row["meta"])["sha256"] == by_key[row["key"]]["sha256"]
    vectors = emb.vectors()
    assert vectors.shape == (emb.count, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    pairs = {p.key: p for p in read_shard_pairs(learn_data["shards"], "test")}
    reference = loaded_model(trained_run).encode_images([pairs[r["key"]].image for r in meta])
    assert _cosines(vectors, reference).min() > 0.999


def _write_inputs(learn_data, folder: Path) -> list[str]:
    """A folder of ordinary images in several formats, one broken file and a non-image."""
    folder.mkdir()
    pairs = read_shard_pairs(learn_data["shards"], "test", limit=6)
    (folder / "sub").mkdir()
    pairs[0].image.save(folder / "a.png")
    pairs[1].image.save(folder / "b.jpg")
    pairs[2].image.save(folder / "sub" / "c.tif")
    grey16 = (np.asarray(pairs[3].image.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(grey16).save(folder / "sub" / "d16.png")
    (folder / "broken.jpg").write_bytes((folder / "b.jpg").read_bytes()[:200])
    (folder / "notes.txt").write_text("not an image")
    return ["a.png", "b.jpg", "broken.jpg", "sub/c.tif", "sub/d16.png"]


def test_folder_list_and_errors(learn_data, trained_run, tmp_path):
    keys = _write_inputs(learn_data, tmp_path / "imgs")
    items = discover_images([tmp_path / "imgs"])
    assert [i.key for i in items] == keys
    info = embed_images([tmp_path / "imgs"], loaded_model(trained_run), tmp_path / "emb", workers=1, batch_size=2,
                        chunk_size=2)
    assert info["count"] == 4 and info["failed"] == 1
    errors = [json.loads(line) for line in (tmp_path / "emb" / "errors.jsonl").read_text().splitlines()]
    assert [e["key"] for e in errors] == ["broken.jpg"] and "truncated" in errors[0]["error"]
    emb = open_embeddings(tmp_path / "emb")
    assert [r["key"] for r in emb.metadata().to_pylist()] == [k for k in keys if k != "broken.jpg"]
    by_key = dict(zip([r["key"] for r in emb.metadata().to_pylist()], emb.vectors(), strict=True))
    # a file list (relative paths, a caption column) gives the same vectors for the same files
    (tmp_path / "list.csv").write_text("path,caption,label\nimgs/a.png,first figure,x\nimgs/sub/c.tif,third,y\n")
    listed = embed_images([tmp_path / "list.csv"], loaded_model(trained_run), tmp_path / "emb_list", workers=0)
    rows = open_embeddings(tmp_path / "emb_list").metadata().to_pylist()
    assert listed["count"] == 2 and [r["caption"] for r in rows] == ["first figure", "third"]
    assert json.loads(rows[0]["meta"]) == {"label": "x"}
    vectors = open_embeddings(tmp_path / "emb_list").vectors()
    assert _cosines(vectors, np.stack([by_key["a.png"], by_key["sub/c.tif"]])).min() > 0.999


def test_medical_files(realdata, trained_run, tmp_path):
    files = [realdata / "images" / n for n in ("CT_small.dcm", "MR_small.dcm", "anatomical.nii")]
    folder = tmp_path / "scans"
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f)
    (folder / "scan_without_suffix").symlink_to(files[0])  # DICOM found by its magic bytes
    info = embed_images([folder], loaded_model(trained_run), tmp_path / "emb", workers=1)
    emb = open_embeddings(tmp_path / "emb")
    assert info["failed"] == 0
    assert [r["key"] for r in emb.metadata().to_pylist()] == ["CT_small.dcm", "MR_small.dcm", "anatomical.nii",
                                                              "scan_without_suffix"]
    vectors = emb.vectors()
    assert float(vectors[0] @ vectors[3]) > 0.9999  # same file, same vector
    assert float(vectors[0] @ vectors[1]) < 0.999  # different scans differ
    # a CT window changes the picture, hence the vector
    windowed = embed_images([files[0]], loaded_model(trained_run), tmp_path / "emb_w",
                            read_options=ReadOptions(window=(40, 400)))
    assert windowed["count"] == 1
    assert float(open_embeddings(tmp_path / "emb_w").vectors()[0] @ vectors[0]) < 0.9999


def test_texts_from_a_file_and_from_shards(learn_data, trained_run, tmp_path):
    captions = ["chest X-ray with a nodule", "", "H&E stained histology section", "fundus photograph"]
    (tmp_path / "captions.txt").write_text("\n".join(captions) + "\n")
    info = embed_texts([tmp_path / "captions.txt"], loaded_model(trained_run), tmp_path / "emb_txt", chunk_size=2,
                       dtype="float16")
    emb = open_embeddings(tmp_path / "emb_txt")
    assert info["kind"] == "text" and info["count"] == 3 and info["chunks"] == 2
    assert np.load(tmp_path / "emb_txt" / "chunks" / "00000.npy").dtype == np.float16
    assert [r["caption"] for r in emb.metadata().to_pylist()] == [c for c in captions if c]
    reference = loaded_model(trained_run).encode_texts([c for c in captions if c])
    assert _cosines(emb.vectors(), reference).min() > 0.998
    shards = embed_texts([learn_data["shards"]], loaded_model(trained_run), tmp_path / "emb_caps", split=["val"])
    manifest = pq.read_table(learn_data["shards"] / "manifest.parquet").to_pylist()
    assert shards["count"] == sum(r["split"] == "val" for r in manifest)


def test_settings_must_match_to_resume(learn_data, trained_run, tmp_path):
    model = loaded_model(trained_run)
    tar = sorted((learn_data["shards"] / "val").glob("*.tar"))[0]
    embed_images([tar], model, tmp_path / "emb", workers=0)
    with pytest.raises(EmbeddingStoreError, match="different settings.*dtype"):
        embed_images([tar], model, tmp_path / "emb", workers=0, dtype="float16")
    again = embed_images([tar], model, tmp_path / "emb", workers=0)  # same settings: nothing to redo
    assert again["resumed"] and again["items_per_s_last_run"] is None
    redone = embed_images([tar], model, tmp_path / "emb", workers=0, dtype="float16", overwrite=True)
    assert redone["count"] == len(shard_items(tar)) and not redone["resumed"]
    # killed between writing the plan and the info file: starts afresh; a foreign folder is refused
    (tmp_path / "early").mkdir()
    shutil.copy(tmp_path / "emb" / "plan.parquet", tmp_path / "early" / "plan.parquet")
    assert embed_images([tar], model, tmp_path / "early", workers=0)["count"] == redone["count"]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(EmbeddingStoreError, match="not an embeddings folder"):
        embed_images([tar], model, tmp_path / "foreign", workers=0)
    with pytest.raises(InputError, match="no such file"):
        discover_images([tmp_path / "missing"])
    with pytest.raises(EmbeddingStoreError, match="not an embeddings folder"):
        open_embeddings(tmp_path)


def test_resume_after_sigkill_loses_and_duplicates_nothing(learn_data, trained_run, tmp_path):
    """A real `biomedclip embed` process is SIGKILLed mid-run; re-running the command completes it."""
    out = tmp_path / "emb"
    cmd = [sys.executable, "-m", "biomedclip.cli", "embed", str(learn_data["shards"]), "--split", "val",
           "--split", "test", "--model", bundle(trained_run), "--out", str(out), "--chunk-size", "16",
           "--batch-size", "8", "--workers", "1", "--fp32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list((out / "chunks").glob("*.parquet"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the DataLoader worker dies too
    proc.wait()
    info = json.loads((out / "embeddings.json").read_text())
    assert info["status"] == "running"
    survivors = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("*.parquet")}
    assert 2 <= len(survivors) < info["planned"] / 16

    result = CliRunner().invoke(app, cmd[3:])
    assert result.exit_code == 0, result.output
    assert "resumed" in result.output
    for name, mtime in survivors.items():  # finished chunks were kept, not recomputed
        assert (out / "chunks" / name).stat().st_mtime_ns == mtime
    emb = open_embeddings(out)
    keys = [r["key"] for r in emb.metadata().to_pylist()]
    expected = [i.key for split in ("val", "test") for tar in sorted((learn_data["shards"] / split).glob("*.tar"))
                for i in shard_items(tar)]
    assert keys == expected  # every row once, in input order
    assert not list((out / "chunks").glob("*.tmp"))
    vectors = emb.vectors()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    pairs = {p.key: p.image for split in ("val", "test") for p in read_shard_pairs(learn_data["shards"], split)}
    sample = [0, 15, 16, 40, 130, len(keys) - 1]  # both sides of the kill
    fp32 = as_runner(loaded_model(trained_run), precision="fp32")
    reference = fp32.encode_images([pairs[keys[i]] for i in sample])
    assert _cosines(vectors[sample], reference).min() > 0.9999


def test_cli_embed_help_and_summary(learn_data, trained_run, tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(app, ["embed", "--help"]).output
    assert "resume" in help_text.lower() or "again" in help_text.lower()
    result = runner.invoke(app, ["embed", str(learn_data["shards"]), "--split", "val", "--model", bundle(trained_run),
                                 "--out", str(tmp_path / "emb"), "--text"])
    assert result.exit_code == 0, result.output
    assert "texts embedded" in result.output and "texts/s" in result.output
    bad = runner.invoke(app, ["embed", str(tmp_path / "nothing"), "--model", bundle(trained_run),
                              "--out", str(tmp_path / "e2")])
    assert bad.exit_code == 2 and "no such file" in " ".join(bad.output.split())
