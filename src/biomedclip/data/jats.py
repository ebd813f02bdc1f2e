"""JATS XML (PMC ``.nxml``) → :class:`~biomedclip.data.records.Article` with its figures.

The figure/caption pairs are the training data, so this module is tuned for two things: never losing
caption text (every paragraph, list and formula of a caption; every ``<fig>`` wherever it sits) and
throughput. The XML is parsed once (after cutting out the unread reference list, see
``_elide_unread``); one walk in libxml2 collects figures and figure citations; text comes from
libxml2's text serialisation wherever no markup needs special handling; Python-level walking is
limited to captions and the paragraphs that cite a figure.

Parsing is hardened because the input comes from the internet:

* no network access, no DTD loading, no external entities (no XXE), no entity expansion at all, and
  libxml2's default size limits (``huge_tree`` off). Real PMC files declare a DOCTYPE; it is simply
  not fetched.
* Named entities that the (unloaded) JATS DTD would have defined (``&nbsp;``, ``&alpha;`` …) are
  kept by libxml2 as entity-reference nodes; they are replaced by their HTML5/ISO character when the
  name is known and dropped otherwise. That is the whole point of not expanding entities: a
  document-defined ``&xxe;`` or entity bomb can never contribute text.
* Bytes that are invalid for the declared (or default UTF-8) encoding raise ``invalid_encoding``
  rather than being guessed as cp1252: PMC files are UTF-8, so such bytes mean a damaged file, and a
  wrong guess would silently put mojibake into training captions. The build records the error in its
  stats, which keeps the loss visible.
* A document that is well-formed XML but uses an undeclared namespace prefix (``xlink:href`` without
  ``xmlns:xlink``, seen in the wild) is re-parsed in libxml2's recover mode; any other error is fatal.
"""

from __future__ import annotations

import html.entities
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterator

from lxml import etree

from biomedclip.data.records import Article, Figure, ItemError

__all__ = ["JatsError", "normalize_license", "parse_article", "split_sentences"]

_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_ALI_LICENSE_REF = "{http://www.niso.org/schemas/ali/1.0/}license_ref"
_MML = "{http://www.w3.org/1998/Math/MathML}"
_MML_MATH = _MML + "math"
# MathML token elements carry the visible text; <annotation> (often a TeX copy) must not be included.
_MML_TOKENS = tuple(_MML + t for t in ("mi", "mn", "mo", "mtext", "ms"))

LICENSE_CODES = (
    "cc-by", "cc-by-sa", "cc-by-nd", "cc-by-nc", "cc-by-nc-sa", "cc-by-nc-nd",
    "cc0", "public-domain", "other", "unknown",
)  # fmt: skip
_LICENSE_RAW_MAX = 500

# Elements that start a new block of text: a space is put on both sides so that words from two
# paragraphs (or list items, or a <break/>) never run together. Everything else is inline and is
# concatenated as is, so "M<italic>m</italic>PPOX" stays one word.
_BLOCK_TAGS = frozenset(
    {
        "p", "title", "label", "list", "list-item", "def-list", "def-item", "term", "def",
        "disp-formula", "disp-formula-group", "disp-quote", "break", "caption", "sec", "statement",
        "table", "tr", "td", "th", "verse-group", "verse-line", "attrib",
    }
)  # fmt: skip
# Floats and non-text elements whose content is not part of the surrounding text.
_SKIP_TAGS = frozenset(
    {
        "fig", "fig-group", "table-wrap", "table-wrap-group", "boxed-text", "supplementary-material",
        "graphic", "inline-graphic", "media", "object-id", "alt-text", "long-desc",
    }
)  # fmt: skip
# Elements whose text a citing sentence is taken from (nearest ancestor of the xref).
_CITE_BLOCKS = frozenset({"p", "title", "td", "th"})
# A figure xref below one of these is not a citation in running text.
_NO_CITE = frozenset({"caption", "fig", "front", "back", "ref-list"})
_FIG_REF_TYPES = frozenset({"fig", "figure"})

_PMCID_TYPES = ("pmcid", "pmc", "pmcaid", "pmc-uid")
_PMCID_RE = re.compile(r"(?i)^\s*(?:pmc)?\s*(\d+)\s*$")
_YEAR_RE = re.compile(r"\d{4}")
_DOI_PREFIX_RE = re.compile(r"(?i)^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)")

