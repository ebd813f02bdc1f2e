"""Corpus assembly: :func:`synthesize`, worker processes, the folder/package layout on disk.

Each article draws from its own RNG seeded with ``(seed, index)`` and is written by the process
that generated it; tar/gzip headers use fixed mtimes, owners and member order, so one seed gives
byte-identical files for any number of workers.
"""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.errors import OutputExistsError
from biomedclip.synth.captions import _caption
from biomedclip.synth.encode import _break_bytes, _encode, _gif_thumbnail
from biomedclip.synth.jats import _article_xml
from biomedclip.synth.plan import _Config, _Meta, _plan_figures, _sample_meta
from biomedclip.synth.render import _render_figure
from biomedclip.synth.specs import _FigSpec
from biomedclip.synth.truth import _label_row, classes_spec
from biomedclip.synth.vocab import BROKEN_KINDS, MODALITIES


@dataclass
class SynthSummary:
    """What :func:`synthesize` wrote: counts (for the CLI summary and tests) and the paths.

    ``broken`` counts figures per broken kind, except ``malformed_xml`` which counts articles;
    ``malformed_articles`` lists those articles' paths relative to ``out`` (some have no figures,
    so ``labels.jsonl`` alone cannot name them all).
    """

    out: Path
    folders_dir: Path
    packages_dir: Path
    labels_path: Path
    classes_path: Path
    articles: int = 0
    folder_articles: int = 0
    packages: int = 0
    figures: int = 0
    compound_figures: int = 0
    articles_without_figures: int = 0
    broken: dict[str, int] = field(default_factory=dict)
    modalities: dict[str, int] = field(default_factory=dict)
    malformed_articles: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form; paths relative to ``out`` so the file is location-independent."""
        data = asdict(self)
        for key in ("folders_dir", "packages_dir", "labels_path", "classes_path"):
            data[key] = getattr(self, key).relative_to(self.out).as_posix()
        data["out"] = "."
        return data


_OWN_OUTPUTS = ("folders", "packages", "labels.jsonl", "classes.json", "summary.json")


def synthesize(
    out: Path,
    n_articles: int,
    *,
    seed: int = 0,
    package_fraction: float = 0.3,
    broken_fraction: float = 0.03,
    workers: int = 1,
    image_size: int = 256,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> SynthSummary:
    """Write a synthetic PMC OA corpus of ``n_articles`` articles under ``out``.

    ``package_fraction`` of the articles become legacy ``.tar.gz`` packages, the rest folders.
    Each figure is broken with probability ``broken_fraction`` (kind drawn uniformly among the four
    figure kinds) and each article's XML is malformed with probability ``broken_fraction / 4``.
    ``image_size`` is the usual long side in pixels (about 5 % of figures are 2.3–3.2× larger,
    capped at 800 px, to exercise resize caps). ``progress(done)`` is called after every article
    with the number of articles finished so far. ``out`` must be empty or absent unless
    ``overwrite`` is set, which removes only the paths this function writes.

    ``workers > 1`` generates articles in *spawned* processes (forking a process that may hold
    threads, e.g. a Rich progress bar, is unsafe), so a calling script needs the usual
    ``if __name__ == "__main__":`` guard. Output bytes do not depend on ``workers``.
    """
    _check_args(n_articles, seed, package_fraction, broken_fraction, workers, image_size)
    out = Path(out)
    _prepare_out(out, overwrite)
    summary = SynthSummary(out, out / "folders", out / "packages", out / "labels.jsonl", out / "classes.json")
    summary.classes_path.write_text(
        json.dumps(classes_spec(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    cfg = _Config(str(out), seed, package_fraction, broken_fraction, image_size)
    with summary.labels_path.open("w", encoding="utf-8", newline="\n") as labels:
        for done, result in enumerate(_run(cfg, n_articles, workers), start=1):
            for row in result.rows:
                labels.write(json.dumps(row, ensure_ascii=False) + "\n")
            _tally(summary, result)
            if progress is not None:
                progress(done)
    summary.broken = {k: summary.broken.get(k, 0) for k in BROKEN_KINDS}
    summary.modalities = {m.name: summary.modalities.get(m.name, 0) for m in MODALITIES}
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary


def _check_args(n: int, seed: int, pkg: float, broken: float, workers: int, size: int) -> None:
    """Fail early with a message naming the bad argument (the CLI passes user input through)."""
    if n < 0:
        raise ValueError(f"n_articles must be >= 0, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    for name, value in (("package_fraction", pkg), ("broken_fraction", broken)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {value}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not 32 <= size <= 2048:
        raise ValueError(f"image_size must be within [32, 2048] px, got {size}")


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse to mix a new corpus into old files (stale articles would break determinism)."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out} is not empty; choose a new folder or pass overwrite=True (--overwrite)")
        for name in _OWN_OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    (out / "folders").mkdir(parents=True, exist_ok=True)
    (out / "packages").mkdir(parents=True, exist_ok=True)


@dataclass
class _ArticleResult:
    """What a worker reports for one article (the files are already written by then)."""

    rows: list[dict[str, Any]]
    kind: str
    malformed: bool
    source: str


def _run(cfg: _Config, n: int, workers: int) -> Iterator[_ArticleResult]:
    """Articles in index order, from this process or a pool (ordered ``imap`` keeps labels stable)."""
    if workers == 1 or n < 2:
        for index in range(n):
            yield _make_article(cfg, index)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork: callers may hold threads (Rich, Ray)
    with ctx.Pool(min(workers, n)) as pool:
        yield from pool.imap(_make_article_star, [(cfg, i) for i in range(n)], chunksize=4)


def _make_article_star(args: tuple[_Config, int]) -> _ArticleResult:
    return _make_article(*args)


def _tally(summary: SynthSummary, result: _ArticleResult) -> None:
    """Add one article's rows to the running counts."""
    summary.articles += 1
    if result.kind == "package":
        summary.packages += 1
    else:
        summary.folder_articles += 1
    summary.articles_without_figures += not result.rows
    if result.malformed:
        summary.broken["malformed_xml"] = summary.broken.get("malformed_xml", 0) + 1
        summary.malformed_articles.append(result.source)
    for row in result.rows:
        summary.figures += 1
        summary.compound_figures += bool(row["compound"])
        summary.modalities[row["modality"]] = summary.modalities.get(row["modality"], 0) + 1
        if row["broken"] and row["broken"] != "malformed_xml":
            summary.broken[row["broken"]] = summary.broken.get(row["broken"], 0) + 1


