"""The embeddings folder: chunked ``.npy`` vectors + Parquet metadata, written so a killed run resumes.

Layout of ``EMB/``::

    embeddings.json      what was embedded how: kind (image|text), model, dim, dtype, chunk size,
                         inputs and options, status (running|complete), counts, timing
    plan.parquet         the ordered work list (one row per item, see search/items.py)
    chunks/NNNNN.npy     unit-norm vectors of chunk N ([rows, dim], float32 or float16)
    chunks/NNNNN.parquet the chunk's items: plan_index, row in the .npy (-1 if it failed), error
    metadata.parquet     every embedded row in order: id (= row of the concatenated vectors),
                         key, source, offset, size, caption, pmcid, split, meta (JSON)
    errors.jsonl         one line per item that could not be embedded (key, source, error)

Chunk N always covers plan rows ``[N*chunk_size, (N+1)*chunk_size)``. A chunk is complete when
its ``.parquet`` exists; both files are written to a temporary name and renamed, the vectors
first, so a kill at any instant leaves either a complete chunk or nothing that counts. Resuming
recomputes exactly the incomplete chunks from the stored plan: no row is lost or duplicated.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from biomedclip.errors import BiomedclipError
from biomedclip.search.items import ITEM_COLUMNS, Item

INFO = "embeddings.json"
PLAN = "plan.parquet"
METADATA = "metadata.parquet"
ERRORS = "errors.jsonl"
CHUNKS = "chunks"
DTYPES: tuple[str, ...] = ("float32", "float16")

_ITEM_SCHEMA = pa.schema([
    ("key", pa.string()), ("source", pa.string()), ("offset", pa.int64()), ("size", pa.int64()),
    ("caption", pa.string()), ("pmcid", pa.string()), ("split", pa.string()), ("meta", pa.string()),
])
_CHUNK_SCHEMA = pa.schema([("plan_index", pa.int64()), ("row", pa.int64()), *_ITEM_SCHEMA, ("error", pa.string())])


class EmbeddingStoreError(BiomedclipError, RuntimeError):
    """An embeddings folder that cannot be written, resumed or read; the message says what to do."""


@dataclass
class RunSpec:
    """Everything that must match for a run to continue an existing folder."""

    kind: str  # "image" | "text"
    model: str
    weights_sha256: str = ""  # what made the vectors, whatever path it was loaded from
    dtype: str = "float32"
    chunk_size: int = 2048
    inputs: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "weights_sha256": self.weights_sha256,
                "dtype": self.dtype, "chunk_size": self.chunk_size,
                "inputs": self.inputs, "options": self.options}


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8"))


def chunk_name(index: int) -> str:
    return f"{index:05d}"


class EmbeddingWriter:
    """Creates or resumes an embeddings folder and stores one finished chunk at a time."""

    def __init__(self, out: str | Path, spec: RunSpec, discover: Callable[[], list[Item]], *,
                 overwrite: bool = False) -> None:
        """Open ``out`` for ``spec``: resume a matching unfinished (or finished) run, else start fresh.

        ``discover`` is only called for a fresh run — a resumed run uses its stored plan, so the
        chunk boundaries cannot move even if the input folder changed in between.
        """
        if spec.dtype not in DTYPES:
            raise EmbeddingStoreError(f"dtype must be one of {DTYPES}, got {spec.dtype!r}")
        if spec.chunk_size < 1:
            raise EmbeddingStoreError("chunk size must be ≥ 1")
        self.out = Path(out)
        self.spec = spec
        self.chunks_dir = self.out / CHUNKS
        self.resumed = False
        info_path = self.out / INFO
        if info_path.is_file() and not overwrite:
            info = json.loads(info_path.read_text(encoding="utf-8"))
            previous = {k: info.get(k) for k in spec.identity()}
            if previous != spec.identity():
                changed = sorted(k for k, v in spec.identity().items() if previous.get(k) != v)
                raise EmbeddingStoreError(
                    f"{self.out} holds embeddings made with different settings ({', '.join(changed)}); "
                    "pass --overwrite to replace them or choose another --out")
            self.items = [Item.from_row(r) for r in pq.read_table(self.out / PLAN).to_pylist()]
            self.info = info
            self.resumed = True
        else:
            # a run killed between writing its plan and its info file left only these behind
            leftovers = {PLAN, PLAN + ".tmp", INFO + ".tmp", CHUNKS}
            if (self.out.exists() and not overwrite
                    and any(p.name not in leftovers or (p.is_dir() and any(p.iterdir())) for p in self.out.iterdir())):
                raise EmbeddingStoreError(f"{self.out} exists and is not an embeddings folder; choose another --out")
            if overwrite and self.out.exists():
                self._clear()
            self.out.mkdir(parents=True, exist_ok=True)
            self.items = discover()
            if not self.items:
                raise EmbeddingStoreError("nothing to embed: the inputs hold no readable items")
            table = pa.Table.from_pylist([i.to_row() for i in self.items], schema=_ITEM_SCHEMA)
            _atomic_write(self.out / PLAN, lambda p: pq.write_table(table, p))
            self.info = {**spec.identity(), "status": "running", "planned": len(self.items),
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            _write_json(info_path, self.info)
        self.chunks_dir.mkdir(exist_ok=True)
        self._drop_incomplete()

    def _clear(self) -> None:
        for name in (INFO, PLAN, METADATA, ERRORS):
            (self.out / name).unlink(missing_ok=True)
        if self.chunks_dir.is_dir():
            for p in self.chunks_dir.iterdir():
                p.unlink()

    def _drop_incomplete(self) -> None:
        """Remove what a kill left behind: temporary files and vectors whose chunk never completed."""
        for p in self.chunks_dir.iterdir():
            if p.name.endswith(".tmp") or (p.suffix == ".npy" and not p.with_suffix(".parquet").is_file()):
                p.unlink()

    @property
    def n_chunks(self) -> int:
        return -(-len(self.items) // self.spec.chunk_size)

    def chunk_range(self, index: int) -> range:
        """Plan rows of chunk ``index``."""
        start = index * self.spec.chunk_size
        return range(start, min(start + self.spec.chunk_size, len(self.items)))

    def is_complete(self, index: int) -> bool:
        return (self.chunks_dir / f"{chunk_name(index)}.parquet").is_file()

    def pending_chunks(self) -> list[int]:
        """Chunks still to compute, in order."""
        return [i for i in range(self.n_chunks) if not self.is_complete(i)]

    def done_rows(self) -> int:
        """Plan rows already covered by complete chunks."""
        return sum(len(self.chunk_range(i)) for i in range(self.n_chunks) if self.is_complete(i))

    def write_chunk(self, index: int, vectors: np.ndarray, ok: Sequence[int], errors: dict[int, str]) -> None:
        """Store chunk ``index``: ``vectors[j]`` belongs to plan row ``ok[j]``; ``errors`` maps failed rows."""
        rows = self.chunk_range(index)
        if sorted([*ok, *errors]) != list(rows):
            raise EmbeddingStoreError(f"chunk {index}: results do not cover its rows exactly")
        if len(vectors) != len(ok):
            raise EmbeddingStoreError(f"chunk {index}: {len(vectors)} vectors for {len(ok)} items")
        position = {plan_index: j for j, plan_index in enumerate(ok)}
        records = []
        for plan_index in rows:
            records.append({"plan_index": plan_index, "row": position.get(plan_index, -1),
                            **self.items[plan_index].to_row(), "error": errors.get(plan_index)})
        table = pa.Table.from_pylist(records, schema=_CHUNK_SCHEMA)
        array = np.ascontiguousarray(vectors, dtype=self.spec.dtype)
        name = chunk_name(index)

        def save_npy(path: Path) -> None:
            with open(path, "wb") as fh:  # np.save on a path would append ".npy" to the temporary name
                np.save(fh, array)

        _atomic_write(self.chunks_dir / f"{name}.npy", save_npy)
        _atomic_write(self.chunks_dir / f"{name}.parquet", lambda p: pq.write_table(table, p))

    def finish(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Assemble ``metadata.parquet`` and ``errors.jsonl`` from the chunks; mark the run complete."""
        pending = self.pending_chunks()
        if pending:
            raise EmbeddingStoreError(f"{len(pending)} chunks are not done yet (first: {pending[0]})")
        tables = [pq.read_table(self.chunks_dir / f"{chunk_name(i)}.parquet") for i in range(self.n_chunks)]
        chunks = pa.concat_tables(tables)
        ok = chunks.filter(pc.greater_equal(chunks["row"], 0))
        failed = chunks.filter(pc.less(chunks["row"], 0))
        meta = ok.select(["plan_index", *ITEM_COLUMNS])
        meta = meta.add_column(0, "id", pa.array(np.arange(ok.num_rows, dtype=np.int64)))
        _atomic_write(self.out / METADATA, lambda p: pq.write_table(meta, p))
        with open(self.out / ERRORS, "w", encoding="utf-8") as fh:
            for row in failed.select(["key", "source", "error"]).to_pylist():
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        dims = {int(np.load(self.chunks_dir / f"{chunk_name(i)}.npy", mmap_mode="r").shape[1])
                for i in range(self.n_chunks) if len(tables[i]) and pc.max(tables[i]["row"]).as_py() >= 0}
        self.info.update({"status": "complete", "count": ok.num_rows, "failed": failed.num_rows,
                          "chunks": self.n_chunks, "dim": dims.pop() if dims else None, **(extra or {})})
        _write_json(self.out / INFO, self.info)
        return self.info


