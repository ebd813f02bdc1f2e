"""JATS XML (PMC ``.nxml``) → :class:`~biomedclip.data.records.Article` with its figures.

The figure/caption pairs are the training data, so this module is tuned for two things: never losing
caption text (every paragraph, list and formula of a caption; every ``<fig>`` wherever it sits) and
throughput. The XML is parsed once, after cheap byte-level edits whose result is provably the tree
that would otherwise be built or used: the unread reference list is cut out and table contents are
emptied (``_elide_unread``), and an OAI-PMH article's default namespace is undeclared rather than
renamed away element by element (``_unset_article_namespace``). One walk in libxml2 collects
figures and figure citations; text comes from libxml2's text serialisation wherever no markup needs
special handling; Python-level walking is limited to captions and the paragraphs that cite a figure,
and a citing sentence is located without scanning the rest of its paragraph.

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
from bisect import bisect_left
from collections.abc import Iterator

from lxml import etree

from biomedclip.data.records import Article, Figure, ItemFailure

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


class JatsError(ItemFailure):
    """An article that cannot be turned into records.

    ``reason`` is a short code counted in the build stats (``empty_file``, ``malformed_xml``,
    ``invalid_encoding``, ``no_article``); ``detail`` names the source and what is wrong.
    """


# --------------------------------------------------------------------------------------- parsing

_parsers = threading.local()


def _parser(recover: bool) -> etree.XMLParser:
    """A hardened parser, one per thread (lxml parsers must not be shared between threads).

    (Not ``collect_ids=False``, although it parses a little faster: libxml2 then reads external
    entities, see ``test_external_entities_are_never_read``.)
    """
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


def _parse_root(xml: bytes, where: str, edit: bool = True) -> tuple[etree._Element, str | None]:
    """Parse the bytes or raise JatsError with a reason code and lxml's line/column message.

    Returns the root and, when the default namespace of the article start tag was emptied before
    parsing (see ``_unset_article_namespace``), that namespace. Unread parts are cut out first
    (see ``_elide_unread``; ``edit=False`` parses the bytes as given); if the edited document does
    not parse, the document exactly as given is parsed so that the error (with its line number) or
    the success is the original's.
    """
    if not xml or xml.isspace():
        raise JatsError("empty_file", f"{where}: file is empty")
    edited = _elide_unread(xml) if edit else xml
    unset = _unset_article_namespace(edited) if edit else None
    if unset is not None:
        edited, namespace = unset
    else:
        namespace = None
    strict = _parser(recover=False)
    if edited is not xml:
        try:
            return etree.fromstring(edited, strict), namespace
        except etree.XMLSyntaxError:
            pass
    try:
        return etree.fromstring(xml, strict), None
    except etree.XMLSyntaxError as exc:
        if not _only_namespace_errors(strict):
            raise JatsError(_syntax_reason(exc), f"{where}: {exc}") from None
        root = etree.fromstring(xml, _parser(recover=True))
        if root is None:
            raise JatsError("malformed_xml", f"{where}: {exc}") from None
        return root, None


# A namespaced article (OAI-PMH responses put JATS in a default namespace) used to be renamed
# element by element after parsing, which cost more than parsing the file. Instead the default
# namespace declared on the <article> start tag is emptied in the bytes (``xmlns="…"`` →
# ``xmlns=""``), so libxml2 builds the elements without it; the few elements that could still be in
# that namespace (a nested redeclaration, a prefix bound to it) are renamed afterwards, so the tree
# is exactly the renamed one. Only done where the edit is certain to hit the start tag of the
# article that is read: nothing before it can hide markup (no comment, CDATA section, DOCTYPE or
# processing instruction other than the XML declaration), no prefixed ``…:article`` comes earlier,
# and the start tag tokenises completely; the namespace must be plain ASCII without references or
# whitespace, so that the bytes are the namespace name itself.
_ARTICLE_OPEN = b"<article"
_ATTRIBUTE_RE = re.compile(rb"""[ \t\r\n]+([^ \t\r\n=/>]+)[ \t\r\n]*=[ \t\r\n]*(?:"([^"]*)"|'([^']*)')""")
_TAG_CLOSE_RE = re.compile(rb"[ \t\r\n]*/?>")


