"""Search with the trained tiny model: text and image queries find the right modality; CLI and JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from search_assets import bundle, image_files, indexed, loaded_model, modality_labels
from typer.testing import CliRunner

from biomedclip.cli import app
from biomedclip.models.factory import load_model
from biomedclip.search.embed import embed_images
from biomedclip.search.index import build_index
from biomedclip.search.query import Searcher
from biomedclip.search.store import open_embeddings

QUERIES = ("chest X-ray", "histopathology", "fluorescence microscopy", "fundus photograph")
"""Modalities the tiny model's text tower has clearly learned (others it confuses after 320 steps)."""


# The first test to ask for the session's trained model builds it (corpus, shards, training), which takes
# longer than pytest's default per-test timeout on a 2-core machine.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def assets(learn_data, trained_run, tmp_path_factory):
    return indexed(learn_data, trained_run, tmp_path_factory.mktemp("search"))


@pytest.fixture(scope="module")
def searcher(assets, trained_run):
    return Searcher(assets["index"], loaded_model(trained_run))


def _precision_at_10(searcher: Searcher, labels: dict, query: str) -> float:
    hits = searcher.search_text(query, 10)
    return sum(labels[h.key]["modality"] == query for h in hits) / 10


def test_text_queries_find_their_modality(searcher, learn_data, trained_run, tmp_path):
    labels = modality_labels(learn_data)
    precision = {q: _precision_at_10(searcher, labels, q) for q in QUERIES}
    assert min(precision.values()) >= 0.5, precision
    assert np.mean(list(precision.values())) >= 0.75, precision
    hits = searcher.search_text("chest X-ray", 10)
    assert [h.rank for h in hits] == list(range(1, 11))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    top = hits[0]
    assert top.caption and top.pmcid and top.split == "test" and top.meta["pmcid"] == top.pmcid
    assert top.offset >= 0 and top.item().source == top.source
    # the same pipeline with the untrained model finds the modality no better than chance
    init = load_model(f"local-dir:{trained_run[0] / 'init_bundle'}")
    embed_images([learn_data["shards"]], init, tmp_path / "emb", split=["test"])
    build_index(tmp_path / "emb", tmp_path / "idx")
    untrained = {q: _precision_at_10(Searcher(tmp_path / "idx", init), labels, q) for q in QUERIES}
    assert np.mean(list(untrained.values())) < np.mean(list(precision.values())) - 0.4, untrained


def test_image_queries_find_the_same_modality(searcher, assets, learn_data):
    labels = modality_labels(learn_data)
    emb = open_embeddings(assets["emb"])
    rows = emb.metadata().to_pylist()
    vectors = emb.vectors()
    clean = [i for i, r in enumerate(rows) if not labels[r["key"]]["compound"]]
    results = searcher.search_vectors(vectors[clean], 6)
    agree = []
    for i, hits in zip(clean, results, strict=True):
        assert hits[0].id == i and hits[0].score == pytest.approx(1.0, abs=1e-4)  # itself first
        agree += [labels[h.key]["modality"] == labels[rows[i]["key"]]["modality"] for h in hits[1:]]
    assert np.mean(agree) >= 0.8


def test_image_file_query_including_dicom(searcher, learn_data, assets, realdata, tmp_path):
    files = image_files(learn_data, tmp_path)
    query = files["fundus photograph"][0]
    hits = searcher.search_image(query, 5)
    labels = modality_labels(learn_data)
    assert hits[0].key == query.stem and hits[0].score > 0.999
    assert sum(labels[h.key]["modality"] == "fundus photograph" for h in hits) >= 4
    scan = searcher.search_image(realdata / "images" / "MR_small.dcm", 3)
    assert len(scan) == 3 and all(-1 <= h.score <= 1 for h in scan)


def test_search_cli_table_and_json(assets, trained_run, learn_data, realdata):
    runner = CliRunner()
    table = runner.invoke(app, ["search", str(assets["index"]), "fundus photograph", "-k", "3"])
    assert table.exit_code == 0, table.output
    assert "top 3" in table.output and "PMC" in table.output
    result = runner.invoke(app, ["search", str(assets["index"]), "fundus photograph", "-k", "4", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["query"] == "fundus photograph" and len(payload["hits"]) == 4
    labels = modality_labels(learn_data)
    assert sum(labels[h["key"]]["modality"] == "fundus photograph" for h in payload["hits"]) >= 3
    assert {"score", "caption", "source", "pmcid", "key", "rank", "offset", "size"} <= set(payload["hits"][0])
    assert payload["mode"] == "text" and "image" not in payload  # no null for the mode not asked
    dicom = runner.invoke(app, ["search", str(assets["index"]), "--image", str(realdata / "images" / "CT_small.dcm"),
                                "--window", "40,400", "--json", "--model", bundle(trained_run)])
    assert dicom.exit_code == 0, dicom.output
    assert len(json.loads(dicom.output)["hits"]) == 10
    both = runner.invoke(app, ["search", str(assets["index"]), "x", "--image", "y.png"])
    assert both.exit_code == 2 and "either" in both.output
    nothing = runner.invoke(app, ["search", str(learn_data["root"]), "x"])
    assert nothing.exit_code == 2 and "not an index folder" in " ".join(nothing.output.split())
