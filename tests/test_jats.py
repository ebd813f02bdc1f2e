"""JATS parsing: wrappers, figures and captions, citing sentences, metadata, licenses, bad input.

Hand-written snippets pin each behaviour; the real PMC files (skipped when the shared folder is
absent) check that nothing is lost on genuine input, against values read with other methods.
"""

from __future__ import annotations

import pickle
import random
import re
import tarfile
import time
from bisect import bisect_right
from pathlib import Path

import pytest
from lxml import etree

from biomedclip.data import jats
from biomedclip.data.jats import JatsError, normalize_license, parse_article, split_sentences
from biomedclip.data.records import ItemError

XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
MML = 'xmlns:mml="http://www.w3.org/1998/Math/MathML"'
DOCTYPE = (
    '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.0'
    ' 20120330//EN" "JATS-archivearticle1.dtd">\n'
)
FRONT = """<front><journal-meta><journal-id journal-id-type="nlm-ta">Test J</journal-id>
<journal-title-group><journal-title>Journal of Tests</journal-title></journal-title-group></journal-meta>
<article-meta><article-id pub-id-type="pmid">111</article-id><article-id pub-id-type="pmc">222</article-id>
<article-id pub-id-type="doi">10.1/xyz</article-id>
<title-group><article-title>A <italic>tiny</italic> article</article-title></title-group>
<pub-date pub-type="collection"><year>2010</year></pub-date>
<pub-date pub-type="epub"><day>1</day><month>2</month><year>2011</year></pub-date>
<permissions><license xlink:href="http://creativecommons.org/licenses/by/4.0/"><license-p>CC BY</license-p>
</license></permissions></article-meta></front>"""
FIG = """<fig id="f1"><label>Figure 1</label><caption><title>Overview</title><p>First part.</p>
<p>Second part.</p></caption><graphic xlink:href="g1"/></fig>"""


def article(body: str = "", front: str = FRONT, back: str = "", attrs: str = "") -> str:
    """An <article> element (text, so it can be wrapped) with the usual namespace declarations."""
    return (
        f'<article {XLINK} {MML} article-type="research-article"{attrs}>{front}'
        f"<body>{body}</body><back>{back}</back></article>"
    )


def doc(body: str = "", **kw: str) -> bytes:
    return (DOCTYPE + article(body, **kw)).encode()


def fig_by_id(art: jats.Article, fig_id: str) -> jats.Figure:
    return next(f for f in art.figures if f.fig_id == fig_id)


# ----------------------------------------------------------------------------------- wrappers


def _check_tiny(art: jats.Article) -> None:
    assert art.pmcid == "PMC222" and art.pmid == "111" and art.doi == "10.1/xyz"
    assert art.title == "A tiny article"
    assert [f.fig_id for f in art.figures] == ["f1"]
    assert art.figures[0].graphics == ["g1"]
    assert art.figures[0].caption == "Overview. First part. Second part."


def test_bare_article_with_doctype() -> None:
    _check_tiny(parse_article(doc(f"<sec><p>Text.</p>{FIG}</sec>")))


def test_pmc_articleset_takes_first_article() -> None:
    second = article("<fig id='other'><caption><p>x</p></caption></fig>").replace("222", "999")
    xml = f"<pmc-articleset>{article(FIG)}{second}</pmc-articleset>".encode()
    _check_tiny(parse_article(xml))


@pytest.mark.parametrize("jats_ns", ["https://jats.nlm.nih.gov/ns/archiving/1.3/", None])
def test_oai_pmh_namespaced(jats_ns: str | None) -> None:
    # with jats_ns=None the article inherits the OAI default namespace: it must still be found
    inner = article(FIG, attrs=f' xmlns="{jats_ns}"' if jats_ns else "")
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><responseDate>2024-01-01</responseDate>'
        "<GetRecord><record><header><identifier>oai:pubmedcentral.nih.gov:222</identifier></header>"
        f"<metadata>{inner}</metadata></record></GetRecord></OAI-PMH>"
    ).encode()
    _check_tiny(parse_article(xml))


def test_oai_pmcid_types_and_ali_license() -> None:
    front = FRONT.replace('pub-id-type="pmc">222', 'pub-id-type="pmcid">PMC222').replace(
        '<license xlink:href="http://creativecommons.org/licenses/by/4.0/">',
        '<license><ali:license_ref xmlns:ali="http://www.niso.org/schemas/ali/1.0/">'
        "https://creativecommons.org/licenses/by-nc-nd/4.0/</ali:license_ref>",
    )
    art = parse_article(doc(front=front))
    assert art.pmcid == "PMC222"
    assert (art.license, art.license_raw) == (
        "cc-by-nc-nd",
        "https://creativecommons.org/licenses/by-nc-nd/4.0/",
    )


