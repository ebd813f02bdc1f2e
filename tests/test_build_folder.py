"""The one reader of a build folder (data/build_folder.py) and the one "latest checkpoint" rule.

Every stage that reads a build — tokenizer, train, embed, evaluation, the leakage check, ``data
stats`` — must see the same splits, shards and counts for the same folder, so these tests check
the reader against the build's own outputs and the stages against the reader.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from biomedclip.data.build_folder import BuildFolder, NotABuildError, ShardReadError, read_shard
from biomedclip.errors import BiomedclipError
from biomedclip.models.checkpoints import latest_checkpoint, resolve_model_folder, run_checkpoints
from biomedclip.models.names import ModelLoadError


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, finished build of a 24-article synthetic corpus: train 0.6, val 0.2, test 0.2."""
    from biomedclip.data.pipeline import BuildConfig, build
    from biomedclip.synth import synthesize

    root = tmp_path_factory.mktemp("bf")
    synthesize(root / "corpus", 24, seed=3, workers=1)
    build(BuildConfig(sources=[str(root / "corpus" / "folders"), str(root / "corpus" / "packages")],
                      out=root / "shards", splits={"train": 0.6, "val": 0.2, "test": 0.2}, shard_size=8,
                      workers=1))
    return root / "shards"


def test_reader_agrees_with_the_build_outputs(build_dir: Path) -> None:
    build = BuildFolder(build_dir, finished=True)
    stats = json.loads((build_dir / "stats.json").read_text())
    manifest = pq.read_table(build_dir / "manifest.parquet").to_pylist()
    assert build.finished and build.has_manifest and build.stats() == stats
    assert build.splits() == [s for s in stats["splits"] if stats["splits"][s]["shards"]] == ["train", "val", "test"]
    total = 0
    for split in build.splits():
        assert [p.name for p in build.shards(split)] == stats["splits"][split]["shards"]
        samples = list(build.iter_samples(split))
        assert len(samples) == build.samples(split) == stats["splits"][split]["samples"] > 0
        rows = {r["key"]: r for r in manifest if r["split"] == split}
        assert [s.key for s in samples] == [r["key"] for r in manifest if r["split"] == split]
        for sample in samples:
            assert sample.txt == rows[sample.key]["caption"] and sample.json["sha256"] == rows[sample.key]["sha256"]
            assert sample.jpg is not None and sample.jpg[:2] == b"\xff\xd8" and sample.json["split"] == split
        total += len(samples)
    assert total == len(manifest) == build.manifest(columns=["key"]).num_rows
    assert len(list(build.iter_samples(["train", "test"], limit=5))) == 5
    assert build.shards("nope") == [] and build.samples("nope") == 0
    assert "it has train, val, test" in build.missing_split("nope")


def test_stages_ask_the_reader(build_dir: Path) -> None:
    from biomedclip.evaluate.datasets import load_retrieval
    from biomedclip.evaluate.features import read_shard_pairs
    from biomedclip.models.tokenizer import iter_captions, list_shards
    from biomedclip.search.items import InputError, shard_files
    from biomedclip.train.launch import split_shards

    build = BuildFolder(build_dir)
    assert list_shards(build_dir, "val") == build.shards("val")
    assert len(list(iter_captions(build_dir, "train"))) == build.samples("train")
    assert split_shards(build_dir, "train") == (build.shards("train"), build.samples("train"))
    assert split_shards(build_dir, "missing") == ([], 0)
    assert shard_files(build_dir) == [t for s in sorted(build.splits()) for t in build.shards(s)]
    assert shard_files(build_dir, ["test", "train"]) == build.shards("test") + build.shards("train")
    assert shard_files(build_dir / "val") == build.shards("val")  # a split folder
    with pytest.raises(InputError, match="no shards for split 'dev'.*it has train, val, test"):
        shard_files(build_dir, ["dev"])
    assert [p.key for p in read_shard_pairs(build_dir, "test")] == [s.key for s in build.iter_samples("test")]
    assert len(load_retrieval(build_dir, "test").captions) == build.samples("test")


def test_not_a_build_is_one_clear_error(build_dir: Path, tmp_path: Path) -> None:
    from biomedclip.data.summary import load_stats
    from biomedclip.train.launch import TrainError, split_shards

    for bad in (tmp_path, tmp_path / "missing"):
        with pytest.raises(NotABuildError) as caught:
            BuildFolder(bad, finished=True)
        assert isinstance(caught.value, BiomedclipError) and isinstance(caught.value, FileNotFoundError)
    with pytest.raises(NotABuildError, match="not a finished build folder; run `biomedclip data build`"):
        load_stats(tmp_path)
    # an interrupted build: finished shards and a checkpoint, no stats.json yet
    partial = tmp_path / "partial"
    shutil.copytree(build_dir / "train", partial / "train")
    (partial / "_build").mkdir()
    (partial / "_build" / "state.json").write_text("{}")
    assert BuildFolder.holds_build(partial) and not BuildFolder(partial).finished
    assert BuildFolder(partial).splits() == ["train"] and len(list(BuildFolder(partial).iter_samples("train"))) > 0
    with pytest.raises(TrainError, match="interrupted: re-run the same `biomedclip data build` command with --resume"):
        split_shards(partial, "train")
    # a caption dump also writes stats.json, but is no shard build
    captions = tmp_path / "captions"
    captions.mkdir()
    (captions / "stats.json").write_text("{}")
    assert not BuildFolder.holds_build(captions) and BuildFolder.holds_build(build_dir)
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ShardReadError, match="broken.tar: not a readable shard"):
        list(read_shard(broken))


def _touch(path: Path, mtime: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))
    return path


def test_one_latest_checkpoint_rule(tmp_path: Path) -> None:
    logs = tmp_path / "run" / "logs"
    ckpts = logs / "train" / "checkpoints"
    for n in (2, 10, 9):
        _touch(ckpts / f"epoch_{n}.pt", 1000 + n)
    _touch(ckpts / "epoch_best.pt", 5000)  # not a number: never "the latest"
    assert latest_checkpoint(logs / "train") == ckpts / "epoch_10.pt" == latest_checkpoint(ckpts)
    _touch(ckpts / "epoch_latest.pt", 900)
    assert latest_checkpoint(logs / "train") == ckpts / "epoch_latest.pt"
    _touch(logs / "again" / "checkpoints" / "epoch_1.pt", 9000)  # a later training in the same run folder
    assert run_checkpoints(tmp_path / "run") == logs / "again" / "checkpoints" / "epoch_1.pt"
    assert resolve_model_folder(tmp_path / "run") == ("checkpoint", logs / "again" / "checkpoints" / "epoch_1.pt")
    (tmp_path / "run" / "bundle").mkdir()
    (tmp_path / "run" / "bundle" / "open_clip_config.json").write_text("{}")
    assert resolve_model_folder(tmp_path / "run") == ("bundle", tmp_path / "run" / "bundle")
    assert latest_checkpoint(tmp_path / "nothing") is None
    with pytest.raises(ModelLoadError, match="holds no model"):
        resolve_model_folder(tmp_path)
