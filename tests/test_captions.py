"""`biomedclip data captions`: the caption dump agrees with the full parser, article by article."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from biomedclip.data.captions import CAPTIONS_FILE, CaptionsConfig, CaptionsError, dump_captions
from biomedclip.data.extract import article_id_for
from biomedclip.data.jats import JatsError, parse_article
from biomedclip.data.records import make_key
from biomedclip.data.sources import discover_all, open_article
from biomedclip.synth import synthesize


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("captions-corpus")
    synthesize(root, 60, seed=21, workers=1, broken_fraction=0.1, image_size=64)
    return root


def _sources(corpus: Path, realdata: Path) -> list[str]:
    sources = [str(corpus / "folders"), str(corpus / "packages")]
    if (realdata / "jats").exists():
        sources.append(str(realdata / "jats"))
    return sources


def _expected(sources: list[str]) -> tuple[dict[str, dict], int]:
    """Rows the full parser gives (every field), and how many articles fail to parse."""
    rows, failed = {}, 0
    for ref in discover_all(sources):
        bundle = open_article(ref)
        try:
            article = parse_article(bundle.xml)
        except JatsError:
            failed += 1
            continue
        for fig in article.figures:
            rows[make_key(article_id_for(article, ref), fig.fig_id)] = {
                "pmcid": article.pmcid, "pmid": article.pmid, "doi": article.doi, "fig_id": fig.fig_id,
                "label": fig.label, "caption_title": fig.title, "caption": fig.caption, "graphics": fig.graphics,
                "source": ref.uri, "article_title": article.title, "journal": article.journal, "year": article.year,
                "article_type": article.article_type, "license": article.license,
                "license_raw": article.license_raw, "citing_sentences": fig.citing_sentences,
            }
    return rows, failed


@pytest.mark.parametrize("workers", [1, 2])
def test_default_dump_matches_full_parse(corpus: Path, realdata: Path, tmp_path: Path, workers: int) -> None:
    sources = _sources(corpus, realdata)
    expected, failed = _expected(sources)
    stats = dump_captions(CaptionsConfig(sources=sources, out=tmp_path, workers=workers, batch_size=7))
    table = pq.read_table(tmp_path / CAPTIONS_FILE)
    assert table.schema.names == ["key", "pmcid", "pmid", "doi", "fig_id", "label", "caption_title", "caption",
                                  "graphics", "source"]
    got = {row.pop("key"): row for row in table.to_pylist()}
    assert table.num_rows == len(got) == len(expected) == stats["figures"]["found"]  # unique keys, none lost
    for key, row in got.items():
        assert row == {k: expected[key][k] for k in row}, key
    assert list(got) == list(expected)  # discovery order, whatever the worker count
    assert stats["articles"]["failed"] == failed > 0  # the corpus's malformed articles
    assert stats["errors"]["malformed_xml"] == failed
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == stats["error_count"] and all(e["source"] and e["detail"] for e in errors)
    assert stats["figures"]["with_caption"] == sum(1 for row in got.values() if row["caption"])
    assert stats["figures"]["with_caption"] < stats["figures"]["found"]  # "no_caption" figures are kept
    assert not list(tmp_path.glob("*.partial"))


def test_metadata_and_citing_sentences_columns(corpus: Path, realdata: Path, tmp_path: Path) -> None:
    sources = _sources(corpus, realdata)
    expected, _ = _expected(sources)
    dump_captions(CaptionsConfig(sources=sources, out=tmp_path, metadata=True, citing_sentences=True, workers=1))
    rows = pq.read_table(tmp_path / CAPTIONS_FILE).to_pylist()
    assert {k for k in rows[0]} == {"key", *next(iter(expected.values()))}
    assert all(row == {"key": row["key"], **expected[row["key"]]} for row in rows)
    assert sum(bool(row["citing_sentences"]) for row in rows) > len(rows) / 2
    assert {row["license"] for row in rows} >= {"cc-by", "cc0"}


def test_refuses_to_replace_without_overwrite(corpus: Path, tmp_path: Path) -> None:
    config = CaptionsConfig(sources=[str(corpus / "folders")], out=tmp_path, workers=1)
    dump_captions(config)
    before = (tmp_path / CAPTIONS_FILE).read_bytes()
    with pytest.raises(CaptionsError, match="--overwrite"):
        dump_captions(config)
    assert (tmp_path / CAPTIONS_FILE).read_bytes() == before
    config.overwrite = True
    config.metadata = True
    dump_captions(config)
    assert "license" in pq.read_schema(tmp_path / CAPTIONS_FILE).names


def test_cli(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "biomedclip.cli", "data", "captions", str(corpus / "packages"),
               "--out", str(out), "--workers", "1", "--citing-sentences"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert f"{stats['figures']['found']:,} figures" in done.stdout
    assert "citing_sentences" in stats["columns"] and "license" not in stats["columns"]
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_missing_source_leaves_no_partial_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "biomedclip.cli", "data", "captions", str(tmp_path / "nowhere"),
                           "--out", str(out), "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "nowhere" in done.stderr
    assert not list(out.glob("*.parquet*"))


def test_dump_is_a_text_input_of_embed(corpus: Path, tmp_path: Path) -> None:
    from biomedclip.search.items import discover_texts

    dump_captions(CaptionsConfig(sources=[str(corpus / "folders")], out=tmp_path, workers=1))
    rows = pq.read_table(tmp_path / CAPTIONS_FILE).to_pylist()
    items = discover_texts([tmp_path / CAPTIONS_FILE])
    assert [(i.key, i.caption, i.pmcid) for i in items] == [
        (r["key"], r["caption"], r["pmcid"]) for r in rows if r["caption"]
    ]
    assert len(items) < len(rows)  # figures without a caption are not embedded