@pytest.mark.parametrize("kind,value", [("pmcaid", "222"), ("pmc-uid", "222"), ("pmc", "PMC222")])
def test_pmcid_normalised(kind: str, value: str) -> None:
    front = FRONT.replace('pub-id-type="pmc">222', f'pub-id-type="{kind}">{value}')
    assert parse_article(doc(front=front)).pmcid == "PMC222"


# ------------------------------------------------------------------------------------ figures


def test_figures_everywhere_in_document_order_and_sub_article() -> None:
    body = "<sec><p>a</p><fig id='b1'><caption><p>body</p></caption></fig></sec>"
    back = "<app-group><app><fig id='k1'><caption><p>appendix</p></caption></fig></app></app-group>"
    xml = (
        f"{DOCTYPE}<article {XLINK} {MML}>{FRONT}<body>{body}</body><back>{back}</back>"
        "<floats-group><fig id='fl1'><caption><p>float</p></caption></fig></floats-group>"
        "<sub-article><front-stub><article-id pub-id-type='doi'>10.9/sub</article-id>"
        "<title-group><article-title>Reply</article-title></title-group></front-stub>"
        "<body><fig id='s1'><caption><p>sub</p></caption></fig></body></sub-article></article>"
    ).encode()
    art = parse_article(xml)
    assert [f.fig_id for f in art.figures] == ["b1", "k1", "fl1", "s1"]
    assert (art.doi, art.title) == ("10.1/xyz", "A tiny article")  # not the sub-article's


def test_missing_ids_are_synthesised_unique() -> None:
    body = (
        "<fig><caption><p>one</p></caption></fig>"
        "<fig id='fig2'><caption><p>two</p></caption></fig>"
        "<fig><caption><p>three</p></caption></fig>"
    )
    ids = [f.fig_id for f in parse_article(doc(body)).figures]
    assert ids[1] == "fig2" and ids[0] == "fig1"
    assert len(set(ids)) == 3 and ids[2] not in ("fig1", "fig2")


def test_fig_group_caption_inherited_and_group_xref() -> None:
    body = (
        "<p>Panels are shown (<xref ref-type='fig' rid='g1'>Fig. 1</xref>). Next.</p>"
        "<fig-group id='g1'><label>Figure 1</label>"
        "<caption><title>Group title</title><p>Shared.</p></caption>"
        "<fig id='g1a'><graphic xlink:href='a'/></fig>"
        "<fig id='g1b'><caption><p>Own caption.</p></caption><graphic xlink:href='b'/></fig></fig-group>"
    )
    art = parse_article(doc(body))
    a, b = fig_by_id(art, "g1a"), fig_by_id(art, "g1b")
    assert (a.title, a.caption) == ("Group title", "Group title. Shared.")
    assert (b.title, b.caption) == ("", "Own caption.")
    assert a.citing_sentences == b.citing_sentences == ["Panels are shown (Fig. 1)."]


def test_full_caption_with_inline_markup_formulas_lists_and_entities() -> None:
    body = """<fig id="f1"><label>Fig. 1</label><caption><title>Lip-HSL <italic>in vitro</italic></title>
    <p>M<italic>m</italic>PPOX at 37&#x000b0;C&nbsp;with Ni<sup>2+</sup> and CO<sub>2</sub>
    (<xref ref-type="bibr" rid="r1">12</xref>), see <ext-link ext-link-type="uri"
    xlink:href="http://x.org">x.org</ext-link> and <named-content content-type="gene">TP53</named-content>;
    &alpha;-helix, <inline-formula><alternatives><tex-math>\\alpha + 1</tex-math>
    <mml:math><mml:mi>x</mml:mi><mml:mo>=</mml:mo><mml:mn>2</mml:mn>
    <mml:annotation encoding="TeX">x=2</mml:annotation></mml:math></alternatives></inline-formula>
    and <inline-formula><tex-math>\\documentclass[12pt]{minimal}
    \\begin{document}$$y^2$$\\end{document}</tex-math></inline-formula>.</p>
    <p>Second <bold>paragraph</bold>.</p><list><list-item><p>(A) item</p></list-item>
    <list-item><p>(B) item</p></list-item></list></caption>
    <alternatives><graphic xlink:href="f1.tif"/><graphic xlink:href="f1.jpg"/></alternatives>
    <graphic xlink:href="f1.tif"/></fig>"""
    fig = parse_article(doc(body)).figures[0]
    assert fig.label == "Fig. 1"
    assert fig.title == "Lip-HSL in vitro"
    assert fig.caption == (
        "Lip-HSL in vitro. MmPPOX at 37°C with Ni2+ and CO2 (12), see x.org and TP53; α-helix, x=2 "
        "and y^2. Second paragraph. (A) item (B) item"
    )
    assert fig.graphics == ["f1.tif", "f1.jpg"]


