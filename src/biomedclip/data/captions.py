"""Caption dump: every figure's caption from any mix of sources, without touching an image.

``biomedclip data build`` decodes, filters and deduplicates images; many uses of PMC captions need
none of that — a caption corpus to train the tokenizer on, caption statistics before a build,
text-only baselines, or what ``pubmed_parser.parse_pubmed_caption`` users do today. This reads the
same sources (folders, OA packages, fsspec URLs), runs the same JATS parser with the same process
pool or Ray, and writes one Parquet row per ``<fig>``. By default only the figure and the
article identifiers are read, which skips the two costliest steps after the parse (article
metadata and citing sentences); ``metadata=True`` and ``citing_sentences=True`` add them.

Output folder::

    OUT/captions.parquet   one row per figure, in discovery order (written to a .partial file and
                           renamed when complete, so a killed run never leaves a half file behind)
    OUT/errors.jsonl       every article that could not be read or parsed, with the reason
    OUT/stats.json         articles seen/failed, figures found/with caption, errors by reason
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from biomedclip import __version__
from biomedclip.data.executors import ExecutorName, batched, default_workers, map_ordered
from biomedclip.data.extract import article_id_for, read_article
from biomedclip.data.records import ArticleRef, ItemError, make_key
from biomedclip.data.sources import discover_all
from biomedclip.errors import BiomedclipError

CAPTIONS_FILE = "captions.parquet"
_ROW_GROUP = 50_000

_BASE_COLUMNS = [
    ("key", pa.string()), ("pmcid", pa.string()), ("pmid", pa.string()), ("doi", pa.string()),
    ("fig_id", pa.string()), ("label", pa.string()), ("caption_title", pa.string()), ("caption", pa.string()),
    ("graphics", pa.list_(pa.string())), ("source", pa.string()),
]
_METADATA_COLUMNS = [
    ("article_title", pa.string()), ("journal", pa.string()), ("year", pa.int32()),
    ("article_type", pa.string()), ("license", pa.string()), ("license_raw", pa.string()),
]
_CITING_COLUMNS = [("citing_sentences", pa.list_(pa.string()))]


class CaptionsError(BiomedclipError, RuntimeError):
    """A problem with the run as a whole (output already there)."""


@dataclass
class CaptionsConfig:
    """What to read, what to extract, where to write."""

    sources: list[str]
    out: Path
    metadata: bool = False
    citing_sentences: bool = False
    executor: ExecutorName = "local"
    workers: int = field(default_factory=default_workers)
    batch_size: int = 64
    storage_options: dict[str, Any] | None = None
    ray_address: str | None = None
    overwrite: bool = False

    def schema(self) -> pa.Schema:
        columns = list(_BASE_COLUMNS)
        if self.metadata:
            columns += _METADATA_COLUMNS
        if self.citing_sentences:
            columns += _CITING_COLUMNS
        return pa.schema(columns)


@dataclass(frozen=True)
class _Task:
    """One batch of articles plus the flags, small and picklable for any executor."""

    refs: list[ArticleRef]
    metadata: bool
    citing_sentences: bool
    storage_options: dict[str, Any] | None


@dataclass
class _ArticleCaptions:
    rows: list[dict[str, Any]]
    errors: list[ItemError]
    parsed: bool


def _captions_of(task: _Task) -> list[_ArticleCaptions]:
    """Executor entry point: read and parse each article of the batch; never raises for bad input."""
    return [_one_article(ref, task) for ref in task.refs]


def _one_article(ref: ArticleRef, task: _Task) -> _ArticleCaptions:
    _, article, errors = read_article(ref, task.storage_options, metadata=task.metadata,
                                      citing_sentences=task.citing_sentences)
    if article is None:
        return _ArticleCaptions([], errors, parsed=False)
    article_id = article_id_for(article, ref)
    rows = []
    for figure in article.figures:
        row: dict[str, Any] = {
            "key": make_key(article_id, figure.fig_id), "pmcid": article.pmcid, "pmid": article.pmid,
            "doi": article.doi, "fig_id": figure.fig_id, "label": figure.label, "caption_title": figure.title,
            "caption": figure.caption, "graphics": figure.graphics, "source": ref.uri,
        }
        if task.metadata:
            row.update(article_title=article.title, journal=article.journal, year=article.year,
                       article_type=article.article_type, license=article.license,
                       license_raw=article.license_raw)
        if task.citing_sentences:
            row["citing_sentences"] = figure.citing_sentences
        rows.append(row)
    return _ArticleCaptions(rows, errors, parsed=True)


@dataclass
class CaptionsProgress:
    """What a progress display needs after each article."""

    articles: int
    figures: int
    errors: int


def dump_captions(
    config: CaptionsConfig, *, progress: Callable[[CaptionsProgress], None] | None = None
) -> dict[str, Any]:
    """Write OUT/captions.parquet, errors.jsonl and stats.json; return the stats."""
    out = config.out
    target = out / CAPTIONS_FILE
    if target.exists() and not config.overwrite:
        raise CaptionsError(f"{target} already exists: pass --overwrite to replace it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    schema = config.schema()
    buffer: list[dict[str, Any]] = []
    try:
        with pq.ParquetWriter(partial, schema) as writer, (out / "errors.jsonl").open("w") as error_log:
            for result in _results(config):
                counts["articles_seen"] += 1
                counts["articles_failed"] += not result.parsed
                for error in result.errors:
                    errors[error.reason] += 1
                    error_log.write(json.dumps(error.to_dict(), ensure_ascii=False) + "\n")
                counts["figures"] += len(result.rows)
                counts["figures_with_caption"] += sum(1 for row in result.rows if row["caption"])
                buffer.extend(result.rows)
                if len(buffer) >= _ROW_GROUP:
                    writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                    buffer.clear()
                if progress is not None:
                    progress(CaptionsProgress(counts["articles_seen"], counts["figures"], sum(errors.values())))
            if buffer:
                writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
    except BaseException:  # a bad source, Ctrl-C: no partial file left behind
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    stats = {
        "version": __version__,
        "sources": list(config.sources),
        "articles": {"seen": counts["articles_seen"], "failed": counts["articles_failed"]},
        "figures": {"found": counts["figures"], "with_caption": counts["figures_with_caption"]},
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "columns": schema.names,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def _results(config: CaptionsConfig) -> Iterator[_ArticleCaptions]:
    refs = discover_all(config.sources, storage_options=config.storage_options)
    tasks = (
        _Task(batch, config.metadata, config.citing_sentences, config.storage_options)
        for batch in batched(refs, config.batch_size)
    )
    for batch in map_ordered(_captions_of, tasks, executor=config.executor, workers=config.workers,
                             ray_address=config.ray_address):
        yield from batch
