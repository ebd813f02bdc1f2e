"""Per-article work, run inside executor workers: open → parse → filter captions → images.

Everything here is a pure function of (article, settings), so it can run in any process or on
any Ray node; decisions that need the whole build (duplicates, splits, shard placement) are the
writer's, in :mod:`biomedclip.data.pipeline`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from biomedclip.data.filters import FilterConfig, caption_drop_reason, image_drop_reason
from biomedclip.data.images import ImageError, prepare_image, resolve_graphic
from biomedclip.data.jats import JatsError, parse_article
from biomedclip.data.records import Article, ArticleBundle, ArticleRef, Figure, ItemError, ItemFailure, make_key
from biomedclip.data.sources import SourceError, open_article

# "(A) … (B) …" or "A, … B, …" panel markers: a cheap, documented compound-figure heuristic.
_PANEL_RE = re.compile(r"(?:\(\s*[Aa]\s*\)|\b[Aa]\))[^()]*?(?:\(\s*[Bb]\s*\)|\b[Bb]\))")
_PMCID_IN_NAME = re.compile(r"PMC\d+", re.IGNORECASE)


@dataclass(frozen=True)
class ExtractSettings:
    """Everything a worker needs; small and picklable."""

    filters: FilterConfig = field(default_factory=FilterConfig)
    max_side: int = 512
    max_pixels: int = 100_000_000
    jpeg_quality: int = 90
    storage_options: dict[str, Any] | None = None


@dataclass
class FigureSample:
    """A figure that passed the per-article filters, ready for dedup and writing."""

    key: str
    jpeg: bytes
    caption: str
    meta: dict[str, Any]


@dataclass
class ArticleResult:
    """What one article produced: samples, filter drops and errors (each naming its source)."""

    uri: str
    article_id: str = ""
    parsed: bool = False
    figures_found: int = 0
    samples: list[FigureSample] = field(default_factory=list)
    drops: list[tuple[str, str]] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    # Set by sources that decide per article (PMC Cloud): why it was left out before any
    # extraction ("retracted", "license_excluded", …), source records the writer logs in order
    # (tombstones, article state), and request/byte counters summed into stats.json.
    skipped: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def article_id_for(article: Article, ref: ArticleRef) -> str:
    """The id used for keys and splits: the PMCID, else a PMCID in the file name, else the name."""
    if article.pmcid:
        return article.pmcid
    match = _PMCID_IN_NAME.search(ref.name)
    if match:
        return match.group(0).upper()
    return ref.name.split(".", 1)[0]


def is_compound(caption: str) -> bool:
    """Whether the caption describes lettered panels (A)/(B) — likely a compound figure."""
    return bool(_PANEL_RE.search(caption))


def process_batch(batch: tuple[list[Any], ExtractSettings]) -> list[ArticleResult]:
    """Executor entry point: a batch of articles amortises task overhead (IPC, Ray scheduling).

    Items are :class:`ArticleRef` s, or work items of a planned source (PMC Cloud tasks) that
    carry their own ``process(settings)``; both run in the same workers, in the same order.
    """
    refs, settings = batch
    return [process_article(ref, settings) if isinstance(ref, ArticleRef) else ref.process(settings)
            for ref in refs]


def read_article(
    ref: ArticleRef, storage_options: dict[str, Any] | None = None, **parse_options: bool
) -> tuple[ArticleBundle | None, Article | None, list[ItemError]]:
    """Open and parse one article: (bundle, article, errors); never raises for bad input.

    The errors are those of opening (then bundle and article are None), the package's refused
    members, and parsing (then the article is None). ``parse_options`` go to ``parse_article``.
    """
    try:
        bundle = open_article(ref, storage_options=storage_options)
    except SourceError as exc:
        return None, None, [ItemError(ref.uri, exc.reason, exc.detail)]
    errors = list(bundle.problems)
    where = f"{ref.uri}!{bundle.xml_name}" if ref.kind == "package" else ref.uri
    try:
        article = parse_article(bundle.xml, where, **parse_options)
    except JatsError as exc:
        errors.append(ItemError(ref.uri, exc.reason, exc.detail))
        return bundle, None, errors
    return bundle, article, errors


def process_article(ref: ArticleRef, settings: ExtractSettings) -> ArticleResult:
    """Turn one article into figure samples; never raises for bad input."""
    result = ArticleResult(uri=ref.uri)
    bundle, article, errors = read_article(ref, settings.storage_options)
    result.errors.extend(errors)
    if bundle is None or article is None:
        return result
    return extract_figures(ref, article, bundle.media, settings, result)


def extract_figures(ref: ArticleRef, article: Article, media: Any, settings: ExtractSettings,
                    result: ArticleResult) -> ArticleResult:
    """Filter, read and prepare the figures of a parsed article into ``result``.

    Shared by every source: ``media`` is any MediaStore; a ``read`` that raises an
    :class:`ItemFailure` (e.g. a checksum mismatch) becomes an error with that reason.
    """
    result.parsed = True
    result.article_id = article_id_for(article, ref)
    result.figures_found = len(article.figures)
    if not article.figures:
        return result
    try:
        media_names = list(media.names())
    except OSError as exc:
        result.errors.append(ItemError(ref.uri, "unreadable_media", f"cannot list the article's files: {exc}"))
        return result
    for figure in article.figures:
        _process_figure(figure, article, ref, media, media_names, settings, result)
    return result


def _process_figure(figure: Figure, article: Article, ref: ArticleRef, media: Any,
                    media_names: list[str], settings: ExtractSettings, result: ArticleResult) -> None:
    source = f"{ref.uri}#{figure.fig_id}"
    reason = caption_drop_reason(figure.caption, settings.filters)
    if reason:
        result.drops.append((reason, source))
        return
    if not figure.graphics:
        result.drops.append(("no_graphic", source))
        return
    name = next((n for href in figure.graphics if (n := resolve_graphic(href, media_names))), None)
    if name is None:
        result.errors.append(ItemError(
            source, "missing_image",
            f"graphic {', '.join(figure.graphics)!s} not found among the article's files "
            f"({', '.join(sorted(media_names)[:10]) or 'none'})",
        ))
        return
    try:
        data = media.read(name)
    except ItemFailure as exc:
        result.errors.append(exc.to_item_error(f"{source}:{name}"))
        return
    except (OSError, KeyError) as exc:
        result.errors.append(ItemError(f"{source}:{name}", "unreadable_image", str(exc)))
        return
    try:
        image = prepare_image(data, max_side=settings.max_side, max_pixels=settings.max_pixels,
                              jpeg_quality=settings.jpeg_quality)
    except ImageError as exc:
        result.errors.append(ItemError(f"{source}:{name}", exc.reason, exc.detail))
        return
    reason = image_drop_reason(image, settings.filters)
    if reason:
        result.drops.append((reason, f"{source}:{name}"))
        return
    key = make_key(result.article_id, figure.fig_id)
    meta = {
        "key": key,
        "pmcid": article.pmcid,
        "pmid": article.pmid,
        "doi": article.doi,
        "article_title": article.title,
        "journal": article.journal,
        "year": article.year,
        "article_type": article.article_type,
        "license": article.license,
        "license_raw": article.license_raw,
        "fig_id": figure.fig_id,
        "label": figure.label,
        "caption_title": figure.title,
        "citing_sentences": figure.citing_sentences,
        "compound": is_compound(figure.caption),
        "source": ref.uri,
        "graphic": name,
        "width": image.width,
        "height": image.height,
        "orig_width": image.orig_width,
        "orig_height": image.orig_height,
        "orig_format": image.orig_format,
        "sha256": image.sha256,
        "phash": image.phash,
    }
    result.samples.append(FigureSample(key=key, jpeg=image.jpeg, caption=figure.caption, meta=meta))