def test_title_with_final_punctuation_and_empty_caption() -> None:
    body = (
        "<fig id='a'><caption><title>Done.</title><p>Rest</p></caption></fig>"
        "<fig id='b'><caption><title>Only title</title></caption></fig>"
        "<fig id='c'><caption><p>  </p></caption></fig><fig id='d'><graphic xlink:href='d'/></fig>"
    )
    art = parse_article(doc(body))
    assert fig_by_id(art, "a").caption == "Done. Rest"
    assert fig_by_id(art, "b").caption == "Only title"
    assert fig_by_id(art, "c").caption == "" and fig_by_id(art, "d").caption == ""


def test_undeclared_xlink_prefix_is_recovered() -> None:
    fig = b"<fig id='f'><caption><p>c</p></caption><graphic xlink:href='g.jpg'/></fig>"
    xml = b"<article><body>" + fig + b"</body></article>"
    assert parse_article(xml).figures[0].graphics == ["g.jpg"]
    # lxml's exception log may still hold errors of earlier parses in the thread: after any
    # malformed document (read by any parser), the answer must stay the same
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(b"<a><b></c></a>")
    with pytest.raises(JatsError):
        parse_article(b"<article><b></c></article>")
    assert parse_article(xml).figures[0].graphics == ["g.jpg"]


# -------------------------------------------------------------------------- citing sentences


def test_citing_sentences_rid_lists_dedup_order_and_skips() -> None:
    body = """<sec><title>Results</title>
    <p>Cells grew fast (<xref ref-type="fig" rid="f1 f2">Figs. 1 and 2</xref>). As Smith et al. showed
    earlier, e.g. in mice, growth was 2.5 times higher (<xref ref-type="fig" rid="f1">Fig. 1</xref>;
    J. R. Doe, pers. comm.). Unrelated sentence.</p>
    <p>Again <xref ref-type="fig" rid="f2">Fig. 2</xref> shows vs. control. Cells grew fast
    (<xref ref-type="fig" rid="f1 f2">Figs. 1 and 2</xref>).</p>
    <p>Cells grew fast (<xref ref-type="fig" rid="f1 f2">Figs. 1 and 2</xref>).</p></sec>
    <fig id="f1"><caption><p>Caption citing <xref ref-type="fig" rid="f2">Fig. 2</xref>.</p></caption></fig>
    <fig id="f2"><caption><p>Two.</p></caption></fig>"""
    back = "<fn-group><fn><p>See <xref ref-type='fig' rid='f2'>Fig. 2</xref> in back.</p></fn></fn-group>"
    art = parse_article(doc(body, back=back))
    assert fig_by_id(art, "f1").citing_sentences == [
        "Cells grew fast (Figs. 1 and 2).",
        "As Smith et al. showed earlier, e.g. in mice, growth was 2.5 times higher (Fig. 1; "
        "J. R. Doe, pers. comm.).",
    ]
    assert fig_by_id(art, "f2").citing_sentences == [
        "Cells grew fast (Figs. 1 and 2).",
        "Again Fig. 2 shows vs. control.",
    ]


def test_xref_inside_float_in_paragraph_does_not_break_the_others() -> None:
    body = (
        "<p>First cites <xref ref-type='fig' rid='f1'>Fig. 1</xref>. Second sentence."
        "<boxed-text><caption><p>box <xref ref-type='fig' rid='f1'>Fig. 1</xref></p></caption></boxed-text>"
        "</p><fig id='f1'><caption><p>c</p></caption></fig>"
    )
    assert parse_article(doc(body)).figures[0].citing_sentences == ["First cites Fig. 1."]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("See Fig. 2 for details. Next one.", ["See Fig. 2 for details.", "Next one."]),
        ("As in Figs. 2 and 3, it rose. Then fell.", ["As in Figs. 2 and 3, it rose.", "Then fell."]),
        ("Wang et al. [3] found it. Yes.", ["Wang et al. [3] found it.", "Yes."]),
        ("Used e.g. mice and i.e. rats. Done!", ["Used e.g. mice and i.e. rats.", "Done!"]),
        (
            "Treated vs. Control was approx. 5 and ca. 6. End.",
            ["Treated vs. Control was approx. 5 and ca. 6."] + ["End."],
        ),
        ("Kit No. 5 from Dr. Who. End.", ["Kit No. 5 from Dr. Who.", "End."]),
        ("Values were 3.14 and 0.05. Next.", ["Values were 3.14 and 0.05.", "Next."]),
        (
            "J. R. R. Tolkien wrote it. Is it? Yes (really). Ok",
            ["J. R. R. Tolkien wrote it.", "Is it?", "Yes (really).", "Ok"],
        ),
        ("Lower case after period. stays together.", ["Lower case after period. stays together."]),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


# ----------------------------------------------------------------------------------- metadata


