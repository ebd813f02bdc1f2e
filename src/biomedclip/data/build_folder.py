"""The one reader of a shard build folder: where its splits, shards, manifest and stats are.

``biomedclip data build`` (:mod:`biomedclip.data.pipeline`) writes::

    OUT/<split>/NNNNN.tar     WebDataset shards: <key>.jpg, <key>.txt, <key>.json per sample
    OUT/manifest.parquet      one row per kept pair
    OUT/stats.json            counts, and per split its sample count and shard names
    OUT/_build/state.json     the checkpoint (an interrupted build has this and no stats.json)

Training, the tokenizer, embedding, evaluation and the leakage check all read such folders.
Each used to re-derive the layout (``root / split`` globbed for ``*.tar``, ``stats.json`` parsed
for counts, ``manifest.parquet`` opened by name) and to word its own error for a folder that is
not a build; :class:`BuildFolder` is the one place that knows it, so the layout can change in one
file and every stage gives the same answer for the same folder.

Two levels of "a build": a folder whose split folders hold finished ``*.tar`` shards is enough to
read samples (a copied subset, or an interrupted build's finished shards); sample counts, the
manifest and the stats need the *finished* build (``stats.json``), and ask for it themselves.
Unfinished ``*.tar.partial`` shards are never read.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biomedclip.errors import BiomedclipError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "MANIFEST_FILE",
    "STATS_FILE",
    "BuildFolder",
    "NotABuildError",
    "ShardReadError",
    "ShardSample",
]

STATS_FILE = "stats.json"
MANIFEST_FILE = "manifest.parquet"
STATE_FILE = "_build/state.json"
SHARD_GLOB = "*.tar"
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "tif", "tiff")
"""Member extensions read as a sample's image (the build writes ``jpg``; WebDataset allows others)."""


class NotABuildError(BiomedclipError, FileNotFoundError):
    """A folder given as a build's output that holds no (finished) build; the message says what to run.

    Still a :class:`FileNotFoundError`, so callers that caught that keep working.
    """


class ShardReadError(BiomedclipError, OSError):
    """A shard tar that cannot be read (truncated, not a tar); the message names the file."""


@dataclass(frozen=True)
class ShardSample:
    """One sample of a shard: the WebDataset key and its three members (image bytes, caption, metadata)."""

    key: str
    jpg: bytes | None
    txt: str | None
    json: dict[str, Any]
    shard: Path


