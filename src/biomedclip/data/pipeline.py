"""The data build: sources → (workers) extraction → (writer) dedup, splits, shards, manifest.

Order is the backbone of the design. Articles are discovered in a deterministic order, workers
process batches in parallel, and the single writer consumes results in that same order. So the
build's output is a function of its inputs and settings alone — the same on 1 or 16 workers, with
the local pool or Ray — and a checkpoint is just "the first N articles are fully written" plus
the byte offsets of every open file. ``--resume`` truncates everything back to the last
checkpoint and continues with article N+1, which yields byte-identical output to an
uninterrupted build: nothing lost, nothing duplicated.

Output folder (all files of a build live inside it)::

    OUT/<split>/NNNNN.tar       WebDataset shards (key.jpg, key.txt, key.json)
    OUT/manifest.parquet        one row per kept pair (written at the end)
    OUT/stats.json              counts per reason, per split; error items naming each file
    OUT/errors.jsonl            every per-item error (stats.json keeps the first 10,000)
    OUT/drops.jsonl             every figure a filter or dedup dropped: reason and source
    OUT/_build/state.json       checkpoint (kept after completion to answer --resume)
    OUT/_build/manifest.jsonl   manifest rows while building
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from biomedclip import __version__
from biomedclip.data import pmc_cloud
from biomedclip.data.executors import ExecutorName, batched, default_workers, map_ordered
from biomedclip.data.extract import ArticleResult, ExtractSettings, process_batch
from biomedclip.data.filters import Deduplicator, FilterConfig
from biomedclip.data.pmc_cloud import PmcOptions, PmcPlan, PmcTask
from biomedclip.data.records import ArticleRef
from biomedclip.data.shards import AppendLog, ShardWriter, WriterState, iter_jsonl
from biomedclip.data.sources import discover_all
from biomedclip.data.splits import DEFAULT_SPLITS, assign_split
from biomedclip.errors import BiomedclipError

STATE_VERSION = 1
BUILD_MARKER = ".biomedclip-build"
"""Written first into a new build's folder: ``--overwrite`` deletes only folders that carry it (or a
build state, for folders built before the marker existed), never a folder of someone else's files."""
MAX_ERROR_ITEMS_IN_STATS = 10_000

MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()), ("split", pa.string()), ("shard", pa.string()), ("caption", pa.string()),
    ("pmcid", pa.string()), ("pmid", pa.string()), ("doi", pa.string()), ("article_title", pa.string()),
    ("journal", pa.string()), ("year", pa.int32()), ("article_type", pa.string()),
    ("license", pa.string()), ("license_raw", pa.string()), ("fig_id", pa.string()),
    ("label", pa.string()), ("caption_title", pa.string()), ("citing_sentences", pa.list_(pa.string())),
    ("compound", pa.bool_()), ("source", pa.string()), ("graphic", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()), ("orig_width", pa.int32()), ("orig_height", pa.int32()),
    ("orig_format", pa.string()), ("sha256", pa.string()), ("phash", pa.string()),
    ("license_code", pa.string()), ("pmc_version", pa.string()),  # PMC Cloud: bucket licence code, PMC123.2
])


class BuildError(BiomedclipError, RuntimeError):
    """A problem with the build as a whole (bad output folder, settings changed on resume)."""


@dataclass
class BuildConfig:
    """Settings of one build. Those in :meth:`fingerprint` must not change across a resume."""

    sources: list[str]
    out: Path
    splits: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SPLITS))
    filters: FilterConfig = field(default_factory=FilterConfig)
    max_side: int = 512
    max_pixels: int = 100_000_000
    jpeg_quality: int = 90
    shard_size: int = 1000
    executor: ExecutorName = "local"
    workers: int = field(default_factory=default_workers)
    batch_size: int = 8
    storage_options: dict[str, Any] | None = None
    ray_address: str | None = None
    checkpoint_seconds: float = 2.0
    pmc: PmcOptions | None = None  # how a PMC Cloud bucket source is read (None: auto-detect, defaults)

    def extract_settings(self) -> ExtractSettings:
        return ExtractSettings(filters=self.filters, max_side=self.max_side, max_pixels=self.max_pixels,
                               jpeg_quality=self.jpeg_quality, storage_options=self.storage_options)

    def fingerprint(self) -> dict[str, Any]:
        """Settings that decide the output bytes (executor and worker count do not)."""
        settings = {
            "sources": list(self.sources),
            "splits": self.splits,
            "filters": asdict(self.filters),
            "max_side": self.max_side,
            "max_pixels": self.max_pixels,
            "jpeg_quality": self.jpeg_quality,
            "shard_size": self.shard_size,
        }
        if self.pmc is not None and (pmc := self.pmc.fingerprint()) != PmcOptions().fingerprint():
            settings["pmc_cloud"] = pmc  # only when set: defaults leave every other build's settings as they were
        return settings