def test_metadata_year_preference_and_journal_fallback() -> None:
    art = parse_article(doc())
    assert (art.journal, art.year, art.article_type) == ("Journal of Tests", 2011, "research-article")
    epub = '<pub-date pub-type="epub"><day>1</day><month>2</month><year>2011</year></pub-date>'
    title = "<journal-title-group><journal-title>Journal of Tests</journal-title></journal-title-group>"
    release = '<pub-date pub-type="pmc-release"><year>2015</year></pub-date>'
    front = (
        FRONT.replace(epub, "")
        .replace(title, "")
        .replace('<pub-date pub-type="collection">', '<pub-date publication-format="print" date-type="pub">')
        .replace("</title-group>", "</title-group>" + release)
    )
    art = parse_article(doc(front=front))
    assert (art.journal, art.year) == ("Test J", 2010)
    jats11 = FRONT.replace('pub-type="epub"', 'publication-format="electronic" date-type="pub"')
    assert parse_article(doc(front=jats11)).year == 2011


@pytest.mark.parametrize(
    "raw,code",
    [
        ("http://creativecommons.org/licenses/by/2.0", "cc-by"),
        ("https://creativecommons.org/licenses/by/4.0/deed.en", "cc-by"),
        ("http://creativecommons.org/licenses/by-nc/3.0", "cc-by-nc"),
        ("https://creativecommons.org/licenses/by-nc-nd/4.0/", "cc-by-nc-nd"),
        ("https://creativecommons.org/licenses/by-nc-sa/4.0/", "cc-by-nc-sa"),
        ("https://creativecommons.org/licenses/by-sa/4.0/", "cc-by-sa"),
        ("https://creativecommons.org/licenses/by-nd/4.0/", "cc-by-nd"),
        ("http://creativecommons.org/licenses/by-nd-nc/1.0/", "cc-by-nc-nd"),
        ("http://creativecommons.org/publicdomain/zero/1.0/", "cc0"),
        ("http://creativecommons.org/publicdomain/mark/1.0/", "public-domain"),
        (
            "This is an open access article distributed under the terms of the Creative Commons "
            "Attribution License, which permits unrestricted non-commercial use",
            "cc-by",
        ),
        ("distributed under the Creative Commons Attribution Non-Commercial License", "cc-by-nc"),
        ("Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International License", "cc-by-nc-nd"),
        ("Creative Commons Attribution-ShareAlike 4.0 International", "cc-by-sa"),
        ("This article is licensed under CC BY-NC 4.0.", "cc-by-nc"),
        ("cc-by", "cc-by"),
        ("CC0 1.0 Universal Public Domain Dedication", "cc0"),
        ("Publication of EHP lies in the public domain and is therefore without copyright.", "public-domain"),
        ("public-domain", "public-domain"),
        ("open-access", "other"),
        ("Copyright 2010 Cancer Research UK. All rights reserved.", "other"),
        ("  ", "unknown"),
    ],
)
def test_normalize_license(raw: str, code: str) -> None:
    assert normalize_license(raw) == code
    assert code in jats.LICENSE_CODES


def test_license_from_text_type_and_absence_with_capped_raw() -> None:
    text = "This is an open-access article under the Creative Commons Attribution License. " + "x " * 400
    front = FRONT.replace(
        '<license xlink:href="http://creativecommons.org/licenses/by/4.0/"><license-p>CC BY</license-p>',
        f'<license license-type="open-access"><license-p>{text}</license-p>',
    )
    art = parse_article(doc(front=front))
    assert art.license == "cc-by" and len(art.license_raw) <= 500
    assert art.license_raw.startswith("This is an open-access article under the Creative Commons")
    by_type = FRONT.replace(
        '<license xlink:href="http://creativecommons.org/licenses/by/4.0/"><license-p>CC BY</license-p>',
        '<license license-type="public-domain"><license-p>Freely available.</license-p>',
    )
    assert parse_article(doc(front=by_type)).license == "public-domain"
    none = re.sub(r"<permissions>.*</permissions>", "", FRONT, flags=re.S)
    art = parse_article(doc(front=none))
    assert (art.license, art.license_raw) == ("unknown", "")


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("xml", [b"", b"  \n\t "])
def test_empty_file(xml: bytes) -> None:
    with pytest.raises(JatsError) as err:
        parse_article(xml, "empty.nxml")
    assert err.value.reason == "empty_file" and "empty.nxml" in err.value.detail


def test_malformed_xml_names_source_and_line() -> None:
    with pytest.raises(JatsError) as err:
        parse_article(b"<article>\n<body>\n<p>open</body></article>", "bad.nxml")
    assert err.value.reason == "malformed_xml"
    assert "bad.nxml" in err.value.detail and "line 3" in err.value.detail


