"""Plain records passed between the data-pipeline modules.

They live in one module so that sources, the JATS parser, the image code, the filters and the
shard writer agree on one vocabulary without importing each other. Every record is picklable:
work units cross process (and Ray) boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

from biomedclip.errors import BiomedclipError

ArticleKind = Literal["folder", "package"]


@dataclass(frozen=True, order=True)
class ArticleRef:
    """Where one article lives, without reading it.

    ``uri`` is a local path or fsspec URL: the XML file itself (``kind="folder"``, its media are
    the files beside it) or a ``.tar.gz`` OA package (``kind="package"``). Refs sort by uri, which
    gives every build the same article order (needed for reproducible dedup and exact resume).
    """

    uri: str
    kind: ArticleKind

    @property
    def name(self) -> str:
        """Short human name used in error messages (file name part of the uri)."""
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ItemError:
    """One problem with one input item; the build records it and goes on.

    ``reason`` is a short machine-readable code (``malformed_xml``, ``corrupt_image``,
    ``unsafe_tar_member`` …) counted in stats.json; ``source`` names the file (the article uri,
    plus ``!member`` for a tar member or ``#fig-id`` for a figure); ``detail`` says what to do or
    what exactly was wrong.
    """

    source: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class MediaStore(Protocol):
    """The files that came with an article (images, PDFs, …), by base name."""

    def names(self) -> Iterable[str]:
        """Base names of all media files available for the article."""
        ...

    def read(self, name: str) -> bytes:
        """Bytes of one media file (raises ``KeyError`` when absent, ``OSError`` on I/O failure)."""
        ...


@dataclass
class DictMediaStore:
    """A MediaStore held in memory (tar packages, tests)."""

    files: dict[str, bytes] = field(default_factory=dict)

    def names(self) -> Iterable[str]:
        return list(self.files)

    def read(self, name: str) -> bytes:
        return self.files[name]


@dataclass
class ArticleBundle:
    """An opened article: its XML bytes plus access to its media files.

    ``problems`` carries non-fatal issues met while opening (e.g. a tar member with an absolute
    path that was refused); the pipeline adds them to the stats.
    """

    ref: ArticleRef
    xml_name: str
    xml: bytes
    media: MediaStore
    problems: list[ItemError] = field(default_factory=list)


@dataclass
class Figure:
    """One ``<fig>`` of a JATS article.

    ``caption`` is the full caption text: the caption title followed by every paragraph, inline
    markup flattened, whitespace normalised. ``title`` is the caption ``<title>`` alone.
    ``graphics`` are the raw ``xlink:href`` values (often without extension).
    """

    fig_id: str
    label: str = ""
    title: str = ""
    caption: str = ""
    graphics: list[str] = field(default_factory=list)
    citing_sentences: list[str] = field(default_factory=list)


@dataclass
class Article:
    """Article-level metadata plus its figures.

    ``license`` is normalised (``cc-by``, ``cc-by-nc``, ``cc-by-nc-nd``, ``cc-by-sa``, ``cc0``,
    ``public-domain``, ``other``, ``unknown``); ``license_raw`` keeps the original text or URL.
    """

    pmcid: str = ""
    pmid: str = ""
    doi: str = ""
    title: str = ""
    journal: str = ""
    year: int | None = None
    article_type: str = ""
    license: str = "unknown"
    license_raw: str = ""
    figures: list[Figure] = field(default_factory=list)


@dataclass
class PreparedImage:
    """A figure image decoded, normalised to RGB, size-capped and re-encoded as JPEG.

    ``sha256`` is over the original file bytes (exact duplicates); ``phash`` is a 64-bit
    perceptual hash as 16 hex characters (near duplicates). Original sizes feed the filters.
    """

    jpeg: bytes
    width: int
    height: int
    orig_width: int
    orig_height: int
    orig_format: str
    sha256: str
    phash: str


def make_key(pmcid: str, fig_id: str) -> str:
    """Stable sample key ``<pmcid>_<figid>``.

    WebDataset splits a tar member name at the first dot into key and extension, so characters
    other than letters, digits, ``-`` and ``_`` are replaced by ``-``.
    """
    raw = f"{pmcid or 'noid'}_{fig_id or 'fig'}"
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in raw)


class ItemFailure(BiomedclipError):
    """Base of the per-item errors raised by sources, the JATS parser and the image code.

    An expected failure (bad input): the build counts it per item, and when one reaches the CLI
    (a whole source unusable) it is printed as one ``error:`` line.

    ``reason`` is the short code counted in stats.json, ``detail`` names the file and what to do.
    Both survive pickling (workers are processes or Ray tasks; default Exception pickling replays
    ``args`` into ``__init__`` and would lose a field).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason

    def to_item_error(self, source: str) -> ItemError:
        """The same problem as the build's per-item error record."""
        return ItemError(source=source, reason=self.reason, detail=self.detail)