_ENCODING_ERROR_CODES = frozenset({31, 32, 81})  # UNKNOWN_ENCODING, UNSUPPORTED_ENCODING, INVALID_ENCODING


class JatsError(Exception):
    """An article that cannot be turned into records.

    ``reason`` is a short code counted in the build stats (``empty_file``, ``malformed_xml``,
    ``invalid_encoding``, ``no_article``); ``detail`` names the source and what is wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[JatsError], tuple[str, str]]:
        # Errors cross process/Ray boundaries; the default Exception pickling would lose a field.
        return (type(self), (self.reason, self.detail))

    def to_item_error(self, source: str) -> ItemError:
        """The error as the record the build stores in its stats."""
        return ItemError(source=source, reason=self.reason, detail=self.detail)


# --------------------------------------------------------------------------------------- parsing

_parsers = threading.local()


def _parser(recover: bool) -> etree.XMLParser:
    """A hardened parser, one per thread (lxml parsers must not be shared between threads)."""
    name = "recover" if recover else "strict"
    parser = getattr(_parsers, name, None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            recover=recover,
        )
        setattr(_parsers, name, parser)
    return parser


def _parse_root(xml: bytes, where: str) -> etree._Element:
    """Parse the bytes or raise JatsError with a reason code and lxml's line/column message.

    The reference list is cut out first (see ``_elide_unread``); if the cut
    document does not parse, the document exactly as given is parsed so that the error (with its
    line number) or the success is the original's.
    """
    if not xml or xml.isspace():
        raise JatsError("empty_file", f"{where}: file is empty")
    trimmed = _elide_unread(xml)
    if trimmed is not xml:
        try:
            return etree.fromstring(trimmed, _parser(recover=False))
        except etree.XMLSyntaxError:
            pass
    try:
        return etree.fromstring(xml, _parser(recover=False))
    except etree.XMLSyntaxError as exc:
        if not _only_namespace_errors(exc):
            raise JatsError(_syntax_reason(exc), f"{where}: {exc}") from None
        root = etree.fromstring(xml, _parser(recover=True))
        if root is None:
            raise JatsError("malformed_xml", f"{where}: {exc}") from None
        return root


# Parsing is most of the cost of an article, and about a third of a PMC article's bytes are its
# reference list, which nothing here reads. So the last <ref-list> (the back matter's) is cut out of
# the bytes before parsing, conservatively: only when its tags balance, the document is
# ASCII-compatible, and the span holds no figure (``<fig``) and no start or end of a comment, CDATA
# section or declaration (``<!``, ``-->``), so the cut can neither start nor end inside one. (When
# no ``!`` follows the root start tag there is no comment at all: one memchr replaces two scans.)
# Nothing inside a reference list is read anyway (``_NO_CITE``), so the result is that of a full
# parse, and a cut that breaks the document makes ``_parse_root`` parse the original. The one
# difference: a syntax error confined to the reference list goes unnoticed. Matching backwards from
# the end keeps the byte scans within the reference list. (Cutting tables too was tried: the scan
# over the whole body cost what the smaller parse saved.)
_REF_OPEN, _REF_CLOSE = b"<ref-list", b"</ref-list"
# rfind, not find: CPython's reverse search is markedly faster than its forward one on these needles.
_COMMENT_GUARDS = (b"<!", b"-->")
_ROOT_START_RE = re.compile(rb"<[A-Za-z_:]")
_NAME_END = frozenset(b" \t\r\n/>")
_START_TAG_REST_RE = re.compile(rb"""(?:[^>"']|"[^"]*"|'[^']*')*>""")


def _elide_unread(xml: bytes) -> bytes:
    """``xml`` without its last reference list (the same object when nothing is cut)."""
    if xml[:2] in (b"\xfe\xff", b"\xff\xfe") or b"\x00" in xml[:4]:
        return xml  # UTF-16/32: byte patterns would not match anyway
    span = _last_reference_span(xml)
    if span is None or xml.rfind(b"<fig", *span) >= 0:
        return xml
    root = _ROOT_START_RE.search(xml)
    if xml.find(b"!", root.start() if root else 0, span[1]) >= 0 and any(
        xml.rfind(g, *span) >= 0 for g in _COMMENT_GUARDS
    ):
        return xml
    return xml[: span[0]] + xml[span[1] :]


def _rfind_tag(xml: bytes, prefix: bytes, start: int, end: int) -> int:
    """Last ``prefix`` (``<name`` or ``</name``) in ``xml[start:end]`` where the tag name ends."""
    i = xml.rfind(prefix, start, end)
    while i >= 0 and (i + len(prefix) >= len(xml) or xml[i + len(prefix)] not in _NAME_END):
        i = xml.rfind(prefix, start, i)
    return i


def _last_reference_span(xml: bytes) -> tuple[int, int] | None:
    """(start, end) of the last outermost ``<ref-list>…</ref-list>``, matched backwards."""
    close = _rfind_tag(xml, _REF_CLOSE, 0, len(xml))
    if close < 0:
        return None
    end = xml.find(b">", close) + 1
    if end <= 0:
        return None
    depth, pos = 1, close
    while depth:
        opening = _rfind_tag(xml, _REF_OPEN, 0, pos)
        if opening < 0:
            return None
        inner_close = _rfind_tag(xml, _REF_CLOSE, opening, pos)
        if inner_close >= 0:  # a nested list closes before this open: one level deeper
            depth, pos = depth + 1, inner_close
            continue
        m = _START_TAG_REST_RE.match(xml, opening + len(_REF_OPEN))
        if m is None:
            return None
        if xml[m.end() - 2] != ord("/"):  # <ref-list/> opens nothing
            depth -= 1
        pos = opening
    return pos, end


def _only_namespace_errors(exc: etree.XMLSyntaxError) -> bool:
    """True when the document is well-formed and only namespace declarations are missing."""
    errors = [e for e in exc.error_log if e.level >= etree.ErrorLevels.ERROR]
    return bool(errors) and all(e.domain == etree.ErrorDomains.NAMESPACE for e in errors)


def _syntax_reason(exc: etree.XMLSyntaxError) -> str:
    msg = str(exc)
    # Older libxml2 reports bad UTF-8 as "Input is not proper UTF-8" with a generic code.
    if exc.code in _ENCODING_ERROR_CODES or "proper UTF-8" in msg or "encoding" in msg.lower():
        return "invalid_encoding"
    return "malformed_xml"


def _entity_text(ent: etree._Entity) -> str:
    """The character a DTD entity such as ``&nbsp;`` stands for; "" for unknown names."""
    return html.entities.html5.get(ent.name + ";", "")


def _replace_entity_refs(root: etree._Element) -> None:
    """Replace unexpanded entity-reference nodes below ``root`` by their character (or nothing).

    Only needed before ``itertext`` on MathML/TeX; everywhere else ``_Text`` reads the nodes.
    """
    for ent in list(root.iter(etree.Entity)):
        text = _entity_text(ent) + (ent.tail or "")
        prev = ent.getprevious()
        parent = ent.getparent()
        if parent is None:
            continue
        if prev is not None:
            prev.tail = (prev.tail or "") + text
        else:
            parent.text = (parent.text or "") + text
        parent.remove(ent)


def _strip_own_namespace(article: etree._Element) -> None:
    """Make a namespaced JATS article look like a plain one, so one set of paths fits all.

    Only elements in the article's own namespace are renamed; MathML, xlink and ALI keep theirs.
    """
    tag = article.tag
    if not tag.startswith("{"):
        return
    ns = tag[1 : tag.index("}")]
    cut = len(ns) + 2
    for el in article.iter(f"{{{ns}}}*"):
        el.tag = el.tag[cut:]


# ------------------------------------------------------------------------------------ flattening


def _norm(text: str) -> str:
    """Collapse all (Unicode) whitespace runs to single spaces."""
    return " ".join(text.split())


def _clean_tex(tex: str) -> str:
    """The formula inside PMC's ``\\documentclass…\\begin{document}$…$\\end{document}`` wrapper."""
    start = tex.find("\\begin{document}")
    if start >= 0:
        tex = tex[start + len("\\begin{document}") :]
        end = tex.find("\\end{document}")
        if end >= 0:
            tex = tex[:end]
    return tex.strip().strip("$").strip()


# Descendants that make plain ``itertext`` wrong (block spacing, skipped floats, formula choice).
# (An unexpanded entity reference's ``tag`` is the ``etree.Entity`` factory.)
_SPECIAL_TAGS = _BLOCK_TAGS | _SKIP_TAGS | {_MML_MATH, "tex-math", "alternatives", etree.Entity}


def _is_plain(el: etree._Element) -> bool:
    """True when libxml2's own ``itertext`` already yields the right text (the common case).

    A plain loop: passing ~45 tag names to ``iterdescendants`` costs more than it saves.
    """
    special = _SPECIAL_TAGS
    for d in el.iterdescendants():  # noqa: SIM110 - a plain loop is measurably faster than all()
        if d.tag in special:
            return False
    return True


def _plain_text(el: etree._Element) -> str:
    """All text below ``el`` in one C call (several times faster than joining ``itertext``)."""
    return etree.tostring(el, method="text", encoding="unicode", with_tail=False)


class _Text:
    """Flattens mixed content to text.

    libxml2's text serialisation is used for every subtree without special descendants; the small
    recursive walk only runs where blocks need spaces, floats must be skipped, MathML must be read
    without its annotations, or ``<alternatives>`` must give one representation.
    """

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str | None) -> None:
        if text:
            self.parts.append(text)

    def content(self, el: etree._Element) -> _Text:
        """Add the text of ``el`` and its descendants (not its tail)."""
        if _is_plain(el):
            self.parts.append(_plain_text(el))
            return self
        self.add(el.text)
        for child in el:
            self.child(child)
            self.add(child.tail)
        return self

    def child(self, el: etree._Element) -> None:
        """Add the text of one child element (not its tail), according to its kind."""
        tag = el.tag
        if tag is etree.Entity:
            self.add(_entity_text(el))
            return
        if not isinstance(tag, str) or tag in _SKIP_TAGS:
            return
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")
            self.content(el)
            self.parts.append(" ")
        elif tag == _MML_MATH:
            _replace_entity_refs(el)
            self.parts.extend(el.itertext(*_MML_TOKENS, with_tail=False))
        elif tag == "tex-math":
            _replace_entity_refs(el)
            self.add(_clean_tex("".join(el.itertext())))
        elif tag == "alternatives":
            best = _preferred_alternative(el)
            if best is None:
                self.content(el)
            else:
                self.child(best)
        else:
            self.content(el)

    def text(self) -> str:
        return "".join(self.parts)


def _preferred_alternative(alternatives: etree._Element) -> etree._Element | None:
    """MathML beats TeX; None means no formula inside, so every child is read."""
    tex = None
    for child in alternatives:
        if child.tag == _MML_MATH:
            return child
        if tex is None and child.tag == "tex-math":
            tex = child
    return tex


def _flatten(el: etree._Element | None) -> str:
    """Whitespace-normalised text of an element (empty for None)."""
    if el is None:
        return ""
    if not len(el):  # a leaf: its text is all there is
        return _norm(el.text or "")
    return _norm(_Text().content(el).text())


# ----------------------------------------------------------------------------------- sentences

# Candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace.
_BOUNDARY_RE = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+")
# Words that end with a period without ending the sentence ("Fig. 2", "et al. [3]", "vs. control").
_ABBREVIATIONS = frozenset(
    {
        "fig", "figs", "al", "e.g", "i.e", "vs", "approx", "ca", "no", "nos", "dr", "cf", "eq",
        "eqs", "ref", "refs", "resp", "sp", "spp", "subsp", "suppl", "mr", "mrs", "ms", "prof", "st",
    }
)  # fmt: skip
# "J." / "J.R." (initials) and "e.g." / "a.k.a." style dotted lowercase abbreviations.
_INITIALS_RE = re.compile(r"(?:[A-Z]\.)*[A-Z]|(?:[a-z]\.)+[a-z]")


def _is_abbreviation(token: str) -> bool:
    token = token.lstrip("([{\"'\u201c\u2018")
    if token.lower() in _ABBREVIATIONS:
        return True
    # only a single letter or a dotted token can be an initial or "e.g."-style abbreviation
    return (len(token) == 1 or "." in token) and _INITIALS_RE.fullmatch(token) is not None


def _splits_at(text: str, m: re.Match[str]) -> bool:
    """Whether a candidate boundary (``_BOUNDARY_RE`` match) really ends a sentence.

    It does unless the next character is a lowercase letter or the word before the period is a
    known abbreviation or an initial. Decimal numbers never get here (no whitespace after their
    point). When in doubt it does not split: a sentence glued to its neighbour still holds the
    citation, a sentence cut in half loses it.
    """
    end = m.end()
    if end >= len(text) or text[end].islower():
        return False
    i = m.start()
    words = text[max(0, i - 30) : i].rsplit(None, 1)
    return not (words and _is_abbreviation(words[-1]))


def _sentence_starts(text: str) -> list[int]:
    """Offsets where sentences start (see ``_splits_at``)."""
    return [0] + [m.end() for m in _BOUNDARY_RE.finditer(text) if _splits_at(text, m)]


def _sentence_around(text: str, candidates: list[re.Match[str]], ends: list[int], offset: int) -> str:
    """The sentence containing ``offset``; only the candidate boundaries next to it are tested."""
    k = bisect_right(ends, offset)
    start, stop = 0, len(text)
    for j in range(k - 1, -1, -1):
        if _splits_at(text, candidates[j]):
            start = ends[j]
            break
    for j in range(k, len(ends)):
        if _splits_at(text, candidates[j]):
            stop = ends[j]
            break
    return _norm(text[start:stop])


def split_sentences(text: str) -> list[str]:
    """Split running text into whitespace-normalised sentences (see ``_sentence_starts``)."""
    starts = _sentence_starts(text)
    bounds = [*starts[1:], len(text)]
    return [s for s in (_norm(text[a:b]) for a, b in zip(starts, bounds, strict=True)) if s]


# Markers put in front of cited xrefs' text to find them in the flattened paragraph: characters of
# the Supplementary Private Use Area-A, which running text does not use. Should one still be present,
# the markers would be ambiguous and that paragraph gives no citing sentence (never a wrong one).
_MARK_BASE = 0xF0000
_MARK_MAX = 0xFFFFD - _MARK_BASE


def _cited_sentences(block: etree._Element, xrefs: list[etree._Element]) -> list[str]:
    """The sentence of ``block`` around each xref (same order; "" where it cannot be located)."""
    if len(xrefs) > _MARK_MAX:
        return [""] * len(xrefs)
    saved = [x.text for x in xrefs]
    for k, x in enumerate(xrefs):
        x.text = chr(_MARK_BASE + k) + (saved[k] or "")
    try:
        raw = _plain_text(block) if _is_plain(block) else _Text().content(block).text()
    finally:
        for x, text in zip(xrefs, saved, strict=True):
            x.text = text
    hits = [raw.find(chr(_MARK_BASE + k)) for k in range(len(xrefs))]
    if any(h >= 0 and raw.count(raw[h], h + 1) for h in hits):
        return [""] * len(xrefs)  # a marker character was already in the text: ambiguous
    found = sorted(h for h in hits if h >= 0)  # a missing one sits in an unread part (a float)
    text = "".join(raw[a + 1 : b] for a, b in zip([-1, *found], [*found, len(raw)], strict=True))
    candidates = list(_BOUNDARY_RE.finditer(text))
    ends = [m.end() for m in candidates]
    # a marker's offset in the text without markers: its position minus the markers before it
    return [
        _sentence_around(text, candidates, ends, h - bisect_left(found, h)) if h >= 0 else "" for h in hits
    ]


def _citing_block(xref: etree._Element) -> etree._Element | None:
    """The paragraph (or title/cell) of running body text holding the xref, else None."""
    block = None
    for anc in xref.iterancestors():
        tag = anc.tag
        if tag == "body":
            return block
        if tag in _NO_CITE:
            return None
        if block is None and tag in _CITE_BLOCKS:
            block = anc
    return None


def _attach_citing_sentences(xrefs: list[etree._Element], targets: dict[str, list[Figure]]) -> None:
    """Fill ``citing_sentences`` of the figures that figure xrefs in body text point to.

    ``rid`` may list several ids, and may name a fig-group (``targets`` maps those to its figures).
    Each citing paragraph is flattened and split once, for all its xrefs; sentences are then
    attached in document order of the xrefs.
    """
    cites: list[tuple[etree._Element, list[Figure]]] = []
    by_block: dict[etree._Element, list[etree._Element]] = {}
    for xref in xrefs:
        figures = [fig for rid in xref.get("rid", "").split() for fig in targets.get(rid, ())]
        block = _citing_block(xref) if figures else None
        if block is not None:
            cites.append((xref, figures))
            by_block.setdefault(block, []).append(xref)
    sentence_of: dict[etree._Element, str] = {}
    for block, block_xrefs in by_block.items():
        sentence_of.update(zip(block_xrefs, _cited_sentences(block, block_xrefs), strict=True))
    seen: dict[int, set[str]] = {}
    for xref, figures in cites:
        sentence = sentence_of[xref]
        for fig in figures:
            done = seen.setdefault(id(fig), set())
            if sentence and sentence not in done:
                done.add(sentence)
                fig.citing_sentences.append(sentence)


# ------------------------------------------------------------------------------------- figures


def _caption_parts(caption: etree._Element | None) -> tuple[str, str]:
    """(title, full caption) of a ``<caption>``; the title is joined to the text with ". "."""
    if caption is None:
        return "", ""
    title_el = _child(caption, "title")
    out = _Text()
    out.add(caption.text)
    for child in caption:
        if child is not title_el:
            out.child(child)
        out.add(child.tail)
    title = _flatten(title_el)
    rest = _norm(out.text())
    if not title or not rest:
        return title, title or rest
    sep = " " if title[-1] in ".?!:;" else ". "
    return title, title + sep + rest


def _graphics(fig: etree._Element) -> list[str]:
    """Every graphic href of the figure (incl. ``<alternatives>``), in order, de-duplicated."""
    hrefs: dict[str, None] = {}
    for graphic in fig.iter("graphic"):
        # "xlink:href" as a plain name: files that never declare the xlink prefix (recover mode)
        href = (graphic.get(_XLINK_HREF) or graphic.get("xlink:href") or "").strip()
        if href:
            hrefs[href] = None
    return list(hrefs)


def _group_chain(fig: etree._Element) -> list[etree._Element]:
    """The fig-groups enclosing a figure, innermost first."""
    chain = []
    parent = fig.getparent()
    while parent is not None and parent.tag == "fig-group":
        chain.append(parent)
        parent = parent.getparent()
    return chain


def _figures_and_fig_xrefs(article: etree._Element) -> tuple[list[etree._Element], list[etree._Element]]:
    """Every ``<fig>`` and every figure ``<xref>``, from one walk over the tree (walks are costly)."""
    figs, xrefs = [], []
    for el in article.iter("fig", "xref"):
        ref_type = el.get("ref-type")  # first: most elements are (bibliography) xrefs
        if ref_type is None:
            if el.tag == "fig":
                figs.append(el)
        elif ref_type in _FIG_REF_TYPES:
            xrefs.append(el)
    return figs, xrefs


def _extract_figures(figs: list[etree._Element]) -> tuple[list[Figure], dict[str, list[Figure]]]:
    """Records for the figures plus a map from fig and fig-group ids to the figures they designate."""
    used = {f.get("id", "").strip() for f in figs} - {""}
    group_captions: dict[etree._Element, tuple[str, str]] = {}
    figures: list[Figure] = []
    targets: dict[str, list[Figure]] = {}
    for n, fig in enumerate(figs, start=1):
        own_id = fig.get("id", "").strip()
        fig_id = own_id or _fresh_id(f"fig{n}", used)
        groups = _group_chain(fig)
        title, caption = _caption_parts(_child(fig, "caption"))
        if not caption:
            title, caption = _inherited_caption(groups, group_captions)
        figure = Figure(
            fig_id=fig_id,
            label=_flatten(_child(fig, "label")),
            title=title,
            caption=caption,
            graphics=_graphics(fig),
        )
        figures.append(figure)
        for key in [own_id, *(g.get("id", "").strip() for g in groups)]:
            if key:
                targets.setdefault(key, []).append(figure)
    return figures, targets


def _fresh_id(candidate: str, used: set[str]) -> str:
    """A synthetic id that collides with no real (or earlier synthetic) figure id."""
    fig_id, k = candidate, 1
    while fig_id in used:
        k += 1
        fig_id = f"{candidate}-{k}"
    used.add(fig_id)
    return fig_id


def _inherited_caption(
    groups: list[etree._Element], cache: dict[etree._Element, tuple[str, str]]
) -> tuple[str, str]:
    """Caption of the nearest enclosing fig-group that has one (figures in a group often don't)."""
    for group in groups:
        parts = cache.get(group)
        if parts is None:
            parts = cache[group] = _caption_parts(_child(group, "caption"))
        if parts[1]:
            return parts
    return "", ""


# ------------------------------------------------------------------------------------ metadata


def _child(el: etree._Element | None, tag: str) -> etree._Element | None:
    """First child with that tag (half the cost of ``find``, which goes through ElementPath)."""
    return None if el is None else next(el.iterchildren(tag), None)


def _article_ids(meta: etree._Element) -> tuple[str, str, str]:
    """(pmcid as ``PMC<digits>``, pmid, doi) from ``<article-id>``."""
    by_type: dict[str, str] = {}
    for el in meta.iterchildren("article-id"):
        value = _flatten(el)
        if value:
            by_type.setdefault(el.get("pub-id-type", "").strip().lower(), value)
    pmcid = ""
    for kind in _PMCID_TYPES:
        m = _PMCID_RE.match(by_type.get(kind, ""))
        if m:
            pmcid = "PMC" + m.group(1)
            break
    doi = _DOI_PREFIX_RE.sub("", by_type.get("doi", ""))
    return pmcid, by_type.get("pmid", ""), doi


def _journal(journal_meta: etree._Element | None) -> str:
    """journal-title (JATS ≥ 1.0 groups it, 2.3 does not), else the NLM or ISO abbreviation."""
    if journal_meta is None:
        return ""
    title = _flatten(_child(_child(journal_meta, "journal-title-group"), "journal-title"))
    title = title or _flatten(_child(journal_meta, "journal-title"))
    if title:
        return title
    ids = {el.get("journal-id-type"): _norm(el.text or "") for el in journal_meta.iterchildren("journal-id")}
    fallback = ids.get("nlm-ta") or ids.get("iso-abbrev")
    return fallback or _flatten(next(journal_meta.iter("abbrev-journal-title"), None))


def _pub_date_rank(el: etree._Element) -> int:
    """epub (0) before ppub (1) before collection (2) before any other date (3).

    Handles both ``pub-type`` (JATS ≤ 1.0) and ``date-type``/``publication-format`` (JATS ≥ 1.1).
    """
    kind = el.get("pub-type") or el.get("date-type") or ""
    fmt = el.get("publication-format", "")
    if kind in ("epub", "epub-ppub") or (kind == "pub" and fmt == "electronic"):
        return 0
    if kind == "ppub" or (kind == "pub" and fmt == "print"):
        return 1
    if kind == "collection":
        return 2
    return 3


def _year(meta: etree._Element) -> int | None:
    """Year of the preferred ``<pub-date>`` (document order breaks ties)."""
    dated = []
    for order, el in enumerate(meta.iterchildren("pub-date")):
        year = _child(el, "year")
        m = _YEAR_RE.search((year.text if year is not None else None) or el.get("iso-8601-date") or "")
        if m:
            dated.append((_pub_date_rank(el), order, int(m.group())))
    return min(dated)[2] if dated else None


# ------------------------------------------------------------------------------------- license

_CC_URL_RE = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z\-]+)")
_CC0_RE = re.compile(r"\bcc[\s\-_]?(?:0|zero)\b|creative\s+commons\s+zero")
_CC_ABBR_RE = re.compile(r"\bcc[\s\-_]?by((?:[\s\-_]+(?:nc|nd|sa)\b)*)")
_CC_NAME_RE = re.compile(r"creative\s+commons\s+attribution")
_NC_RE = re.compile(r"non[\s\-]?commercial|\bnc\b")
_ND_RE = re.compile(r"no[\s\-]?deriv|\bnd\b")
_SA_RE = re.compile(r"share[\s\-]?alike|\bsa\b")