def test_invalid_encoding() -> None:
    latin1 = doc("<p>caf\u00e9 na\u00efve</p>").decode().encode("latin-1")
    with pytest.raises(JatsError) as err:
        parse_article(latin1, "latin.nxml")
    assert err.value.reason == "invalid_encoding" and "latin.nxml" in err.value.detail
    declared = b'<?xml version="1.0" encoding="ISO-8859-1"?>' + latin1
    assert parse_article(declared).title == "A tiny article"  # a declared encoding is honoured


def test_no_article() -> None:
    with pytest.raises(JatsError) as err:
        parse_article(b"<html><body/></html>", "page.html")
    assert err.value.reason == "no_article" and "html" in err.value.detail


def test_jats_error_pickles_and_converts() -> None:
    err = pickle.loads(pickle.dumps(JatsError("malformed_xml", "x.nxml: line 1")))
    assert (err.reason, err.detail) == ("malformed_xml", "x.nxml: line 1")
    assert err.to_item_error("x.nxml") == ItemError("x.nxml", "malformed_xml", "x.nxml: line 1")


def _all_text(art: jats.Article) -> str:
    parts = [art.title, art.license_raw, art.journal]
    for f in art.figures:
        parts += [f.caption, f.label, *f.citing_sentences]
    return " ".join(parts)


@pytest.mark.parametrize(
    "dtd,ref",
    [
        ('<!ENTITY xxe SYSTEM "file:///etc/passwd">', "&xxe;"),
        ('<!ENTITY % pe SYSTEM "file:///etc/passwd"> %pe;', ""),
        ('<!ENTITY xxe SYSTEM "http://127.0.0.1:9/evil">', "&xxe;"),
    ],
)
def test_external_entities_are_never_read(dtd: str, ref: str) -> None:
    body = f"<fig id='f'><caption><p>x{ref}y</p></caption></fig>"
    xml = f'<?xml version="1.0"?>\n<!DOCTYPE article [{dtd}]>\n{article(body)}'.encode()
    art = parse_article(xml)
    assert art.figures[0].caption == "xy"
    assert "root:" not in _all_text(art)


def test_entity_bomb_is_harmless() -> None:
    decls = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    body = "<fig id='f'><caption><p>&a9;</p></caption></fig>"
    xml = f"<!DOCTYPE article [{decls}]>{article(body)}"
    start = time.perf_counter()
    try:
        art = parse_article(xml.encode())
    except JatsError as err:  # libxml2 may refuse the declarations outright
        assert err.reason == "malformed_xml"
    else:
        assert len(art.figures[0].caption) < 100
    assert time.perf_counter() - start < 2


# ---------------------------------------------------------------------- reference-list cutting


def test_reference_list_cut_is_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    refs = "<ref-list><title>References</title><ref-list><ref id='r1'><mixed-citation>A</mixed-citation>"
    refs += "<?supplied-pmid 1?></ref></ref-list><ref-list/></ref-list>"
    body = f"<p>See <xref ref-type='fig' rid='f1'>Fig. 1</xref>.</p>{FIG}"
    fig9 = FIG.replace("f1", "f9")
    cases = {
        "plain": doc(body, back=refs),
        "fig in refs": doc(body, back=refs.replace("<ref id='r1'>", f"<ref id='r1'>{fig9}")),
        "comment": doc(body.replace("<p>", "<p><!-- Hi! -->"), back=refs.replace("A</", "A<!-- c --></")),
        "commented ref-list": doc(body + "<!-- <ref-list> -->", back=refs),
        "commented tags around": doc(body + "<!-- <ref-list> -->", back=refs + "<!-- </ref-list> -->"),
        "unbalanced": doc(body, back=refs).replace(b"</back>", b"</ref-list></back>"),
    }
    cut = {name: jats._elide_unread(xml) is not xml for name, xml in cases.items()}
    assert cut == {"plain": True, "fig in refs": False, "comment": False, "commented ref-list": True,
                   "commented tags around": False, "unbalanced": False}  # fmt: skip
    with_cut = {}
    for name, xml in cases.items():
        try:
            with_cut[name] = parse_article(xml)
        except JatsError as err:
            with_cut[name] = err.reason
    monkeypatch.setattr(jats, "_elide_unread", lambda xml: xml)
    for name, xml in cases.items():
        try:
            full = parse_article(xml)
        except JatsError as err:
            full = err.reason
        assert with_cut[name] == full, name
    assert [f.fig_id for f in with_cut["fig in refs"].figures] == ["f1", "f9"]
    assert with_cut["plain"].figures[0].citing_sentences == ["See Fig. 1."]


# ---------------------------------------------------------------------------------- real files


def _nxml_files(realdata: Path) -> list[Path]:
    files = sorted((realdata / "jats" / "nxml").glob("*.nxml"))
    if not files:
        pytest.skip("no real nxml files")
    return files


_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _words_in_order(text: str, words: list[str]) -> bool:
    pos = 0
    for word in words:
        pos = text.find(word, pos)
        if pos < 0:
            return False
        pos += len(word)
    return True