@dataclass
class BuildStats:
    """Running counts; serialisable into the checkpoint and stats.json."""

    articles_seen: int = 0
    articles_failed: int = 0
    articles_without_figures: int = 0
    figures_found: int = 0
    figures_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    split_samples: Counter = field(default_factory=Counter)
    split_articles: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # articles a source left out (retracted, licence …)
    source_counts: Counter = field(default_factory=Counter)  # requests, bytes, retries … of planned sources

    def to_dict(self) -> dict[str, Any]:
        # not dataclasses.asdict: it rebuilds Counters from their items and breaks them
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Counter) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildStats:
        stats = cls()
        for key, value in data.items():
            setattr(stats, key, Counter(value) if isinstance(getattr(stats, key), Counter) else value)
        return stats

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass
class BuildProgress:
    """What a progress display needs after each article."""

    articles: int
    kept: int
    dropped: int
    errors: int


class _BuildFiles:
    """Paths of one build's output folder."""

    def __init__(self, out: Path):
        self.out = out
        self.work = out / "_build"
        self.marker = out / BUILD_MARKER
        self.state = self.work / "state.json"
        self.manifest_log = self.work / "manifest.jsonl"
        self.records_log = self.work / "records.jsonl"
        self.errors_log = out / "errors.jsonl"
        self.drops_log = out / "drops.jsonl"
        self.manifest = out / "manifest.parquet"
        self.stats = out / "stats.json"


def _read_state(files: _BuildFiles) -> dict[str, Any] | None:
    if not files.state.exists():
        return None
    return json.loads(files.state.read_text())


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str))
    os.replace(tmp, path)


def _written_by_build(files: _BuildFiles) -> bool:
    """Whether ``files.out`` is a build's own folder (safe for ``--overwrite`` to delete)."""
    return files.marker.is_file() or files.state.is_file()


def _prepare_out(config: BuildConfig, files: _BuildFiles, resume: bool,
                 overwrite: bool = False) -> dict[str, Any] | None:
    """Validate the output folder (emptying it for ``overwrite``); return the checkpoint to resume from (or None)."""
    if resume and overwrite:
        raise BuildError("pass either --resume (continue the build in --out) or --overwrite (start it again), "
                         "not both")
    if overwrite and files.out.exists() and any(files.out.iterdir()):
        if not _written_by_build(files):
            raise BuildError(f"{files.out} was not written by `biomedclip data build` (no {BUILD_MARKER}), so "
                             "--overwrite will not delete it: choose a new --out")
        shutil.rmtree(files.out)
        return None
    state = _read_state(files)
    if state is None:
        # A build killed before its first checkpoint leaves only its marker and an empty _build folder.
        if files.out.exists() and any(p.name not in ("_build", BUILD_MARKER) for p in files.out.iterdir()):
            ours = " or pass --overwrite to replace it" if _written_by_build(files) else ""
            raise BuildError(
                f"output folder {files.out} is not empty and holds no build to resume: "
                f"choose a new folder or empty this one{ours}"
            )
        return None
    if not resume:
        raise BuildError(f"output folder {files.out} already holds a build: pass --resume to continue "
                         "it, --overwrite to replace it, or choose a new folder")
    if state.get("version") != STATE_VERSION or state.get("fingerprint") != config.fingerprint():
        raise BuildError(
            f"cannot resume {files.out}: its build used other sources or settings "
            f"({files.state}); rerun with the same arguments, pass --overwrite (instead of --resume) to "
            "start a new build there, or choose a new folder"
        )
    return state


def _refs_after(sources: Sequence[str], skip: int, storage_options: dict[str, Any] | None,
                pmc: PmcPlan | None = None) -> Iterator[ArticleRef | PmcTask]:
    """Work items in build order from item ``skip`` on: each walked source's refs (each uri once,
    as :func:`discover_all`), a PMC Cloud source's planned tasks in its place (skipped in SQL)."""
    index = 0
    seen: set[str] = set()
    for source in sources:
        if pmc is not None and source == pmc.source:
            if index + pmc.count > skip:
                yield from pmc.items(max(0, skip - index))
            index += pmc.count
            continue
        for ref in discover_all([source], storage_options=storage_options):
            if ref.uri in seen:
                continue
            seen.add(ref.uri)
            if index >= skip:
                yield ref
            index += 1