def _cc_code(nc: bool, nd: bool, sa: bool) -> str:
    if nd and sa:  # not a real CC license
        return "other"
    return "cc-by" + ("-nc" if nc else "") + ("-nd" if nd else "") + ("-sa" if sa else "")


def normalize_license(raw: str) -> str:
    """Map a license URL, name, abbreviation or statement to one of ``LICENSE_CODES``.

    Order matters: a CC URL is the most precise signal, then CC0 (whose text also says "public
    domain"), then abbreviations ("CC BY-NC 4.0"), then the spelled-out name ("Creative Commons
    Attribution-NonCommercial License", only the words right after "Attribution" are read so that
    "permits non-commercial use" later in the sentence does not count). Unrecognised non-empty text
    is ``other``; empty is ``unknown``.
    """
    s = _norm(raw.lower())
    if not s:
        return "unknown"
    m = _CC_URL_RE.search(s)
    if m:
        kind, code = m.groups()
        if kind == "publicdomain":
            return "cc0" if code.startswith("zero") else "public-domain"
        parts = set(code.split("-"))
        return _cc_code("nc" in parts, "nd" in parts, "sa" in parts) if "by" in parts else "other"
    if _CC0_RE.search(s):
        return "cc0"
    m = _CC_ABBR_RE.search(s)
    if m:
        flags = m.group(1)
        return _cc_code("nc" in flags, "nd" in flags, "sa" in flags)
    m = _CC_NAME_RE.search(s)
    if m:
        tail = re.split(r"licen[cs]e|\(|http|which", s[m.end() : m.end() + 80], maxsplit=1)[0]
        return _cc_code(bool(_NC_RE.search(tail)), bool(_ND_RE.search(tail)), bool(_SA_RE.search(tail)))
    if "public domain" in s or "public-domain" in s:
        return "public-domain"
    return "other"


