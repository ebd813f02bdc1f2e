"""Shard writer: WebDataset-readable output, shard caps, byte-exact resume."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from biomedclip.data.shards import AppendLog, ShardWriter, WriterState, iter_jsonl


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8 + i % 5, 8), (i * 7 % 256, 50, 100)).save(buf, "JPEG")
    return buf.getvalue()


def _samples(n: int) -> list[tuple[str, bytes, str, dict]]:
    return [(f"PMC{i}_F{i % 3}", _jpeg(i), f"caption number {i} ü", {"i": i}) for i in range(n)]


def _write_all(root: Path, samples, max_samples: int) -> ShardWriter:
    writer = ShardWriter(root, "train", max_samples=max_samples)
    for s in samples:
        writer.write(*s)
    writer.close()
    return writer


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_shards_read_back_with_webdataset(tmp_path: Path) -> None:
    samples = _samples(23)
    _write_all(tmp_path, samples, max_samples=10)
    shards = sorted((tmp_path / "train").glob("*.tar"))
    assert [p.name for p in shards] == ["00000.tar", "00001.tar", "00002.tar"]
    assert not list((tmp_path / "train").glob("*.partial"))
    dataset = wds.WebDataset([str(p) for p in shards], shardshuffle=False).decode("pil")
    got = list(dataset)
    assert [g["__key__"] for g in got] == [s[0] for s in samples]
    assert got[5]["txt"] == samples[5][2]
    assert got[5]["json"] == {"i": 5}
    assert got[5]["jpg"].size == (8 + 5 % 5, 8)


def test_members_have_fixed_metadata(tmp_path: Path) -> None:
    _write_all(tmp_path, _samples(3), max_samples=10)
    with tarfile.open(tmp_path / "train" / "00000.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == ["PMC0_F0.jpg", "PMC0_F0.txt", "PMC0_F0.json"]
    assert {m.mtime for m in members} == {0}
    assert {m.uid for m in members} == {0}


def test_byte_cap_starts_new_shard(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "val", max_samples=1000, max_bytes=4000)
    for s in _samples(12):
        writer.write(*s)
    writer.close()
    assert len(list((tmp_path / "val").glob("*.tar"))) > 1


@pytest.mark.parametrize("cut", [0, 1, 9, 10, 11, 17])
def test_resume_is_byte_identical(tmp_path: Path, cut: int) -> None:
    samples = _samples(25)
    reference = tmp_path / "ref"
    _write_all(reference, samples, max_samples=10)

    resumed = tmp_path / "resumed"
    writer = ShardWriter(resumed, "train", max_samples=10)
    for s in samples[:cut]:
        writer.write(*s)
    state = writer.state()
    # Work after the checkpoint that a kill would leave behind (never closed, partly written):
    for s in samples[cut:cut + 7]:
        writer.write(*s)
    writer._file.write(b"half a member")  # a crash mid-write
    writer._file.flush()

    fresh = ShardWriter(resumed, "train", max_samples=10)
    fresh.resume(WriterState.from_dict(json.loads(json.dumps(state.to_dict()))))
    for s in samples[cut:]:
        fresh.write(*s)
    fresh.close()
    assert _digest_tree(resumed) == _digest_tree(reference)


def test_resume_refuses_tampered_shard(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "train", max_samples=10)
    for s in _samples(3):
        writer.write(*s)
    state = writer.state()
    writer._file.truncate(100)
    writer._file.flush()
    with pytest.raises(RuntimeError, match="changed by hand"):
        ShardWriter(tmp_path, "train", max_samples=10).resume(state)


def test_rejects_keys_webdataset_would_split(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, "train")
    with pytest.raises(ValueError, match="must not contain"):
        writer.write("PMC1_fig.1", b"x", "c", {})


def test_append_log_truncates_to_offset(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "rows.jsonl")
    log.append({"a": 1})
    offset = log.offset()
    log.append({"a": 2})
    log.close()
    resumed = AppendLog(tmp_path / "rows.jsonl", offset=offset)
    resumed.append({"a": 3})
    resumed.close()
    assert [r["a"] for r in iter_jsonl(tmp_path / "rows.jsonl")] == [1, 3]
    assert [r["a"] for r in iter_jsonl(tmp_path / "rows.jsonl", limit=offset)] == [1]