_GROUP_SIZE = 25
_EPOCH = 1_600_000_000  # fixed tar mtime: packages do not depend on when they were generated
_PDF = (
    b"%%PDF-1.4\n%% synthetic placeholder for %s\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%%%EOF\n"
)


def _make_article(cfg: _Config, index: int) -> _ArticleResult:
    """Generate, render and write one article; return its label rows."""
    rng = np.random.default_rng([cfg.seed, index])
    meta = _sample_meta(rng, cfg, index)
    figs = _plan_figures(rng, cfg, meta)
    media: dict[str, bytes] = {}
    for fig in figs:
        _caption(rng, fig)
        _add_media(rng, cfg, meta, fig, media)
    xml = _article_xml(rng, meta, figs, np.random.default_rng([cfg.seed, index, 1]))
    source = _write_article(Path(cfg.out), meta, xml, media)
    rows = [_label_row(meta, fig, source) for fig in figs]
    return _ArticleResult(rows, meta.kind, meta.malformed, source)


def _add_media(
    rng: np.random.Generator, cfg: _Config, meta: _Meta, fig: _FigSpec, media: dict[str, bytes]
) -> None:
    """Render, encode and (maybe) break one figure's image; packages also get a GIF thumbnail."""
    arr = _render_figure(rng, fig, cfg.image_size)
    data, image = _encode(arr, fig.fmt, int(rng.integers(80, 96)))
    final = _break_bytes(rng, data, fig.broken)
    if final is None:
        return
    media[fig.media] = final
    if meta.kind == "package" and fig.media.endswith(".jpg") and fig.broken is None:
        media[fig.media[:-4] + ".gif"] = _gif_thumbnail(image)


def _write_article(out: Path, meta: _Meta, xml: bytes, media: dict[str, bytes]) -> str:
    """Write a folder article or a ``.tar.gz`` package; return its path relative to ``out``."""
    if meta.kind == "folder":
        rel = Path("folders") / f"{meta.index // _GROUP_SIZE:02d}" / meta.pmcid
        folder = out / rel
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{meta.pmcid}.nxml").write_bytes(xml)
        for name, data in sorted(media.items()):
            (folder / name).write_bytes(data)
        return (rel / f"{meta.pmcid}.nxml").as_posix()
    rel_pkg = Path("packages") / f"{meta.pmcid}.tar.gz"
    files = {f"{meta.stem}.nxml": xml, f"{meta.stem}.pdf": _PDF % meta.pmcid.encode(), **media}
    (out / rel_pkg).write_bytes(_targz(meta.pmcid, files))
    return rel_pkg.as_posix()


def _targz(top: str, files: dict[str, bytes]) -> bytes:
    """Deterministic ``.tar.gz``: fixed mtimes/owners/modes, sorted members, no gzip name/time."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_tarinfo(f"{top}/", 0, directory=True))
        for name in sorted(files):
            tar.addfile(_tarinfo(f"{top}/{name}", len(files[name])), io.BytesIO(files[name]))
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return buf.getvalue()


def _tarinfo(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.rstrip("/") if directory else name)
    info.size = size
    info.mtime = _EPOCH
    info.uid = info.gid = 0
    info.uname, info.gname = "pmc", "pmcdev"
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info