def _license_candidates(permissions: etree._Element) -> Iterator[str]:
    """License evidence, most precise first: ALI refs, license hrefs, link targets, text, type.

    A generator: the license text is only flattened when no URL settled the question.
    """
    licenses = list(permissions.iterchildren("license"))
    for lic in licenses:
        yield from (_flatten(el) for el in lic.iterchildren(_ALI_LICENSE_REF))
    for lic in licenses:
        yield lic.get(_XLINK_HREF, "")
    for lic in licenses:
        yield from (el.get(_XLINK_HREF, "") for el in lic.iter("ext-link", "uri"))
    for lic in licenses:
        out = _Text()
        out.add(lic.text)
        for child in lic:
            if child.tag != _ALI_LICENSE_REF:
                out.child(child)
            out.add(child.tail)
        yield _norm(out.text())
    for lic in licenses:
        yield lic.get("license-type", "")


def _license(meta: etree._Element) -> tuple[str, str]:
    """(normalised code, raw evidence) — the first candidate that names a specific license wins."""
    permissions = _child(meta, "permissions")
    if permissions is None:
        return "unknown", ""
    first = ""
    for candidate in _license_candidates(permissions):
        raw = candidate.strip()
        if not raw:
            continue
        code = normalize_license(raw)
        if code not in ("other", "unknown"):
            return code, raw[:_LICENSE_RAW_MAX]
        first = first or raw
    return ("other", first[:_LICENSE_RAW_MAX]) if first else ("unknown", "")