def test_real_files_every_captioned_figure_complete(realdata: Path) -> None:
    total = 0
    for path in _nxml_files(realdata):
        art = parse_article(path.read_bytes(), str(path))
        tree = etree.parse(str(path), _SAFE)
        for fig in tree.iter("fig"):
            caption = fig.find("caption")
            words = " ".join(caption.itertext()).split() if caption is not None else []
            if not words:
                continue
            total += 1
            ours = fig_by_id(art, fig.get("id"))
            label_el = fig.find("label")
            assert ours.label == " ".join("".join(label_el.itertext()).split()), path.name
            # an independent flattening: every word, in order (fails if a paragraph were dropped)
            assert _words_in_order(ours.caption, words), (path.name, ours.fig_id)
            assert ours.graphics == [g.get("{http://www.w3.org/1999/xlink}href") for g in fig.iter("graphic")]
    assert total == 17


def test_real_files_unchanged_without_reference_cut(realdata: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _nxml_files(realdata)
    cut = [parse_article(p.read_bytes()) for p in files]
    assert any(len(jats._elide_unread(p.read_bytes())) < p.stat().st_size for p in files)
    monkeypatch.setattr(jats, "_elide_unread", lambda xml: xml)
    assert [parse_article(p.read_bytes()) for p in files] == cut


def _meta_by_regex(text: str) -> dict:
    """Values read with plain regular expressions, independently of the parser."""
    epub = re.search(r'<pub-date pub-type="epub">.*?<year>(\d{4})</year>', text, re.S)
    href = re.search(r'<license[^>]*xlink:href="([^"]+)"', text)
    return {
        "pmcid": "PMC" + re.search(r'pub-id-type="pmc">(\d+)<', text).group(1),
        "doi": re.search(r'pub-id-type="doi">([^<]+)<', text).group(1),
        "year": int(epub.group(1)),
        "license_url": href.group(1) if href else None,
    }


@pytest.mark.parametrize(
    "name,license_code",
    [("1471-2180-11-174.nxml", "cc-by"), ("mds526.nxml", "cc-by-nc"), ("ehp-116-1694.nxml", "public-domain"),
     ("pone.0046493.nxml", "cc-by"), ("6605965a.nxml", "unknown")],
)  # fmt: skip
def test_real_files_metadata(realdata: Path, name: str, license_code: str) -> None:
    path = realdata / "jats" / "nxml" / name
    if not path.exists():
        pytest.skip(f"{name} missing")
    expected = _meta_by_regex(path.read_text(encoding="utf-8"))
    art = parse_article(path.read_bytes(), name)
    assert (art.pmcid, art.doi, art.year) == (expected["pmcid"], expected["doi"], expected["year"])
    assert art.license == license_code
    if expected["license_url"]:
        assert art.license_raw == expected["license_url"]


def test_real_package_member(realdata: Path) -> None:
    package = realdata / "jats" / "packages" / "PMC12419688.tar.gz"
    if not package.exists():
        pytest.skip("package missing")
    with tarfile.open(package) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".nxml"))
        xml = tar.extractfile(member).read()
    art = parse_article(xml, f"{package}!{member.name}")
    assert (art.pmcid, art.year, art.license) == ("PMC12419688", 2025, "cc-by")
    assert len(art.figures) == 1
    fig = art.figures[0]
    assert fig.graphics == ["koaf197f1"]
    assert fig.caption.startswith("Transcriptional regulation of PSRs by SlPHR3 and SlPHR4 in tomato.")
    assert fig.caption.endswith("under low-Pi conditions.")
    assert fig.citing_sentences and all("(Fig.)" in s for s in fig.citing_sentences)


# ------------------------------------------------------------------- byte edits before parsing

JATS_NS = "https://jats.nlm.nih.gov/ns/archiving/1.3/"
OAI = '<?xml version="1.0" encoding="UTF-8"?><OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><metadata>'
CITED = f"<sec><p>One. Cites <xref ref-type='fig' rid='f1'>Fig. 1</xref> here. Two.</p>{FIG}</sec>"


def _result(xml: bytes) -> jats.Article | str:
    try:
        return parse_article(xml)
    except JatsError as err:
        return err.reason