# -- reading ---------------------------------------------------------------------------------------

class EmbeddingSet:
    """A finished embeddings folder: vectors chunk by chunk or all at once, and their metadata."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        info_path = self.path / INFO
        if not info_path.is_file():
            raise EmbeddingStoreError(f"{self.path} is not an embeddings folder ({INFO} missing); "
                                      "create one with `biomedclip embed`")
        self.info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
        if self.info.get("status") != "complete":
            raise EmbeddingStoreError(f"{self.path}: the embedding run did not finish; run the same "
                                      "`biomedclip embed` command again to resume it")

    @property
    def count(self) -> int:
        return int(self.info["count"])

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def kind(self) -> str:
        return str(self.info["kind"])

    @property
    def model(self) -> str:
        return str(self.info["model"])

    @property
    def weights_sha256(self) -> str | None:
        """sha256 of the weights that made the vectors (None for folders written before it was recorded)."""
        return self.info.get("weights_sha256") or None

    def metadata(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The per-row metadata (``id`` = row of :meth:`vectors`)."""
        return pq.read_table(self.path / METADATA, columns=list(columns) if columns else None)

    def iter_chunks(self) -> Iterator[np.ndarray]:
        """float32 vector blocks in row order; memory stays at one chunk."""
        for i in range(int(self.info["chunks"])):
            block = np.load(self.path / CHUNKS / f"{chunk_name(i)}.npy")
            if len(block):
                yield block.astype(np.float32, copy=False)

    def vectors(self) -> np.ndarray:
        """All vectors as one float32 array [count, dim]."""
        out = np.empty((self.count, self.dim), dtype=np.float32)
        row = 0
        for block in self.iter_chunks():
            out[row:row + len(block)] = block
            row += len(block)
        if row != self.count:
            raise EmbeddingStoreError(f"{self.path}: chunks hold {row} vectors, metadata says {self.count}")
        return out


def open_embeddings(path: str | Path) -> EmbeddingSet:
    """Open a finished embeddings folder written by :func:`biomedclip.search.embed.embed_images`."""
    return EmbeddingSet(path)