def build(
    config: BuildConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[BuildProgress], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a build; return the stats dictionary also written to stats.json.

    ``overwrite`` first deletes what an earlier build left in ``config.out`` (a failed or finished
    one, e.g. after a mistyped source); a folder the build did not write is refused.
    """
    out = Path(config.out)
    files = _BuildFiles(out)
    state = _prepare_out(config, files, resume, overwrite)
    if state is not None and state.get("complete"):
        return json.loads(files.stats.read_text())
    files.work.mkdir(parents=True, exist_ok=True)
    if state is None:
        files.marker.write_text("written by `biomedclip data build`; `--overwrite` may replace this folder\n")
    started = time.monotonic()
    pmc = pmc_cloud.prepare(config, files.work, fresh=state is None)  # PMC Cloud: inventory → frozen plan

    writers = {name: ShardWriter(out, name, max_samples=config.shard_size) for name in config.splits}
    dedup = Deduplicator(config.filters)
    seen_keys: set[str] = set()
    if state is None:
        stats, done, elapsed_before = BuildStats(), 0, 0.0
        manifest = AppendLog(files.manifest_log)
        errors = AppendLog(files.errors_log)
        drops = AppendLog(files.drops_log)
        logs = _Logs(manifest, errors, drops, AppendLog(files.records_log))
        _write_json_atomic(files.state, _state_dict(config, 0, stats, writers, logs, 0.0))
    else:
        stats, done = BuildStats.from_dict(state["stats"]), int(state["articles_done"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
        for name, writer in writers.items():
            writer.resume(WriterState.from_dict(state["writers"].get(name, {})))
        for row in iter_jsonl(files.manifest_log, limit=state["manifest_offset"]):
            seen_keys.add(row["key"])
            dedup.add(row["sha256"], row["phash"])
        manifest = AppendLog(files.manifest_log, offset=state["manifest_offset"])
        errors = AppendLog(files.errors_log, offset=state["errors_offset"])
        drops = AppendLog(files.drops_log, offset=state["drops_offset"])
        logs = _Logs(manifest, errors, drops, AppendLog(files.records_log, offset=state.get("records_offset", 0)))

    settings = config.extract_settings()
    tasks = ((batch, settings) for batch in batched(
        _refs_after(config.sources, done, config.storage_options, pmc), config.batch_size))
    last_checkpoint = time.monotonic()
    try:
        for results in map_ordered(process_batch, tasks, executor=config.executor, workers=config.workers,
                                   ray_address=config.ray_address):
            for result in results:
                _consume(result, config, stats, writers, dedup, seen_keys, logs)
                done += 1
                if progress:
                    progress(BuildProgress(done, stats.figures_kept, sum(stats.dropped.values()),
                                           stats.error_count))
            if time.monotonic() - last_checkpoint >= config.checkpoint_seconds:
                elapsed = elapsed_before + time.monotonic() - started
                _write_json_atomic(files.state, _state_dict(config, done, stats, writers, logs, elapsed))
                last_checkpoint = time.monotonic()
        for writer in writers.values():
            writer.close()
        elapsed = elapsed_before + time.monotonic() - started
        _write_json_atomic(files.state, _state_dict(config, done, stats, writers, logs, elapsed))
        logs.close()
        _write_manifest_parquet(files.manifest_log, files.manifest)
        summary = _stats_summary(config, stats, writers, files, elapsed)
        if pmc is not None:
            pmc.finish(out, files.records_log, files.manifest)
            summary["pmc_cloud"] = pmc.summary(stats.skipped, stats.source_counts)
        _write_json_atomic(files.stats, summary)
        final = _state_dict(config, done, stats, writers, None, elapsed)
        final["complete"] = True
        _write_json_atomic(files.state, final)
        files.manifest_log.unlink(missing_ok=True)
        return summary
    finally:
        logs.close()


@dataclass
class _Logs:
    """The append-only logs of a build; their offsets are part of every checkpoint."""

    manifest: AppendLog
    errors: AppendLog
    drops: AppendLog
    records: AppendLog  # source records (PMC Cloud article state and tombstones), in article order

    def offsets(self) -> dict[str, int]:
        return {"manifest_offset": self.manifest.offset(), "errors_offset": self.errors.offset(),
                "drops_offset": self.drops.offset(), "records_offset": self.records.offset()}

    def close(self) -> None:
        for log in (self.manifest, self.errors, self.drops, self.records):
            log.close()


def _consume(result: ArticleResult, config: BuildConfig, stats: BuildStats, writers: dict[str, ShardWriter],
             dedup: Deduplicator, seen_keys: set[str], logs: _Logs) -> None:
    """Apply build-wide decisions to one article's result, in discovery order."""
    stats.source_counts.update(result.counts)
    for record in result.records:
        logs.records.append(record)
    if result.skipped:  # left out by its source before extraction: not an article of this build
        stats.skipped[result.skipped] += 1
        return
    stats.articles_seen += 1
    stats.figures_found += result.figures_found
    if not result.parsed:
        stats.articles_failed += 1
    elif result.figures_found == 0:
        stats.articles_without_figures += 1
    for reason, source in result.drops:
        stats.dropped[reason] += 1
        logs.drops.append({"reason": reason, "source": source})
    for error in result.errors:
        stats.errors[error.reason] += 1
        logs.errors.append(error.to_dict())
    split = assign_split(result.article_id, config.splits) if result.samples else None
    kept_here = 0
    for sample in result.samples:
        meta = sample.meta
        reason = "duplicate_key" if sample.key in seen_keys else dedup.check(meta["sha256"], meta["phash"])
        if reason:
            stats.dropped[reason] += 1
            logs.drops.append({"reason": reason, "source": f"{meta['source']}#{meta['fig_id']}", "key": sample.key})
            continue
        assert split is not None
        meta["split"] = split
        shard = writers[split].write(sample.key, sample.jpeg, sample.caption, meta)
        seen_keys.add(sample.key)
        dedup.add(meta["sha256"], meta["phash"])
        logs.manifest.append({**meta, "caption": sample.caption, "shard": shard})
        stats.figures_kept += 1
        stats.split_samples[split] += 1
        kept_here += 1
    if kept_here:
        stats.split_articles[split] += 1


def _state_dict(config: BuildConfig, done: int, stats: BuildStats, writers: dict[str, ShardWriter],
                logs: _Logs | None, elapsed: float) -> dict[str, Any]:
    offsets = logs.offsets() if logs else {"manifest_offset": None, "errors_offset": None, "drops_offset": None,
                                            "records_offset": None}
    return {
        "version": STATE_VERSION,
        "fingerprint": config.fingerprint(),
        "articles_done": done,
        "writers": {name: w.state().to_dict() for name, w in writers.items()},
        **offsets,
        "stats": stats.to_dict(),
        "elapsed_s": elapsed,
        "complete": False,
    }


def _write_manifest_parquet(log: Path, target: Path, chunk: int = 50_000) -> None:
    """Stream the JSON-lines manifest into Parquet in bounded chunks."""
    tmp = target.with_suffix(".parquet.tmp")
    names = MANIFEST_SCHEMA.names
    with pq.ParquetWriter(tmp, MANIFEST_SCHEMA) as writer:
        rows: list[dict[str, Any]] = []
        for row in iter_jsonl(log):
            rows.append({name: row.get(name) for name in names})
            if len(rows) >= chunk:
                writer.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA))
                rows = []
        writer.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA))
    os.replace(tmp, target)