def test_article_namespace_edit_is_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undeclaring the default namespace in the bytes gives the tree that renaming gave."""
    ns = f' xmlns="{JATS_NS}"'
    inner_fig = FIG.replace("<fig ", f'<j:fig xmlns:j="{JATS_NS}" ').replace("</fig>", "</j:fig>")
    cases = {
        "oai": OAI + article(CITED, attrs=ns) + "</metadata></OAI-PMH>",
        "declaration only": '<?xml version="1.0"?>' + article(CITED, attrs=ns),
        "spaced and single-quoted": "<?xml version='1.0'?>" + article(CITED, attrs=f" xmlns = '{JATS_NS}'"),
        "redeclared and prefixed inside": "<?xml version='1.0'?>"
        + article(CITED.replace("<sec>", f'<sec xmlns="{JATS_NS}">') + inner_fig.replace("f1", "f2"), attrs=ns),
        "undeclared inside": "<?xml version='1.0'?>" + article(CITED.replace("<sec>", '<sec xmlns="">'), attrs=ns),
        "inherited (not edited)": OAI + article(CITED) + "</metadata></OAI-PMH>",
        "comment before (not edited)": OAI + "<!-- <article> -->" + article(CITED, attrs=ns) + "</metadata></OAI-PMH>",
        "doctype (not edited)": doc(CITED, attrs=ns).decode(),
        "reference in namespace (not edited)": "<?xml version='1.0'?>"
        + article(CITED, attrs=' xmlns="https://jats.nlm.nih.gov/ns/archiving/1.3&#x2F;"'),
        "malformed": '<?xml version="1.0"?>' + article(CITED.replace("</sec>", "</sek>"), attrs=ns),
    }
    edited = {name: jats._unset_article_namespace(xml.encode()) is not None for name, xml in cases.items()}
    assert edited == {name: "not edited" not in name for name in cases}
    with_edit = {name: _result(xml.encode()) for name, xml in cases.items()}
    monkeypatch.setattr(jats, "_unset_article_namespace", lambda xml: None)
    for name, xml in cases.items():
        assert with_edit[name] == _result(xml.encode()), name
    assert with_edit["oai"].figures[0].citing_sentences == ["Cites Fig. 1 here."]
    assert [f.fig_id for f in with_edit["redeclared and prefixed inside"].figures] == ["f1", "f2"]


def _table(inner: str = "<td>1</td>", attrs: str = ' id="t1"') -> str:
    return (
        f"<table-wrap{attrs}><label>Table 1</label><caption><p>Caption.</p></caption><table><tr>{inner}</tr>"
        "</table><table-wrap-foot><fn><p>Note <xref ref-type='table-fn' rid='n1'>a</xref>.</p></fn>"
        "</table-wrap-foot></table-wrap>"
    )


def test_table_contents_emptied_invisibly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emptied tables change nothing that is read; tables whose content could matter are kept."""
    cite = "<p>See <xref ref-type='fig' rid='f1'>Fig. 1</xref>. Next.</p>"
    in_fig = FIG.replace("</caption>", "</caption>" + _table("<td><graphic xlink:href='in-table'/></td>"))
    in_front = _table("<td><abbrev-journal-title>A</abbrev-journal-title></td>") + "</journal-title-group>"
    cases = {
        "tables": doc(_table() + _table(attrs=' id="t2"') + cite + FIG),
        "table in citing paragraph": doc(f"<p>See <xref ref-type='fig' rid='f1'>Fig. 1</xref> {_table()} ok.</p>{FIG}"),
        "group and float after the back": doc(f"<table-wrap-group>{_table()}</table-wrap-group>{cite}{FIG}")
        .replace(b"</article>", f"<floats-group>{_table()}</floats-group></article>".encode()),
        # kept: their content is read, or cannot be proven unread
        "figure xref (kept)": doc(_table("<td><xref ref-type='fig' rid='f1'>Fig. 1</xref>. Cell.</td>") + FIG),
        "referenced ref-type (kept)": doc(_table("<td><xref ref-type='&#x66;ig' rid='f1'>F</xref></td>") + FIG),
        "graphic in a figure (kept)": doc(in_fig),
        "comment (kept)": doc(_table("<td><!-- </table-wrap> --></td>") + cite + FIG),
        "processing instruction (kept)": doc(_table("<td><?pi </table-wrap>?></td>") + cite + FIG),
        "nested (inner emptied)": doc(_table("<td>" + _table(attrs=" id='in'") + "</td>") + cite + FIG),
        "ref-type on the table (kept)": doc(_table(attrs=' ref-type="fig"') + cite + FIG),
        # emptied, then found misplaced after parsing and parsed again without cuts
        "in a formula": doc(f"<p><inline-formula><tex-math>a{_table()}b</tex-math></inline-formula> x.</p>{FIG}"),
        "in the front matter": doc(cite + FIG, front=FRONT.replace("</journal-title-group>", in_front)),
    }  # fmt: skip
    emptied = {name: len(jats._elide_unread(xml)) < len(xml) for name, xml in cases.items()}
    assert emptied == {name: "kept" not in name for name in cases}
    assert jats._elide_unread(cases["nested (inner emptied)"]).count(b"Caption.") == 1  # the outer one
    cut = {name: _result(xml) for name, xml in cases.items()}
    monkeypatch.setattr(jats, "_elide_unread", lambda xml: xml)
    for name, xml in cases.items():
        assert cut[name] == _result(xml), name
    assert cut["table in citing paragraph"].figures[0].citing_sentences == ["See Fig. 1 ok."]
    assert cut["graphic in a figure (kept)"].figures[0].graphics == ["in-table", "g1"]
    assert cut["figure xref (kept)"].figures[0].citing_sentences == ["Fig. 1."]


