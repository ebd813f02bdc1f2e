"""FAISS index: choice by size and memory budget, tuned recall checked independently, save/load, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from biomedclip.cli import app
from biomedclip.search.index import (
    IndexBuildError,
    VectorIndex,
    build_index,
    choose_nlist,
    exact_neighbours,
    plan_index,
    recall_at_k,
)
from biomedclip.search.items import Item
from biomedclip.search.store import EmbeddingWriter, RunSpec, open_embeddings


def clustered(n: int, d: int, seed: int = 0, clusters: int = 200, spread: float = 0.8) -> np.ndarray:
    """Unit vectors around random centres: the structure real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :k]


def fake_embeddings(path, vectors: np.ndarray, chunk_size: int = 300) -> None:
    """An embeddings folder holding ``vectors`` (no model needed)."""
    items = [Item(key=f"k{i}", source=f"/data/{i}.png", caption=f"caption {i}") for i in range(len(vectors))]
    writer = EmbeddingWriter(path, RunSpec(kind="image", model="test-model", chunk_size=chunk_size), lambda: items)
    for c in writer.pending_chunks():
        rows = list(writer.chunk_range(c))
        writer.write_chunk(c, vectors[rows], rows, {})
    writer.finish({"precision": "fp32"})


def test_plan_follows_size_and_memory_budget():
    assert plan_index(10_000, 512).kind == "flat"
    gib = 2**30
    assert plan_index(1_000_000, 512, max_memory=8 * gib).factory == "IVF4096,Flat"
    assert plan_index(1_000_000, 512, max_memory=1 * gib).factory == "IVF4096,SQ8"
    assert plan_index(1_000_000, 512, max_memory=200 * 2**20).factory == "IVF4096,PQ128"
    assert plan_index(1_000_000, 512, max_memory=100 * 2**20).factory == "IVF4096,PQ64"
    assert plan_index(15_000_000, 512, max_memory=16 * gib).factory == "IVF16384,SQ8"
    for budget in (8 * gib, gib, 100 * 2**20):
        assert plan_index(1_000_000, 512, max_memory=budget).estimated_bytes <= budget
    with pytest.raises(IndexBuildError, match="raise --max-memory"):
        plan_index(1_000_000, 512, max_memory=10 * 2**20)
    assert plan_index(100, 64, kind="hnsw").factory == "HNSW32,Flat"
    with pytest.raises(IndexBuildError, match="unknown index kind"):
        plan_index(100, 64, kind="lsh")
    assert choose_nlist(1_000_000) == 4096 and choose_nlist(60_000) == 1024
    assert choose_nlist(1_000) * 39 <= 1_000


def test_exact_neighbours_and_recall_by_hand():
    base = clustered(3_000, 32, seed=1)
    queries = clustered(20, 32, seed=2)
    from biomedclip.search.index import VectorSource

    source = VectorSource(base, block=700)  # several blocks, merged
    np.testing.assert_array_equal(exact_neighbours(source, queries, 10), brute_force(base, queries, 10))
    own = np.arange(20)
    found = exact_neighbours(source, base[:20], 5, exclude=own)
    assert not (found == own[:, None]).any()
    np.testing.assert_array_equal(found, brute_force(base, base[:20], 6)[:, 1:])
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert recall_at_k(np.array([[1, 2, 9, 9], [8, 7, 6, 5]]), truth, k=4) == pytest.approx(6 / 8)
    assert recall_at_k(np.array([[-1, -1, -1, -1], [5, -1, -1, -1]]), truth, k=4) == pytest.approx(1 / 8)


