"""FAISS index over unit-norm embeddings: exact for small collections, IVF within a memory budget for large.

Inner product on normalised vectors is cosine similarity, the score CLIP was trained with.

How the index is chosen (``kind="auto"``):

* fewer than ``exact_below`` vectors (default 50,000): ``Flat`` — exact, and at 512 dims still a
  few milliseconds per query on one core;
* otherwise an inverted-file index with ``nlist ≈ 4·√n`` lists (a power of two), k-means-trained
  on a sample, with the most accurate vector encoding that fits ``max_memory`` (default: half the
  machine's RAM):

  ==========  ===================  ==========================================
  encoding    bytes per vector     when
  ==========  ===================  ==========================================
  IVF-Flat    4·d + 8              fits: exact distances inside probed lists
  IVF-SQ8     d + 8                8-bit scalar quantisation, ~4× smaller
  IVF-PQ      m + 8 (m = d/4 …)    product quantisation, m bytes per vector
  ==========  ===================  ==========================================

IVF rather than HNSW by default because it builds in about a minute per million 512-d vectors
on one core (HNSW takes ~10×), its memory is predictable from the table above, and one knob,
``nprobe``, trades speed for recall. ``kind="hnsw"`` (HNSW32 over full vectors) is there for
those who prefer it.

After building, the search knob (``nprobe`` or ``efSearch``) is tuned on a sample: sampled
collection vectors are queried (each excluding itself) against exact search, and the smallest
setting whose recall@10 reaches ``target_recall`` is stored with the index; the recall reached
is reported. The index folder (``index.faiss`` + ``index.json`` + ``metadata.parquet``) is
self-contained: search does not need the embeddings folder.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.errors import BiomedclipError

INDEX_FILE = "index.faiss"
INDEX_INFO = "index.json"
INDEX_METADATA = "metadata.parquet"
KINDS: tuple[str, ...] = ("auto", "flat", "ivf-flat", "ivf-sq8", "ivf-pq", "hnsw")
DEFAULT_EXACT_BELOW = 50_000
HNSW_M = 32
NPROBE_STEPS: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048)
EF_STEPS: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)

ProgressFn = Callable[[str], None]
"""``progress(stage)`` with stage in train | add | tune | save."""


class IndexBuildError(BiomedclipError, RuntimeError):
    """An index that cannot be built or loaded; the message says why and what to do."""


# -- vectors from anywhere -------------------------------------------------------------------------

class VectorSource:
    """Row blocks of a float32 [n, d] collection: an in-memory array or an embeddings folder."""

    def __init__(self, data: Any, block: int = 65_536) -> None:
        from biomedclip.search.store import EmbeddingSet

        self._set = data if isinstance(data, EmbeddingSet) else None
        self._array = None if self._set is not None else np.asarray(data, dtype=np.float32)
        if self._array is not None and self._array.ndim != 2:
            raise IndexBuildError(f"vectors must be 2-D [n, d], got shape {self._array.shape}")
        self.block = block

    @property
    def count(self) -> int:
        return self._set.count if self._set is not None else len(self._in_memory)

    @property
    def dim(self) -> int:
        return self._set.dim if self._set is not None else int(self._in_memory.shape[1])

    @property
    def _in_memory(self) -> np.ndarray:
        assert self._array is not None  # exactly one of _set / _array is set by __init__
        return self._array

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 unit-norm block) in row order."""
        import faiss

        row = 0
        source = self._set.iter_chunks() if self._set is not None else (
            self._in_memory[i:i + self.block] for i in range(0, len(self._in_memory), self.block))
        for block in source:
            block = np.ascontiguousarray(block, dtype=np.float32).copy()
            faiss.normalize_L2(block)  # float16 storage or user arrays may be off unit norm
            yield row, block
            row += len(block)

    def take(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` (sorted or not) as one float32 array, in the order given."""
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        sorted_ids = ids[order]
        for start, block in self.blocks():
            lo, hi = np.searchsorted(sorted_ids, [start, start + len(block)])
            if hi > lo:
                out[order[lo:hi]] = block[sorted_ids[lo:hi] - start]
        return out


# -- choosing --------------------------------------------------------------------------------------

@dataclass
class IndexPlan:
    """The index to build and why."""

    kind: str
    factory: str
    nlist: int | None
    bytes_per_vector: float
    estimated_bytes: int
    reason: str


def default_max_memory() -> int:
    """Half the machine's physical memory, in bytes."""
    import psutil

    return int(psutil.virtual_memory().total // 2)


def choose_nlist(n: int) -> int:
    """≈ 4·√n inverted lists, a power of two in [16, 65536], with ≥ 39 vectors per list to train on."""
    target = 4 * math.sqrt(max(n, 1))
    nlist = 2 ** max(4, min(16, round(math.log2(target))))
    while nlist > 16 and n < 39 * nlist:
        nlist //= 2
    return nlist


def _pq_m(d: int, divisor: int) -> int | None:
    m = d // divisor
    return m if m >= 1 and d % m == 0 else None


def plan_index(n: int, d: int, *, kind: str = "auto", max_memory: int | None = None,
               exact_below: int = DEFAULT_EXACT_BELOW) -> IndexPlan:
    """Pick index type and parameters from collection size and the memory budget (see module doc)."""
    if kind not in KINDS:
        raise IndexBuildError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    budget = default_max_memory() if max_memory is None else int(max_memory)
    nlist = choose_nlist(n)
    candidates: dict[str, tuple[str, float]] = {
        "flat": ("Flat", 4.0 * d),
        "hnsw": (f"HNSW{HNSW_M},Flat", 4.0 * d + 2 * HNSW_M * 4 * 1.05 + 16),
        "ivf-flat": (f"IVF{nlist},Flat", 4.0 * d + 8),
        "ivf-sq8": (f"IVF{nlist},SQ8", d + 8.0),
    }
    for divisor in (4, 8, 16, 32):
        m = _pq_m(d, divisor)
        if m is not None and f"ivf-pq{m}" not in candidates:
            candidates[f"ivf-pq{m}"] = (f"IVF{nlist},PQ{m}", m + 8.0)

    def plan(name: str, reason: str) -> IndexPlan:
        factory, per = candidates[name]
        overhead = 4 * d * nlist if name.startswith("ivf") else 0
        return IndexPlan(kind="ivf-pq" if name.startswith("ivf-pq") else name, factory=factory,
                         nlist=nlist if name.startswith("ivf") else None, bytes_per_vector=per,
                         estimated_bytes=int(per * n + overhead), reason=reason)

    if kind == "flat" or (kind == "auto" and n < exact_below):
        return plan("flat", "exact search" + (f": {n:,} vectors < {exact_below:,}" if kind == "auto" else ""))
    if kind == "hnsw":
        return plan("hnsw", "requested")
    if kind == "ivf-pq":
        pq = [name for name in candidates if name.startswith("ivf-pq")]
        fitting = [name for name in pq if plan(name, "").estimated_bytes <= budget]
        return plan(fitting[0] if fitting else pq[-1], "requested; largest code fitting the budget")
    if kind != "auto":
        return plan(kind, "requested")
    for name in [c for c in candidates if c.startswith("ivf")]:
        candidate = plan(name, "")
        if candidate.estimated_bytes <= budget:
            return plan(name, f"{n:,} vectors: the most accurate IVF encoding within the "
                              f"{budget / 2**30:.1f} GiB budget ({candidate.estimated_bytes / 2**30:.2f} GiB)")
    smallest = plan(list(candidates)[-1], "")
    raise IndexBuildError(f"no index fits max_memory={budget / 2**30:.2f} GiB for {n:,}×{d} vectors; the smallest "
                      f"({smallest.factory}) needs {smallest.estimated_bytes / 2**30:.2f} GiB — raise --max-memory")


# -- recall ------------------------------------------------------------------------------------------

def exact_neighbours(source: VectorSource, queries: np.ndarray, k: int,
                     exclude: np.ndarray | None = None) -> np.ndarray:
    """Exact top-``k`` ids by inner product, streaming the collection block by block.

    ``exclude[i]`` (optional) is an id never returned for query ``i`` — the query itself.
    """
    nq = len(queries)
    best_scores = np.full((nq, k), -np.inf, dtype=np.float32)
    best_ids = np.full((nq, k), -1, dtype=np.int64)
    for start, block in source.blocks():
        sims = queries @ block.T
        if exclude is not None:
            inside = (exclude >= start) & (exclude < start + len(block))
            sims[np.nonzero(inside)[0], exclude[inside] - start] = -np.inf
        take = min(k, sims.shape[1])
        part = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        scores = np.concatenate([best_scores, np.take_along_axis(sims, part, axis=1)], axis=1)
        ids = np.concatenate([best_ids, part + start], axis=1)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, top, axis=1), np.take_along_axis(ids, top, axis=1)
    return best_ids


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean share of the true top-``k`` ids found in the approximate top-``k`` (−1 = padding)."""
    hits = 0
    total = 0
    for f, t in zip(found[:, :k], truth[:, :k], strict=True):
        t = t[t >= 0]
        hits += len(np.intersect1d(f[f >= 0], t))
        total += len(t)
    return hits / total if total else 1.0


def _drop_self(ids: np.ndarray, self_ids: np.ndarray, k: int) -> np.ndarray:
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for i, (row, own) in enumerate(zip(ids, self_ids, strict=True)):
        kept = row[row != own][:k]
        out[i, :len(kept)] = kept
    return out


# -- the index ----------------------------------------------------------------------------------------

@dataclass
class IndexInfo:
    """What ``index.json`` records."""

    kind: str
    factory: str
    count: int
    dim: int
    metric: str = "inner_product"
    nlist: int | None = None
    search_params: dict[str, int] = field(default_factory=dict)
    recall_at_10: float | None = None
    recall_sample: int = 0
    recall_target: float | None = None
    recall_queries: str = "collection"
    tuning: list[dict[str, float]] = field(default_factory=list)
    build_seconds: float = 0.0
    estimated_bytes: int = 0
    index_bytes: int = 0
    reason: str = ""
    embeddings: str | None = None
    embeddings_kind: str | None = None
    model: str | None = None
    weights_sha256: str | None = None


def _set_param(index: Any, name: str, value: int) -> None:
    import faiss

    faiss.ParameterSpace().set_index_parameter(index, name, value)


def _knob(info_kind: str) -> tuple[str | None, tuple[int, ...]]:
    if info_kind.startswith("ivf"):
        return "nprobe", NPROBE_STEPS
    if info_kind == "hnsw":
        return "efSearch", EF_STEPS
    return None, ()


def tune(index: Any, kind: str, source: VectorSource, *, nlist: int | None, sample: int, k: int,
         target: float, seed: int = 0, queries: VectorSource | None = None,
         ) -> tuple[dict[str, int], float | None, list[dict[str, float]], int]:
    """Smallest search setting reaching ``target`` recall@k on a sample; (params, recall, curve, sample size).

    Queries are sampled collection vectors (each excluding itself), or samples of ``queries`` —
    e.g. embedded captions, because text queries sit elsewhere in the space than the images they
    find (the modality gap) and may need a wider search.
    """
    n = source.count
    pool = queries.count if queries is not None else max(0, n - 1)
    size = min(sample, pool)
    if size == 0:
        return {}, None, [], 0
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(queries.count if queries is not None else n, size=size, replace=False))
    if queries is not None:
        if queries.dim != source.dim:
            raise IndexBuildError(f"tuning queries have {queries.dim} dimensions, the collection {source.dim}")
        query_vectors = queries.take(picked)
        ids = np.full(size, -1, dtype=np.int64)  # nothing to exclude
    else:
        query_vectors = source.take(picked)
        ids = picked
    truth = exact_neighbours(source, query_vectors, k, exclude=ids)
    knob, steps = _knob(kind)
    if knob is None:
        _, found = index.search(query_vectors, k + 1)
        return {}, recall_at_k(_drop_self(found, ids, k), truth, k), [], size
    limit = nlist if knob == "nprobe" else n
    curve: list[dict[str, float]] = []
    chosen = (1, 0.0)
    for value in [s for s in steps if s <= max(limit or 1, 1)] or [1]:
        _set_param(index, knob, value)
        _, found = index.search(query_vectors, k + 1)
        recall = recall_at_k(_drop_self(found, ids, k), truth, k)
        curve.append({knob: value, "recall_at_10": round(recall, 4)})
        plateau = len(curve) >= 3 and recall - curve[-3]["recall_at_10"] < 0.002
        if recall > chosen[1] + 1e-9 or not curve[:-1]:
            chosen = (value, recall)
        if recall >= target or plateau:  # a quantised code's ceiling: probing more only costs time
            break
    _set_param(index, knob, chosen[0])
    return {knob: chosen[0]}, chosen[1], curve, size


def build_index(
    data: Any,
    out: str | Path,
    *,
    kind: str = "auto",
    max_memory: int | None = None,
    exact_below: int = DEFAULT_EXACT_BELOW,
    target_recall: float = 0.95,
    recall_sample: int = 1000,
    k: int = 10,
    train_size: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    tune_queries: Any = None,
) -> IndexInfo:
    """Build, tune and save an index from an embeddings folder (path or EmbeddingSet) or a float32 array.

    ``tune_queries`` (embeddings folder, EmbeddingSet or array) are typical queries to tune recall
    on, e.g. captions embedded with ``biomedclip embed --text``; default: collection vectors.

    The embeddings folder's ``metadata.parquet`` is copied beside the index so search results carry
    key, caption and source without the embeddings folder.
    """
    import faiss

    from biomedclip.search.store import METADATA, EmbeddingSet

    out = Path(out)
    if (out / INDEX_FILE).exists() and not overwrite:
        raise IndexBuildError(f"{out} already holds an index; pass --overwrite to replace it")
    emb = EmbeddingSet(data) if isinstance(data, str | Path) else data
    source = VectorSource(emb)
    n = source.count
    if n == 0:  # checked before .dim: a folder whose every item failed records no dimension
        failed = getattr(emb, "info", {}).get("failed")
        where = f": all {failed:,} items of {emb.path} failed to embed (see its errors.jsonl)" if failed else ""
        raise IndexBuildError(f"no vectors to index{where}")
    d = source.dim
    plan = plan_index(n, d, kind=kind, max_memory=max_memory, exact_below=exact_below)
    say = progress or (lambda stage: None)
    started = time.perf_counter()
    index = faiss.index_factory(d, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if hasattr(index, "do_polysemous_training"):  # only pays off with Hamming filtering, which we do not use;
        index.do_polysemous_training = False  # it makes PQ training ~100× slower
    if not index.is_trained:
        say("train")
        size = min(n, train_size or max(40 * (plan.nlist or 1), 10_000))  # faiss asks ≥ 39 per list
        rng = np.random.default_rng(seed)
        index.train(source.take(np.sort(rng.choice(n, size=size, replace=False))))
    say("add")
    for _, block in source.blocks():
        index.add(block)
    say("tune")
    if isinstance(tune_queries, str | Path):
        tune_queries = EmbeddingSet(tune_queries)
    queries = VectorSource(tune_queries) if tune_queries is not None else None
    params, recall, curve, sample = tune(index, plan.kind, source, nlist=plan.nlist, sample=recall_sample, k=k,
                                         target=target_recall, seed=seed, queries=queries)
    build_seconds = time.perf_counter() - started
    say("save")
    out.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(out / INDEX_FILE))
    info = IndexInfo(kind=plan.kind, factory=plan.factory, count=n, dim=d, nlist=plan.nlist, search_params=params,
                     recall_at_10=None if recall is None else round(recall, 4), recall_sample=sample,
                     recall_target=target_recall, tuning=curve,
                     recall_queries="collection" if tune_queries is None else "given",
                     build_seconds=round(build_seconds, 3),
                     estimated_bytes=plan.estimated_bytes, index_bytes=(out / INDEX_FILE).stat().st_size,
                     reason=plan.reason)
    if isinstance(emb, EmbeddingSet):
        shutil.copyfile(emb.path / METADATA, out / INDEX_METADATA)
        info.embeddings, info.embeddings_kind, info.model = str(emb.path.resolve()), emb.kind, emb.model
        info.weights_sha256 = emb.weights_sha256
    (out / INDEX_INFO).write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
    return info


class VectorIndex:
    """A saved index ready to query: ``search(queries, k) -> (scores, ids)``."""

    def __init__(self, path: str | Path) -> None:
        import faiss

        self.path = Path(path)
        if not (self.path / INDEX_FILE).is_file() or not (self.path / INDEX_INFO).is_file():
            raise IndexBuildError(f"{self.path} is not an index folder ({INDEX_FILE} + {INDEX_INFO}); "
                              "build one with `biomedclip index EMB --out INDEX`")
        self.info = IndexInfo(**json.loads((self.path / INDEX_INFO).read_text(encoding="utf-8")))
        self.index = faiss.read_index(str(self.path / INDEX_FILE))
        for name, value in self.info.search_params.items():
            _set_param(self.index, name, value)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores [nq, k], ids [nq, k]) for unit-norm float32 queries; missing slots have id −1."""
        import faiss

        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32).copy()
        if q.shape[1] != self.dim:
            raise IndexBuildError(f"query has {q.shape[1]} dimensions, the index {self.dim}: use the model that "
                              f"made the embeddings ({self.info.model})")
        faiss.normalize_L2(q)
        return self.index.search(q, min(k, self.count))