def test_syntax_error_inside_an_emptied_table_goes_unnoticed() -> None:
    """As with the reference list: what is never parsed cannot fail (the figures are kept)."""
    xml = doc(_table("<td>broken <b></td>") + f"<p>See <xref ref-type='fig' rid='f1'>Fig. 1</xref>.</p>{FIG}")
    assert parse_article(xml).figures[0].citing_sentences == ["See Fig. 1."]
    with pytest.raises(JatsError):
        parse_article(xml.replace(b"<table-wrap", b"<table-wrap><!-- --></table-wrap><table-wrap"))


# ------------------------------------------------------------------------- sentence location


def _sentence_by_full_scan(text: str, offset: int) -> str:
    """Reference: every candidate boundary of the paragraph, then the nearest real ones."""
    candidates = list(jats._BOUNDARY_RE.finditer(text))
    ends = [m.end() for m in candidates]
    k = bisect_right(ends, offset)
    start = next((ends[j] for j in range(k - 1, -1, -1) if jats._splits_at(text, candidates[j])), 0)
    stop = next((ends[j] for j in range(k, len(ends)) if jats._splits_at(text, candidates[j])), len(text))
    return " ".join(text[start:stop].split())


def test_sentence_at_equals_full_scan_at_every_offset() -> None:
    tokens = [
        "Cells", "grew", "fast", "Fig.", "Figs.", "et", "al.", "e.g.", "i.e.", "J.", "R.", "Doe", "2.5", "vs.",
        "approx.", "Sixlet.", "Sevenly.", "naïveté.", "COVID19.", "end.", "Stop.", "lower", "Really?!", "Yes!",
        "(see", "above.)", "\u201cdone.\u201d", "[end.]", "\u2018ok.\u2019", "...", "?", "!", ".", "(Fig. 1).",
        "\u00a0", "\n", "\t", "  ", "\u2003", "\u200b", "a.b.c", "U.S.", "x", "A",
    ]  # fmt: skip
    rng = random.Random(7)
    for _ in range(400):
        text = "".join(rng.choice(tokens) + rng.choice([" ", "", "\n", "  "]) for _ in range(rng.randint(0, 30)))
        for offset in range(len(text) + 1):
            assert jats._sentence_at(text, offset) == _sentence_by_full_scan(text, offset), (text, offset)


@pytest.mark.parametrize(
    "text", ["", " ", "a b", " a", "a ", "a  b", "a\nb", "a\u00a0b", "a\u2003b", "a\x1fb", "a\u200bb", "tab\there"]
)
def test_collapse_spaces_is_norm(text: str) -> None:
    assert jats._collapse_spaces(text) == " ".join(text.split())


def test_offset_and_marker_methods_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Citing sentences are the same whether xrefs are located by their text or by markers."""
    x = lambda rid, label="Fig. 1": f"<xref ref-type='fig' rid='{rid}'>{label}</xref>"  # noqa: E731
    figs = FIG + FIG.replace("f1", "f2")
    bodies = [
        f"<p>See ({x('f1')}). Also ({x('f1')}). End.</p>",  # the same text twice: markers
        f"<p>A {x('f1')} one. B {x('f2', 'Fig. 2')} two. C.</p>",  # unique texts: located directly
        f"<p>Odd \U000f0000 char. Cites {x('f1')} here. Next.</p>",  # a marker character in the text
        f"<p>Odd \U000f0001 char. Cites {x('f1')} and {x('f2', 'Fig. 2')}. Next.</p>",
        f"<p>Odd \U000f0001 char. Cites {x('f1')} alone. Next.</p>",
        "<p>Nested <xref ref-type='fig' rid='f1'><italic>Fig</italic> 1</xref> here. Next.</p>",
        f"<p>Empty <xref ref-type='fig' rid='f1'/>here. And {x('f2', '')}. Next.</p>",
        "<p>One ends.<xref ref-type='fig' rid='f1'>  Figure 1</xref> starts. Two.</p>",
    ]
    located = [[f.citing_sentences for f in parse_article(doc(body + figs)).figures] for body in bodies]
    monkeypatch.setattr(jats, "_xref_offsets", lambda raw, xrefs: None)
    assert located == [[f.citing_sentences for f in parse_article(doc(body + figs)).figures] for body in bodies]
    assert located[0][0] == ["See (Fig. 1).", "Also (Fig. 1)."]
    assert located[2] == [[], []] and located[3] == [[], []] and located[4][0] == ["Cites Fig. 1 alone."]