def _unset_article_namespace(xml: bytes) -> tuple[bytes, str] | None:
    """``xml`` with the default namespace of its first <article> start tag emptied, and that namespace.

    None when there is no such declaration or the edit could not be proven safe.
    """
    start = xml.find(_ARTICLE_OPEN)
    if start < 0:
        return None
    pos = start + len(_ARTICLE_OPEN)
    gt = xml.find(b">", pos)
    # cheap filter: every xmlns in the tag is a prefix declaration (bare JATS files) -> nothing to do
    if gt < 0 or xml.count(b"xmlns", pos, gt) == xml.count(b"xmlns:", pos, gt):
        return None
    if pos >= len(xml) or xml[pos] not in _NAME_END:
        return None
    prolog = 0
    if xml.startswith(b"<?xml"):
        prolog = xml.find(b"?>") + 2
        if prolog < 2:
            return None
    if (
        xml.find(b"<!", prolog, start) >= 0
        or xml.find(b"<?", prolog, start) >= 0
        or xml.find(b":article", 0, start) >= 0
    ):
        return None
    span = None
    while True:
        m = _ATTRIBUTE_RE.match(xml, pos)
        if m is None:
            break
        if m.group(1) == b"xmlns":
            if span is not None:
                return None  # duplicate attribute: let the parser report it
            span = m.span(2) if m.group(2) is not None else m.span(3)
        pos = m.end()
    if span is None or _TAG_CLOSE_RE.match(xml, pos) is None:
        return None
    value = xml[span[0] : span[1]]
    if not value.isascii() or b"&" in value or value.split() != [value]:
        return None
    return xml[: span[0]] + xml[span[1] :], value.decode("ascii")


def _rename_namespace(article: etree._Element, namespace: str) -> None:
    """Drop ``namespace`` from every element below ``article`` that is still in it."""
    cut = len(namespace) + 2
    for el in article.iter(f"{{{namespace}}}*"):
        el.tag = el.tag[cut:]


# Parsing is most of the cost of an article, and about a third of a PMC article's bytes are its
# reference list, which nothing here reads. So the last <ref-list> (the back matter's) is cut out of
# the bytes before parsing, conservatively: only when its tags balance, the document is
# ASCII-compatible, and the span holds no figure (``<fig``) and no start or end of a comment, CDATA
# section or declaration (``<!``, ``-->``), so the cut can neither start nor end inside one. (When
# no ``!`` follows the root start tag there is no comment at all: one memchr replaces two scans.)
# Nothing inside a reference list is read anyway (``_NO_CITE``), so the result is that of a full
# parse, and a cut that breaks the document makes ``_parse_root`` parse the original. The one
# difference: a syntax error confined to the reference list goes unnoticed. Matching backwards from
# the end keeps the byte scans within the reference list. Tables are emptied as well (see
# ``_table_contents``): found with a few memchr-speed scans, that pays for itself several times.
_REF_OPEN, _REF_CLOSE = b"<ref-list", b"</ref-list"
# rfind, not find, for the guards (``<!``, ``-->``): CPython's reverse search is markedly faster than
# its forward one on these needles.
_UTF16_BOMS = (b"\xfe\xff", b"\xff\xfe")
_ROOT_START_RE = re.compile(rb"<[A-Za-z_:]")
_NAME_END = frozenset(b" \t\r\n/>")
_START_TAG_REST_RE = re.compile(rb"""(?:[^>"']|"[^"]*"|'[^']*')*>""")


def _elide_unread(xml: bytes) -> bytes:
    """``xml`` without its last reference list and with its tables emptied (see above).

    The same object when nothing is cut.
    """
    head = xml[:4]
    if head[:2] in _UTF16_BOMS or b"\x00" in head:
        return xml  # UTF-16/32: byte patterns would not match anyway
    root = _ROOT_START_RE.search(xml)
    root_start = root.start() if root else 0
    span = _last_reference_span(xml)
    if span is not None:
        start, end = span
        if xml.rfind(b"<fig", start, end) >= 0 or (
            xml.find(b"!", root_start, end) >= 0
            and (xml.rfind(b"<!", start, end) >= 0 or xml.rfind(b"-->", start, end) >= 0)
        ):
            span = None
    if span is None:
        cuts = _table_contents(xml, root_start, [(root_start, len(xml))])
    else:  # tables before and after the reference list (floats at the end)
        cuts = _table_contents(xml, root_start, [(root_start, span[0]), (span[1], len(xml))])
        cuts.append(span)
        cuts.sort()
    if not cuts:
        return xml
    pieces = []
    pos = 0
    for start, end in cuts:
        pieces.append(xml[pos:start])
        pos = end
    pieces.append(xml[pos:])
    return b"".join(pieces)