def test_ivf_reaches_target_recall_on_fresh_queries(tmp_path):
    everything = clustered(60_300, 64)
    base, queries = everything[:60_000], everything[60_000:]
    fake_embeddings(tmp_path / "emb", base, chunk_size=7_000)
    info = build_index(tmp_path / "emb", tmp_path / "idx", recall_sample=400)
    assert info.kind == "ivf-flat" and info.factory == "IVF1024,Flat"
    assert info.recall_at_10 >= 0.95 and info.recall_sample == 400
    nprobe = info.search_params["nprobe"]
    assert 1 < nprobe < 1024
    assert info.tuning[-1]["nprobe"] == nprobe and all(t["recall_at_10"] < 0.95 for t in info.tuning[:-1])
    # independent check: queries the tuning never saw, against numpy brute force
    index = VectorIndex(tmp_path / "idx")
    _, ids = index.search(queries, 10)
    assert recall_at_k(ids, brute_force(base, queries, 10)) >= 0.9
    # queries from elsewhere in the space (like text queries against images) need a wider search:
    # tuned on such queries, the index reaches the target on new ones from there too
    elsewhere = clustered(600, 64, seed=99)
    assert recall_at_k(index.search(elsewhere[300:], 10)[1], brute_force(base, elsewhere[300:], 10)) < 0.9
    tuned = build_index(tmp_path / "emb", tmp_path / "idx_q", recall_sample=300, tune_queries=elsewhere[:300])
    assert tuned.recall_queries == "given" and tuned.search_params["nprobe"] > nprobe
    _, ids = VectorIndex(tmp_path / "idx_q").search(elsewhere[300:], 10)
    assert recall_at_k(ids, brute_force(base, elsewhere[300:], 10)) >= 0.9
    saved = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert saved["model"] == "test-model" and saved["count"] == 60_000
    assert (tmp_path / "idx" / "metadata.parquet").is_file()
    with pytest.raises(IndexBuildError, match="already holds an index"):
        build_index(tmp_path / "emb", tmp_path / "idx")


def test_flat_exact_quantised_and_hnsw(tmp_path):
    base = clustered(4_000, 32, seed=3)
    queries = clustered(50, 32, seed=4)
    truth = brute_force(base, queries, 10)
    flat = build_index(base, tmp_path / "flat", recall_sample=100)
    assert flat.kind == "flat" and flat.recall_at_10 == 1.0
    scores, ids = VectorIndex(tmp_path / "flat").search(queries, 10)
    np.testing.assert_array_equal(ids, truth)
    np.testing.assert_allclose(scores[:, 0], (queries @ base.T).max(axis=1), atol=1e-5)
    sq8 = build_index(base, tmp_path / "sq8", kind="ivf-sq8", recall_sample=100)
    assert sq8.factory.endswith("SQ8") and sq8.recall_at_10 >= 0.9
    hnsw = build_index(base, tmp_path / "hnsw", kind="hnsw", recall_sample=100)
    assert "efSearch" in hnsw.search_params and hnsw.recall_at_10 >= 0.95
    # a tiny budget forces product quantisation; its ceiling is reported, not hidden
    pq = build_index(base, tmp_path / "pq", kind="ivf-pq", max_memory=200_000, recall_sample=100)
    assert pq.factory.endswith("PQ8") and pq.estimated_bytes <= 200_000 and pq.recall_at_10 < 0.95
    with pytest.raises(IndexBuildError, match="dimensions"):
        VectorIndex(tmp_path / "flat").search(np.ones((1, 16), np.float32))


def test_index_and_search_cli_without_a_model(tmp_path):
    base = clustered(2_000, 16, seed=5)
    fake_embeddings(tmp_path / "emb", base)
    runner = CliRunner()
    result = runner.invoke(app, ["index", str(tmp_path / "emb"), "--out", str(tmp_path / "idx"), "--kind", "ivf-pq",
                                 "--max-memory", "40KB", "--recall-sample", "200"])
    assert result.exit_code == 0, result.output
    assert "recall@10" in result.output and "below 0.95" in " ".join(result.output.split())
    bad = runner.invoke(app, ["index", str(tmp_path / "emb"), "--out", str(tmp_path / "idx2"), "--max-memory", "lots"])
    assert bad.exit_code == 2 and "not a size" in bad.output
    missing = runner.invoke(app, ["index", str(tmp_path), "--out", str(tmp_path / "idx3")])
    assert missing.exit_code == 2 and "not an embeddings folder" in " ".join(missing.output.split())
    emb = open_embeddings(tmp_path / "emb")
    assert emb.count == 2_000 and emb.metadata().column("caption")[7].as_py() == "caption 7"