# ------------------------------------------------------------------------------------- article


def _fill_metadata(record: Article, article: etree._Element) -> None:
    """Metadata from the article's own ``<front>`` only (never from a sub-article)."""
    record.article_type = article.get("article-type", "").strip()
    front = _child(article, "front")
    if front is None:
        return
    record.journal = _journal(_child(front, "journal-meta"))
    meta = _child(front, "article-meta")
    if meta is None:
        return
    record.pmcid, record.pmid, record.doi = _article_ids(meta)
    record.title = _flatten(_child(_child(meta, "title-group"), "article-title"))
    record.year = _year(meta)
    record.license, record.license_raw = _license(meta)


def parse_article(xml: bytes, source: str = "") -> Article:
    """Parse one JATS document (bare ``<article>``, ``<pmc-articleset>`` or OAI-PMH wrapped).

    The first element named ``article`` (any namespace) is used. Raises :class:`JatsError` with
    reason ``empty_file``, ``malformed_xml``, ``invalid_encoding`` or ``no_article``; ``source``
    only serves to name the input in the error detail.
    """
    where = source or "<xml>"
    root = _parse_root(xml, where)
    article = root if root.tag == "article" else next(root.iter("{*}article"), None)
    if article is None:
        root_name = etree.QName(root).localname
        raise JatsError("no_article", f"{where}: no <article> element (root element is <{root_name}>)")
    _strip_own_namespace(article)
    record = Article()
    _fill_metadata(record, article)
    figs, xrefs = _figures_and_fig_xrefs(article)
    record.figures, targets = _extract_figures(figs)
    if targets and xrefs:
        _attach_citing_sentences(xrefs, targets)
    return record
