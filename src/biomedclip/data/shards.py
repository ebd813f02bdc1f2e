"""WebDataset shard writing that can be resumed byte-exactly after a kill.

A split's samples go to numbered tar files ``<out>/<split>/NNNNN.tar``. Each sample is three
consecutive members ``<key>.jpg``, ``<key>.txt``, ``<key>.json`` — the layout that WebDataset
and ``open_clip_train`` read directly. The shard being filled is named ``NNNNN.tar.partial``
and renamed when complete, so a finished ``.tar`` is always a valid archive.

Why not ``webdataset.TarWriter``: it writes through a streaming tar (``mode="w|"``) and has no
notion of "continue this shard after a crash". Here every member is written with fixed metadata
(mtime 0, uid 0, mode 0o444), so the bytes depend on the samples alone, and :meth:`state`
records the byte offset after the last complete sample; :meth:`ShardWriter.resume` truncates a
partial shard back to that offset and appends from there. Together with the pipeline's ordered
processing this makes a resumed build identical to an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

SHARD_DIGITS = 5


@dataclass
class WriterState:
    """Where a split's writer stands: shard number, samples in it, bytes of complete samples."""

    shard_index: int = 0
    samples_in_shard: int = 0
    offset: int = 0
    samples_total: int = 0
    shards_closed: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WriterState:
        return cls(**{k: int(v) for k, v in data.items()})


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``00042.tar``)."""
    return f"{index:0{SHARD_DIGITS}d}.tar"


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class ShardWriter:
    """Append samples of one split to size-capped tar shards.

    ``max_samples`` and ``max_bytes`` cap a shard (whichever comes first); a sample is never split
    across shards.
    """

    def __init__(self, root: Path, split: str, *, max_samples: int = 1000, max_bytes: int = 512 << 20):
        if max_samples < 1:
            raise ValueError("max_samples must be ≥ 1")
        self.dir = Path(root) / split
        self.split = split
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self._state = WriterState()
        self._file: BinaryIO | None = None
        self._tar: tarfile.TarFile | None = None

    # -- paths -------------------------------------------------------------------------------
    def _final_path(self, index: int) -> Path:
        return self.dir / shard_name(index)

    def _partial_path(self, index: int) -> Path:
        return self.dir / (shard_name(index) + ".partial")

    @property
    def current_shard(self) -> str:
        """Relative name (``split/NNNNN.tar``) of the shard the next sample goes to."""
        return f"{self.split}/{shard_name(self._state.shard_index)}"

    # -- lifecycle ---------------------------------------------------------------------------
    def resume(self, state: WriterState) -> None:
        """Continue from ``state``: drop anything written after it, reopen the partial shard.

        Shards numbered above ``state.shard_index`` were written after the checkpoint and are
        removed; the current shard (finished or not) is truncated to ``state.offset``.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        for path in self.dir.iterdir():
            stem = path.name.split(".", 1)[0]
            if stem.isdigit() and int(stem) > state.shard_index and path.name.endswith((".tar", ".partial")):
                path.unlink()
        final, partial = self._final_path(state.shard_index), self._partial_path(state.shard_index)
        if final.exists():
            final.replace(partial)
        self._state = WriterState(**state.to_dict())
        if state.offset == 0:
            partial.unlink(missing_ok=True)
            return
        if not partial.exists() or partial.stat().st_size < state.offset:
            raise RuntimeError(
                f"cannot resume: shard {partial} is missing or shorter than the checkpoint says "
                f"({state.offset} bytes); the output folder was changed by hand — start a new build"
            )
        self._file = open(partial, "r+b")  # noqa: SIM115 - kept open across calls
        self._file.truncate(state.offset)
        self._file.seek(state.offset)
        self._tar = tarfile.TarFile(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)

    def _open_current(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self._partial_path(self._state.shard_index), "wb")  # noqa: SIM115
        self._tar = tarfile.TarFile(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self._state.offset = 0
        self._state.samples_in_shard = 0

    def _close_current(self) -> None:
        if self._tar is None or self._file is None:
            return
        self._tar.close()  # writes the end-of-archive blocks
        self._file.close()
        self._partial_path(self._state.shard_index).replace(self._final_path(self._state.shard_index))
        self._tar = self._file = None
        self._state.shards_closed += 1
        self._state.shard_index += 1
        self._state.samples_in_shard = 0
        self._state.offset = 0

    def write(self, key: str, jpeg: bytes, caption: str, meta: dict[str, Any]) -> str:
        """Append one sample; return the relative shard name it went to."""
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/' (WebDataset splits on them)")
        if self._tar is not None and (
            self._state.samples_in_shard >= self.max_samples or self._state.offset >= self.max_bytes
        ):
            self._close_current()
        if self._tar is None:
            self._open_current()
        assert self._tar is not None and self._file is not None
        shard = self.current_shard
        text = caption.encode("utf-8")
        meta_bytes = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")
        for ext, payload in (("jpg", jpeg), ("txt", text), ("json", meta_bytes)):
            self._tar.addfile(_tarinfo(f"{key}.{ext}", len(payload)), io.BytesIO(payload))
        self._file.flush()
        self._state.offset = self._tar.offset
        self._state.samples_in_shard += 1
        self._state.samples_total += 1
        return shard

    def state(self) -> WriterState:
        """Checkpointable position (everything written so far is flushed to the OS)."""
        if self._file is not None:
            self._file.flush()
        return WriterState(**self._state.to_dict())

    def close(self) -> None:
        """Finish the last shard (an empty partial shard is removed, not kept)."""
        if self._tar is not None and self._state.samples_in_shard > 0:
            self._close_current()
        elif self._tar is not None:
            assert self._file is not None
            self._file.close()
            self._partial_path(self._state.shard_index).unlink(missing_ok=True)
            self._tar = self._file = None


class AppendLog:
    """A JSON-lines file written in order and truncatable to a checkpointed byte offset.

    Used for manifest rows and per-item errors during a build, so that both survive a kill and
    can be cut back to the last checkpoint on resume.
    """

    def __init__(self, path: Path, offset: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if offset is None:
            self._file = open(self.path, "wb")  # noqa: SIM115
        else:
            self._file = open(self.path, "r+b" if self.path.exists() else "wb")  # noqa: SIM115
            self._file.truncate(offset)
            self._file.seek(offset)

    def append(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")

    def offset(self) -> int:
        self._file.flush()
        return self._file.tell()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()


def iter_jsonl(path: Path, limit: int | None = None):
    """Rows of a JSON-lines file, optionally only those within the first ``limit`` bytes."""
    with open(path, "rb") as f:
        read = 0
        for line in f:
            read += len(line)
            if limit is not None and read > limit:
                return
            if line.strip():
                yield json.loads(line)


def fsync_dir(path: Path) -> None:
    """Best-effort durability of renames in ``path`` (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