def _stats_summary(config: BuildConfig, stats: BuildStats, writers: dict[str, ShardWriter],
                   files: _BuildFiles, elapsed: float) -> dict[str, Any]:
    error_items = list(islice(iter_jsonl(files.errors_log), MAX_ERROR_ITEMS_IN_STATS + 1))
    splits = {}
    for name, writer in writers.items():
        shards = sorted(p.name for p in writer.dir.glob("*.tar")) if writer.dir.exists() else []
        splits[name] = {"samples": stats.split_samples.get(name, 0),
                        "articles": stats.split_articles.get(name, 0), "shards": shards}
    return {
        "biomedclip_version": __version__,
        "sources": list(config.sources),
        "settings": config.fingerprint(),
        "elapsed_s": round(elapsed, 3),
        "articles": {
            "seen": stats.articles_seen,
            "failed": stats.articles_failed,
            "without_figures": stats.articles_without_figures,
        },
        "figures": {
            "found": stats.figures_found,
            "kept": stats.figures_kept,
            "dropped": sum(stats.dropped.values()),
        },
        "error_count": stats.error_count,
        "dropped": dict(sorted(stats.dropped.items())),
        "errors": dict(sorted(stats.errors.items())),
        "splits": splits,
        "error_items": error_items[:MAX_ERROR_ITEMS_IN_STATS],
        "error_items_truncated": len(error_items) > MAX_ERROR_ITEMS_IN_STATS,
    }