def _wds_key(name: str) -> tuple[str, str]:
    """WebDataset's split of a member name: the key is everything up to the first dot of the base name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


class BuildFolder:
    """Read access to one ``biomedclip data build`` output folder (see the module docstring).

    ``BuildFolder(path)`` only needs ``path`` to be a folder: readers of samples ask
    :meth:`shards` and word a missing split with :meth:`missing_split`; ``finished=True`` requires
    ``stats.json`` at once (:class:`NotABuildError`), for callers that need counts.
    :meth:`holds_build` tells a build folder from another folder without reading anything.
    """

    def __init__(self, root: str | Path, *, finished: bool = False) -> None:
        self.root = Path(root)
        self._stats: dict[str, Any] | None = None
        if not self.root.is_dir():
            raise NotABuildError(f"{self.root}: no such folder; pass the output folder of `biomedclip data build`")
        if finished:
            self.stats()

    def __repr__(self) -> str:
        return f"BuildFolder({str(self.root)!r})"

    # -- what a folder is -----------------------------------------------------------------------
    @staticmethod
    def holds_build(path: str | Path) -> bool:
        """Whether ``path`` looks like a build folder (cheap: no file is read).

        ``stats.json`` alone does not count: a caption dump (``data captions``) writes one too.
        """
        path = Path(path)
        if not path.is_dir():
            return False
        if (path / MANIFEST_FILE).is_file():
            return True
        return any(child.is_dir() and any(child.glob(SHARD_GLOB)) for child in path.iterdir())

    @property
    def finished(self) -> bool:
        """True when the build completed (its ``stats.json`` exists)."""
        return (self.root / STATS_FILE).is_file()

    @property
    def stats_path(self) -> Path:
        return self.root / STATS_FILE

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    def _not_finished(self, missing: str) -> NotABuildError:
        if (self.root / STATE_FILE).is_file():
            hint = "its build was interrupted: re-run the same `biomedclip data build` command with --resume"
        else:
            hint = "run `biomedclip data build` (or `--resume` an interrupted one)"
        return NotABuildError(f"{self.root / missing} not found: {self.root} is not a finished build folder; {hint}")

    # -- stats and manifest ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The build's ``stats.json`` (read once); :class:`NotABuildError` when the build is not finished."""
        if self._stats is None:
            if not self.finished:
                raise self._not_finished(STATS_FILE)
            try:
                self._stats = json.loads(self.stats_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise NotABuildError(f"{self.stats_path}: unreadable ({exc}); rebuild with `biomedclip data build`"
                                     ) from exc
        return self._stats

    def manifest(self, columns: Iterable[str] | None = None) -> pa.Table:
        """``manifest.parquet`` as an Arrow table (``columns`` to read only some)."""
        import pyarrow.parquet as pq

        if not self.manifest_path.is_file():
            raise self._not_finished(MANIFEST_FILE)
        return pq.read_table(self.manifest_path, columns=list(columns) if columns is not None else None)

    @property
    def has_manifest(self) -> bool:
        return self.manifest_path.is_file()

    # -- splits and shards ----------------------------------------------------------------------
    def splits(self) -> list[str]:
        """Splits holding at least one finished shard: in build order for a finished build
        (``stats.json``), else the split folders' names sorted."""
        if self.finished:
            names = list(self.stats().get("splits", {}))
        else:
            names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        return [name for name in names if self.shards(name)]

    def shards(self, split: str) -> list[Path]:
        """The finished ``.tar`` shards of ``split`` in order (``[]`` for a split the build lacks)."""
        folder = self.root / split
        return sorted(folder.glob(SHARD_GLOB)) if folder.is_dir() else []

    def samples(self, split: str) -> int:
        """Samples in ``split`` as the build counted them (0 for a split it lacks); needs ``stats.json``."""
        info = self.stats().get("splits", {}).get(split) or {}
        return int(info.get("samples", 0))

    def missing_split(self, split: str) -> str:
        """The sentence for "this build has no shards for ``split``" (callers raise their own error type)."""
        have = self.splits()
        advice = (f"it has {', '.join(have)}: pass one of those, or rebuild with a non-zero {split!r} share"
                  if have else "it holds no shards: pass the output folder of `biomedclip data build`")
        return f"{self.root}: no shards for split {split!r} ({self.root / split}/{SHARD_GLOB}); {advice}"

    # -- samples --------------------------------------------------------------------------------
    def iter_samples(self, splits: str | Iterable[str], *, limit: int | None = None) -> Iterator[ShardSample]:
        """Every sample of ``splits`` (one name or several), in shard order, streamed.

        Members are grouped by key as WebDataset does (consecutive members sharing the key);
        image bytes stay encoded. A shard that cannot be read is a :class:`ShardReadError`.
        """
        names = [splits] if isinstance(splits, str) else list(splits)
        count = 0
        for split in names:
            for shard in self.shards(split):
                for sample in read_shard(shard):
                    yield sample
                    count += 1
                    if limit is not None and count >= limit:
                        return


def read_shard(shard: str | Path) -> Iterator[ShardSample]:
    """The samples of one WebDataset tar, streamed (one sequential read, no index)."""
    shard = Path(shard)
    current: str | None = None
    members: dict[str, bytes] = {}

    def emit() -> ShardSample:
        image = next((members[ext] for ext in IMAGE_EXTENSIONS if ext in members), None)
        text = members["txt"].decode("utf-8", errors="replace") if "txt" in members else None
        meta = json.loads(members["json"]) if members.get("json") else {}
        return ShardSample(current or "", image, text, meta, shard)

    try:
        with tarfile.open(shard, mode="r|") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = _wds_key(info.name)
                if key != current:
                    if current is not None:
                        yield emit()
                    current, members = key, {}
                handle = tar.extractfile(info)
                members[ext] = handle.read() if handle is not None else b""
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise ShardReadError(f"{shard}: not a readable shard ({exc}); rebuild it with `biomedclip data build`"
                             ) from exc
    if current is not None:
        yield emit()