# Tables are about a quarter of a PMC article's (reference-less) bytes and nothing reads their
# content: flattening skips <table-wrap>, and only figures, figure xrefs and graphics are looked for
# inside other elements. So the content of each table is cut too, keeping its start and end tags
# (the tree around it, and every text and tail, stay exactly as they were), when the content cannot
# matter: no ``fig`` (figures, figure groups, figure xrefs), ``graphic`` or ``article`` anywhere in
# it, no nested table, comment, CDATA section or processing instruction in it, no ``ref-type``
# value written with a reference, no entity declared in the document, and the table not inside a
# comment or CDATA section. A table inside a formula (whose text is read whole) or inside the
# front matter is found after parsing (``_emptied_table_misplaced``) and the file parsed again
# without any cut. As with the reference list, a syntax error inside a table goes unnoticed.
_TABLE_OPEN, _TABLE_CLOSE = b"<table-wrap", b"</table-wrap"
_TABLE_KEEP = (b"fig", b"graphic", b"article")
_MARKUP_IN_TEXT = (b"<!", b"<?", b"?>")
_REF_TYPE_VALUE_RE = re.compile(rb"""ref-type[ \t\r\n]*=[ \t\r\n]*(?:"([^"<&]*)"|'([^'<&]*)')""")


def _table_contents(xml: bytes, root_start: int, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(start, end) of the content of every table-wrap in the ``ranges`` that can be emptied, in order.

    Walks backwards with ``rfind`` (markedly faster than ``find`` in CPython, see above). Between
    two consecutive ``<table-wrap`` start tags there is no other, so the first ``</table-wrap``
    after a start tag and before the next one closes that table (and where there is none, the next
    table is nested in it: it is left alone).
    """
    found = [(lo, hi, pos) for lo, hi in ranges if (pos := _rfind_tag(xml, _TABLE_OPEN, lo, hi)) >= 0]
    if not found or xml.find(b"<!ENTITY", 0, root_start) >= 0:
        return []
    hidden = _markup_sections(xml, root_start)
    if hidden is None:
        return []
    spans = []
    for lo, limit, pos in reversed(found):
        while pos >= 0:
            m = _START_TAG_REST_RE.match(xml, pos + len(_TABLE_OPEN))
            if (
                m is not None
                and xml[m.end() - 2] != 47  # "/": <table-wrap/>
                and xml.find(b"ref-type", pos, m.end()) < 0  # see _figures_and_fig_xrefs
                and not any(a < pos < b for a, b in hidden)
            ):
                start = m.end()
                end = _find_tag(xml, _TABLE_CLOSE, start, limit)
                if end >= 0 and _unread_content(xml, start, end):
                    spans.append((start, end))
            limit = pos
            pos = _rfind_tag(xml, _TABLE_OPEN, lo, pos)
    spans.reverse()
    return spans


def _find_tag(xml: bytes, prefix: bytes, start: int, end: int) -> int:
    """First ``prefix`` (``<name`` or ``</name``) in ``xml[start:end]`` where the tag name ends."""
    i = xml.find(prefix, start, end)
    while i >= 0 and (i + len(prefix) >= len(xml) or xml[i + len(prefix)] not in _NAME_END):
        i = xml.find(prefix, i + 1, end)
    return i


def _markup_sections(xml: bytes, lo: int) -> list[tuple[int, int]] | None:
    """(start, end) of every comment and CDATA section after ``lo``; None if one is not closed.

    Looks for ``!`` (a memchr) rather than ``<!``: there are few of either.
    """
    sections = []
    i = xml.find(b"!", lo)
    while i >= 0:
        if i == 0 or xml[i - 1] != 60:  # "<"
            i = xml.find(b"!", i + 1)
            continue
        if xml.startswith(b"<!--", i - 1):
            end = xml.find(b"-->", i + 3)
        elif xml.startswith(b"<![CDATA[", i - 1):
            end = xml.find(b"]]>", i + 8)
        else:
            return None  # a declaration after the root start: malformed, cut nothing
        if end < 0:
            return None
        sections.append((i - 1, end + 3))
        i = xml.find(b"!", end + 3)
    return sections


def _unread_content(xml: bytes, start: int, end: int) -> bool:
    """Whether ``xml[start:end]`` (a table's content) holds nothing that is read (see above)."""
    # comments, CDATA sections, processing instructions: only looked for where a memchr-fast "!" or
    # "?" (both rare in tables) says there may be one
    if (xml.rfind(b"!", start, end) >= 0 or xml.rfind(b"?", start, end) >= 0) and any(
        xml.rfind(mark, start, end) >= 0 for mark in _MARKUP_IN_TEXT
    ):
        return False
    for needle in _TABLE_KEEP:
        if xml.rfind(needle, start, end) >= 0:
            return False
    if xml.rfind(b"&", start, end) >= 0:  # a reference in a ref-type value could spell "fig"
        i = xml.find(b"ref-type", start, end)
        while i >= 0:
            m = _REF_TYPE_VALUE_RE.match(xml, i, end)
            if m is None:
                return False
            i = xml.find(b"ref-type", m.end(), end)
    return True


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


def _only_namespace_errors(parser: etree.XMLParser) -> bool:
    """True when the document just parsed is well-formed and only namespace declarations are missing.

    Reads the parser's own log, which holds that parse alone: the exception's ``error_log`` can
    also carry errors of earlier, unrelated parses in the same thread, which made the answer
    depend on what the process had parsed before.
    """
    errors = [e for e in parser.error_log if e.level >= etree.ErrorLevels.ERROR]
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

    Only needed before ``itertext`` on MathML/TeX; everywhere else ``_add_child`` reads the nodes.
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


# Flattening appends to a plain list of strings (joined once at the end) through two module-level
# functions rather than methods of a helper object: bound-method lookups and attribute access were
# a measurable share of the cost on short captions.


def _add_content(parts: list[str], el: etree._Element) -> None:
    """Append the text of ``el`` and its descendants (not its tail).

    libxml2's text serialisation is used for every subtree without special descendants; the small
    recursive walk only runs where blocks need spaces, floats must be skipped, MathML must be read
    without its annotations, or ``<alternatives>`` must give one representation. A childless
    element (``len`` also counts entity references) is just its ``text``: no walk, no C call.
    """
    if not len(el):
        text = el.text
        if text:
            parts.append(text)
    elif _is_plain(el):
        parts.append(_plain_text(el))
    else:
        text = el.text
        if text:
            parts.append(text)
        for child in el:
            _add_child(parts, child)
            tail = child.tail
            if tail:
                parts.append(tail)


def _add_child(parts: list[str], el: etree._Element) -> None:
    """Append the text of one child element (not its tail), according to its kind.

    Blocks are tested first: in captions and paragraphs they are the common case.
    """
    tag = el.tag
    if tag in _BLOCK_TAGS:
        parts.append(" ")
        _add_content(parts, el)
        parts.append(" ")
    elif tag is etree.Entity:
        text = _entity_text(el)
        if text:
            parts.append(text)
    elif not isinstance(tag, str) or tag in _SKIP_TAGS:
        return
    elif tag == _MML_MATH:
        _replace_entity_refs(el)
        parts.extend(el.itertext(*_MML_TOKENS, with_tail=False))
    elif tag == "tex-math":
        _replace_entity_refs(el)
        text = _clean_tex("".join(el.itertext()))
        if text:
            parts.append(text)
    elif tag == "alternatives":
        best = _preferred_alternative(el)
        if best is None:
            _add_content(parts, el)
        else:
            _add_child(parts, best)
    else:
        _add_content(parts, el)


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
        text = el.text
        return " ".join(text.split()) if text else ""
    parts: list[str] = []
    _add_content(parts, el)
    return " ".join("".join(parts).split())


# ----------------------------------------------------------------------------------- sentences

# Candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace.
_BOUNDARY_RE = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+")
_CLOSERS = frozenset("\"'\u201d\u2019)]")  # the closers of _BOUNDARY_RE
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
    # The usual case, decided without splitting: a word ending in 7+ letters is neither a known
    # abbreviation (all shorter, and lower() never shortens) nor an initial/"e.g." (dotted).
    if i >= 7 and text[i - 7 : i].isalpha():
        return True
    words = text[max(0, i - 30) : i].rsplit(None, 1)
    return not (words and _is_abbreviation(words[-1]))


def _sentence_starts(text: str) -> list[int]:
    """Offsets where sentences start (see ``_splits_at``)."""
    return [0] + [m.end() for m in _BOUNDARY_RE.finditer(text) if _splits_at(text, m)]


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


def _sentence_at(text: str, offset: int) -> str:
    """The sentence of ``text`` containing ``offset``, normalised like ``split_sentences``' ones.

    It starts after the nearest candidate boundary ending at or before ``offset`` that really
    splits (``_splits_at``) and ends with the first one ending after it; only those neighbours are
    tested. A candidate (a ``_BOUNDARY_RE`` match) is one ``[.!?]`` followed by closers and
    whitespace only, so the set of candidates does not depend on where matching starts: the ones
    before ``offset`` are found by looking back from it for ``[.!?]``, the ones after it by
    searching from ``offset`` (moved back over a boundary that straddles it). The regular
    expression never scans the paragraph before the sentence, nor past its end.
    """
    start = 0
    dot, bang, question = text.rfind(".", 0, offset), text.rfind("!", 0, offset), text.rfind("?", 0, offset)
    while True:
        i = max(dot, bang, question)
        if i < 0:
            break
        m = _BOUNDARY_RE.match(text, i)
        if m is not None and m.end() <= offset and _splits_at(text, m):
            start = m.end()
            break
        if i == dot:
            dot = text.rfind(".", 0, i)
        elif i == bang:
            bang = text.rfind("!", 0, i)
        else:
            question = text.rfind("?", 0, i)
    lo = offset
    while lo > start and (text[lo - 1] in _CLOSERS or text[lo - 1].isspace()):
        lo -= 1
    if lo > start and text[lo - 1] in ".!?":
        lo -= 1
    stop = len(text)
    search = _BOUNDARY_RE.search  # a loop of searches: creating a finditer costs more than one search
    m = search(text, lo)
    while m is not None:
        end = m.end()
        if end > offset and _splits_at(text, m):
            stop = end
            break
        m = search(text, end)
    return _collapse_spaces(text[start:stop])


def _collapse_spaces(text: str) -> str:
    """``_norm``, skipping the split and join for text that is already normalised (most sentences).

    Every whitespace character but the ASCII space is non-printable, so printable text without a
    double or an outer space has nothing to collapse.
    """
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text
    return " ".join(text.split())


def _xref_offsets(raw: str, xrefs: list[etree._Element]) -> list[int] | None:
    """Each xref's offset in ``raw``, the text of its plain block, found without touching the tree.

    In a plain block (all text in document order, nothing skipped or spaced) the text of a
    childless xref followed by its tail appears verbatim where the xref is; where that string
    occurs exactly once, its position is the offset a marker would have had. None sends the block
    to the marker method (an xref with children or without text, a string found twice).
    """
    offsets = []
    for xref in xrefs:
        if len(xref):
            return None
        text, tail = xref.text, xref.tail
        key = (text + tail if tail else text) if text else tail
        if not key:
            return None
        h = raw.find(key)
        if h < 0 or raw.find(key, h + 1) >= 0:
            return None
        offsets.append(h)
    return offsets


def _has_markers(raw: str, count: int) -> bool:
    """Whether one of the first ``count`` marker characters already occurs in ``raw``.

    (Cheap: ``in`` fails at once for a character wider than any in the string.)
    """
    return not raw.isascii() and any(chr(_MARK_BASE + k) in raw for k in range(count))


def _cited_sentences(block: etree._Element, xrefs: list[etree._Element]) -> list[str]:
    """The sentence of ``block`` around each xref (same order; "" where it cannot be located).

    Each xref's offset in the flattened block comes from ``_xref_offsets`` when it can; otherwise a
    marker character is put in front of each xref's text, the block flattened, and the markers
    looked up and removed. A marker character already present makes the block ambiguous: no
    sentence rather than a wrong one (the same answer whichever method found the offsets).
    """
    count = len(xrefs)
    if count > _MARK_MAX:
        return [""] * count
    plain = _is_plain(block)  # (the markers change no element, so this holds for both methods)
    if plain:
        raw = _plain_text(block)
        offsets = _xref_offsets(raw, xrefs)
        if offsets is not None:
            if _has_markers(raw, count):
                return [""] * count
            return [_sentence_at(raw, h) for h in offsets]
    saved = [x.text for x in xrefs]
    for k, x in enumerate(xrefs):
        x.text = chr(_MARK_BASE + k) + (saved[k] or "")
    try:
        if plain:
            raw = _plain_text(block)
        else:
            parts: list[str] = []
            _add_content(parts, block)
            raw = "".join(parts)
    finally:
        for x, text in zip(xrefs, saved, strict=True):
            x.text = text
    hits = [raw.find(chr(_MARK_BASE + k)) for k in range(count)]
    if any(h >= 0 and raw.count(raw[h], h + 1) for h in hits):
        return [""] * count  # a marker character was already in the text: ambiguous
    found = sorted(h for h in hits if h >= 0)  # a missing one sits in an unread part (a float)
    text = "".join(raw[a + 1 : b] for a, b in zip([-1, *found], [*found, len(raw)], strict=True))
    # a marker's offset in the text without markers: its position minus the markers before it
    return [_sentence_at(text, h - bisect_left(found, h)) if h >= 0 else "" for h in hits]


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
    attached in document order of the xrefs, once per figure (figures start with no sentences,
    so membership in the short list is the de-duplication).
    """
    cites: list[tuple[etree._Element, list[Figure]]] = []
    by_block: dict[etree._Element, list[etree._Element]] = {}
    for xref in xrefs:
        rid = xref.get("rid")
        if not rid:
            continue
        rids = rid.split()
        # (one id: the list in targets itself, never empty; several: their figures, concatenated)
        figures = targets.get(rids[0]) if len(rids) == 1 else [fig for r in rids for fig in targets.get(r, ())]
        if not figures:
            continue
        block = _citing_block(xref)
        if block is not None:
            cites.append((xref, figures))
            block_xrefs = by_block.get(block)
            if block_xrefs is None:
                by_block[block] = [xref]
            else:
                block_xrefs.append(xref)
    sentence_of: dict[etree._Element, str] = {}
    for block, block_xrefs in by_block.items():
        sentence_of.update(zip(block_xrefs, _cited_sentences(block, block_xrefs), strict=True))
    for xref, figures in cites:
        sentence = sentence_of[xref]
        if sentence:
            for fig in figures:
                sentences = fig.citing_sentences
                if sentence not in sentences:
                    sentences.append(sentence)


# ------------------------------------------------------------------------------------- figures


def _caption_parts(caption: etree._Element | None) -> tuple[str, str]:
    """(title, full caption) of a ``<caption>``; the title is joined to the text with ". "."""
    if caption is None:
        return "", ""
    title_el = None  # the first <title> child; any later one is read as text
    parts: list[str] = []
    text = caption.text
    if text:
        parts.append(text)
    for child in caption:
        tag = child.tag
        if title_el is None and tag == "title":
            title_el = child
        elif tag == "p" and not len(child):  # the usual caption paragraph, inlined
            parts.append(" ")
            text = child.text
            if text:
                parts.append(text)
            parts.append(" ")
        else:
            _add_child(parts, child)
        tail = child.tail
        if tail:
            parts.append(tail)
    title = _flatten(title_el)
    rest = " ".join("".join(parts).split())
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


def _figures_and_fig_xrefs(
    article: etree._Element,
) -> tuple[list[etree._Element], list[etree._Element], list[etree._Element]]:
    """Every ``<fig>``, figure ``<xref>`` and ``<table-wrap>``, from one walk (walks are costly).

    (A compiled XPath doing the same selection in C was measured 2-7× slower than this loop.) The
    tables only serve ``_emptied_table_misplaced``; as before, an element of either other kind with
    a figure ``ref-type`` counts as a figure xref.
    """
    figs, xrefs, tables = [], [], []
    for el in article.iter("fig", "xref", "table-wrap"):
        ref_type = el.get("ref-type")  # first: most elements are (bibliography) xrefs
        if ref_type is None:
            tag = el.tag
            if tag == "fig":
                figs.append(el)
            elif tag == "table-wrap":
                tables.append(el)
        elif ref_type in _FIG_REF_TYPES and el.tag != "table-wrap":
            xrefs.append(el)
    return figs, xrefs, tables


# Where an emptied table's content would have been read after all (see ``_table_contents``).
_TABLE_READERS = frozenset({"tex-math", _MML_MATH, "front"})


def _emptied_table_misplaced(tables: list[etree._Element]) -> bool:
    """Whether a table without content sits in a formula or the front matter.

    Formulas are read with ``itertext`` (everything below them) and the front matter with a few
    searches below its elements, so a table emptied there could change the result: the caller then
    parses the document again without cuts. (Never the case in real JATS; checked all the same.)
    """
    for table in tables:
        if not len(table) and not table.text:
            for anc in table.iterancestors():
                if anc.tag in _TABLE_READERS:
                    return True
    return False


def _extract_figures(figs: list[etree._Element]) -> tuple[list[Figure], dict[str, list[Figure]]]:
    """Records for the figures plus a map from fig and fig-group ids to the figures they designate.

    Label and caption come from one loop over the figure's children (cheaper than one lookup per
    name); the set of real ids is only built when a figure lacks one.
    """
    used: set[str] | None = None
    group_captions: dict[etree._Element, tuple[str, str]] = {}
    figures: list[Figure] = []
    targets: dict[str, list[Figure]] = {}
    for n, fig in enumerate(figs, start=1):
        own_id = fig.get("id")
        own_id = own_id.strip() if own_id else ""
        if own_id:
            fig_id = own_id
        else:
            if used is None:
                used = {f.get("id", "").strip() for f in figs} - {""}
            fig_id = _fresh_id(f"fig{n}", used)
        parent = fig.getparent()
        groups = _group_chain(fig) if parent is not None and parent.tag == "fig-group" else []
        label_el = caption_el = None
        for child in fig:
            tag = child.tag
            if tag == "caption":
                if caption_el is None:
                    caption_el = child
            elif tag == "label" and label_el is None:
                label_el = child
        title, caption = _caption_parts(caption_el)
        if not caption and groups:
            title, caption = _inherited_caption(groups, group_captions)
        figure = Figure(
            fig_id=fig_id, label=_flatten(label_el), title=title, caption=caption, graphics=_graphics(fig)
        )
        figures.append(figure)
        if own_id:
            _add_target(targets, own_id, figure)
        for group in groups:
            group_id = group.get("id", "").strip()
            if group_id:
                _add_target(targets, group_id, figure)
    return figures, targets


def _add_target(targets: dict[str, list[Figure]], key: str, figure: Figure) -> None:
    """``targets.setdefault(key, []).append(figure)`` without building a list for every call."""
    found = targets.get(key)
    if found is None:
        targets[key] = [figure]
    else:
        found.append(figure)


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


def _first_child(el: etree._Element | None, tag: str) -> etree._Element | None:
    """``_child`` for an element whose wanted child usually comes first (front, titles).

    A plain loop that stops at the match: cheaper than setting up a tag-filtered iterator then.
    """
    if el is not None:
        for child in el:
            if child.tag == tag:
                return child
    return None


def _article_ids(ids: list[etree._Element]) -> tuple[str, str, str]:
    """(pmcid as ``PMC<digits>``, pmid, doi) from the ``<article-id>`` elements.

    The regular expressions only run on values that need them: a bare number is a PMCID as is, and
    only a DOI starting with ``d``/``h`` can carry a prefix (no other character case-folds to those).
    """
    by_type: dict[str, str] = {}
    for el in ids:
        if len(el):
            value = _flatten(el)
        else:  # _flatten of a leaf, inlined: ids are leaves
            value = el.text
            value = " ".join(value.split()) if value else ""
        if value:
            kind = el.get("pub-id-type")
            kind = kind.strip().lower() if kind else ""
            if kind not in by_type:
                by_type[kind] = value
    pmcid = ""
    for kind in _PMCID_TYPES:
        value = by_type.get(kind)
        if not value:
            continue
        if value.isdecimal():  # exactly what \d+ matches
            pmcid = "PMC" + value
            break
        m = _PMCID_RE.match(value)
        if m:
            pmcid = "PMC" + m.group(1)
            break
    doi = by_type.get("doi", "")
    if doi and doi[0] in "dDhH":
        doi = _DOI_PREFIX_RE.sub("", doi)
    return pmcid, by_type.get("pmid", ""), doi


def _journal(journal_meta: etree._Element | None) -> str:
    """journal-title (JATS ≥ 1.0 groups it, 2.3 does not), else the NLM or ISO abbreviation."""
    if journal_meta is None:
        return ""
    group = title_el = None  # first of each, from one loop over the children
    for el in journal_meta:
        tag = el.tag
        if tag == "journal-title-group":
            if group is None:
                group = el
        elif tag == "journal-title" and title_el is None:
            title_el = el
    title = _flatten(_first_child(group, "journal-title")) or _flatten(title_el)
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


def _year(dates: list[etree._Element]) -> int | None:
    """Year of the preferred ``<pub-date>`` (document order breaks ties)."""
    best: tuple[int, int, int] | None = None
    for order, el in enumerate(dates):
        year = _child(el, "year")
        text = (year.text if year is not None else None) or el.get("iso-8601-date") or ""
        if len(text) == 4 and text.isdecimal():  # the usual <year>2011</year>: no regex needed
            value = int(text)
        else:
            m = _YEAR_RE.search(text)
            if m is None:
                continue
            value = int(m.group())
        key = (_pub_date_rank(el), order, value)
        if best is None or key < best:
            best = key
    return best[2] if best is not None else None


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
        parts = [lic.text or ""]
        for child in lic:
            if child.tag != _ALI_LICENSE_REF:
                _add_child(parts, child)
            tail = child.tail
            if tail:
                parts.append(tail)
        yield _norm("".join(parts))
    for lic in licenses:
        yield lic.get("license-type", "")


def _license(permissions: etree._Element | None) -> tuple[str, str]:
    """(normalised code, raw evidence) — the first candidate that names a specific license wins."""
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


def _fill_metadata(record: Article, article: etree._Element, ids_only: bool = False) -> None:
    """Metadata from the article's own ``<front>`` only (never from a sub-article).

    One loop over ``<front>``'s and one over ``<article-meta>``'s children find every element read
    here (a lookup per name costs more than looking at each of these few children once).
    ``ids_only`` stops after the identifiers.
    """
    front = _first_child(article, "front")
    journal_meta = meta = None
    for el in front if front is not None else ():
        tag = el.tag
        if tag == "article-meta":
            if meta is None:
                meta = el
        elif tag == "journal-meta" and journal_meta is None:
            journal_meta = el
    ids: list[etree._Element] = []
    dates: list[etree._Element] = []
    title_group = permissions = None
    for el in meta if meta is not None else ():
        tag = el.tag
        if tag == "article-id":
            ids.append(el)
        elif tag == "pub-date":
            dates.append(el)
        elif tag == "title-group":
            if title_group is None:
                title_group = el
        elif tag == "permissions" and permissions is None:
            permissions = el
    record.pmcid, record.pmid, record.doi = _article_ids(ids)
    if ids_only:
        return
    record.article_type = article.get("article-type", "").strip()
    record.journal = _journal(journal_meta)
    record.title = _flatten(_first_child(title_group, "article-title"))
    record.year = _year(dates)
    record.license, record.license_raw = _license(permissions)


def parse_article(
    xml: bytes, source: str = "", *, metadata: bool = True, citing_sentences: bool = True
) -> Article:
    """Parse one JATS document (bare ``<article>``, ``<pmc-articleset>`` or OAI-PMH wrapped).

    The first element named ``article`` (any namespace) is used. Raises :class:`JatsError` with
    reason ``empty_file``, ``malformed_xml``, ``invalid_encoding`` or ``no_article``; ``source``
    only serves to name the input in the error detail.

    The data build needs everything. A caption dump does not: ``metadata=False`` fills only the
    identifiers (pmcid, pmid, doi) and ``citing_sentences=False`` leaves those lists empty; after
    the parse itself, these two are most of the remaining cost (see ``biomedclip data captions``).
    The figures and captions are the same either way.
    """
    where = source or "<xml>"
    article, figs, xrefs = _open_article(xml, where)
    record = Article()
    _fill_metadata(record, article, ids_only=not metadata)
    record.figures, targets = _extract_figures(figs)
    if citing_sentences and targets and xrefs:
        _attach_citing_sentences(xrefs, targets)
    return record


def _open_article(
    xml: bytes, where: str, edit: bool = True
) -> tuple[etree._Element, list[etree._Element], list[etree._Element]]:
    """The article element (in no namespace), its figures and its figure xrefs."""
    root, namespace = _parse_root(xml, where, edit)
    article = root if root.tag == "article" else next(root.iter("{*}article"), None)
    if article is None:
        root_name = etree.QName(root).localname
        raise JatsError("no_article", f"{where}: no <article> element (root element is <{root_name}>)")
    if namespace is not None and article.tag == "article":
        _rename_namespace(article, namespace)
    else:
        _strip_own_namespace(article)
    figs, xrefs, tables = _figures_and_fig_xrefs(article)
    if edit and tables and _emptied_table_misplaced(tables):
        return _open_article(xml, where, edit=False)
    return article, figs, xrefs
