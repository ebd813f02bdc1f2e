"""JATS XML writer: one article in one of three wrappers (bare, ``<pmc-articleset>``, OAI-PMH).

Writes front matter, a body whose paragraphs cite the figures, the figures (inline, in
``<fig-group>`` or in ``<floats-group>``), references and the scholarly bulk that makes an article
as large as a real one; optionally malformed the way real files are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from xml.sax.saxutils import escape

import numpy as np

from biomedclip.synth.captions import _jats
from biomedclip.synth.plan import _Meta
from biomedclip.synth.sampling import _cap, _pick
from biomedclip.synth.specs import _FigSpec
from biomedclip.synth.vocab import MODALITIES

_SURNAMES = (
    "Smith",
    "García",
    "Müller",
    "Nguyen",
    "Okafor",
    "Kowalski",
    "Tanaka",
    "Rossi",
    "Haddad",
    "Johansson",
    "Chen",
    "Patel",
    "Silva",
    "O'Brien",
    "Novak",
    "Kim",
)
_GIVEN = (
    "Anna",
    "Jian",
    "Maria",
    "Oluwaseun",
    "Pierre",
    "Sofia",
    "Tomás",
    "Yuki",
    "Lena",
    "Rahul",
    "Ewa",
    "Kofi",
)


_XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:mml="http://www.w3.org/1998/Math/MathML"'
_DOCTYPE = (
    '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.3 '
    '20210610//EN" "JATS-archivearticle1-3.dtd">'
)
_TOPICS: dict[str, tuple[str, ...]] = {
    "chest_xray": ("pulmonary infection", "lung cancer screening", "community-acquired pneumonia"),
    "brain_mri": ("glioma", "brain metastases", "cerebral abscess"),
    "ultrasound": ("thyroid nodules", "hepatic cysts", "breast lesions"),
    "histopathology": ("colorectal cancer", "breast cancer", "hepatocellular carcinoma"),
    "fluorescence": ("autophagy", "mitochondrial dynamics", "cytoskeletal remodelling"),
    "fundus": ("diabetic retinopathy", "retinal vein occlusion", "hypertensive retinopathy"),
    "western_blot": ("inflammatory signalling", "apoptosis", "hypoxia signalling"),
    "chart": ("drug response", "metabolic regulation", "tumour growth"),
}
_INTRO = (
    "The burden of {t} remains substantial worldwide.",
    "Early diagnosis of {t} relies on imaging and histopathological assessment.",
    "The molecular mechanisms underlying {t} are incompletely understood.",
    "Several studies have reported conflicting results on {t}.",
    "Here we describe new observations on {t}.",
)
_METHODS = (
    "Imaging was performed according to institutional protocols.",
    "Statistical analysis used R version 4.2.",
    "Cells were cultured in DMEM supplemented with 10% FBS.",
    "The local ethics committee approved the study.",
    "Antibodies and reagents are listed in Supplementary Table S1.",
)
_DISCUSSION = (
    "Our findings extend previous reports on {t}.",
    "Limitations include the small sample size.",
    "Further prospective studies are warranted.",
    "These results have implications for the management of {t}.",
)


def _sentences(rng: np.random.Generator, pool: Sequence[str], topic: str, k: int) -> str:
    picks = rng.permutation(len(pool))[:k]
    return " ".join(pool[int(i)].format(t=topic, T=_cap(topic)) for i in picks)


def _fig_xml(fig: _FigSpec) -> str:
    """One ``<fig>``: label, caption (omitted when broken that way), graphic with xlink:href."""
    parts = [
        f'<fig id="{fig.fig_id}" position="float" fig-type="figure">',
        f"<label>{escape(fig.label)}</label>",
    ]
    if fig.broken != "no_caption":
        title = f"<title>{_jats(fig.title)}</title>" if fig.title else ""
        paras = "".join(f"<p>{_jats(p)}</p>" for p in fig.paragraphs)
        parts.append(f"<caption>{title}{paras}</caption>")
    parts.append(f'<graphic xlink:href="{escape(fig.href)}"/></fig>')
    return "".join(parts)


def _figures_xml(figs: list[_FigSpec], start: int, stop: int) -> str:
    """Figures ``start:stop``, wrapping fig-group members in ``<fig-group>``."""
    out, i = [], start
    while i < stop:
        fig = figs[i]
        if fig.group and i + 1 < len(figs) and figs[i + 1].group == fig.group:
            pair = (fig, figs[i + 1])
            # A member without caption would inherit the group caption in a JATS parser; then the
            # group gets none either, so "no_caption" stays a real, countable failure.
            caption = ""
            if all(f.broken != "no_caption" for f in pair):
                caption = f"<caption><title>{escape(fig.title or 'Imaging findings.')}</title></caption>"
            out.append(
                f'<fig-group id="{fig.group}"><label>{escape(fig.label[:-1])}</label>{caption}'
                f"{_fig_xml(pair[0])}{_fig_xml(pair[1])}</fig-group>"
            )
            i += 2
        else:
            out.append(_fig_xml(fig))
            i += 1
    return "".join(out)


def _citing_paragraph(rng: np.random.Generator, fig: _FigSpec, topic: str) -> str:
    """A multi-sentence paragraph with one sentence citing the figure through ``<xref>``."""
    xref = f'<xref ref-type="fig" rid="{fig.fig_id}">{escape(fig.label)}</xref>'
    lead = escape(fig.lead) if fig.lead else "The images are shown"
    cite = (
        f"{lead} ({xref})." if rng.random() < 0.6 else f"As shown in {xref}, {lead[:1].lower() + lead[1:]}."
    )
    before = _sentences(rng, _INTRO, topic, 1)
    after = _sentences(rng, _DISCUSSION, topic, 1)
    return f"<p>{escape(before)} {cite} {escape(after)}</p>"


def _front_xml(rng: np.random.Generator, meta: _Meta, title: str, topic: str) -> str:
    j_abbr, j_title, _, publisher = meta.journal
    ids = _article_ids(rng, meta)
    authors = "".join(
        f'<contrib contrib-type="author"><name><surname>{escape(_pick(rng, _SURNAMES))}</surname>'
        f"<given-names>{escape(_pick(rng, _GIVEN))}</given-names></name></contrib>"
        for _ in range(int(rng.integers(1, 5)))
    )
    return (
        f'<front><journal-meta><journal-id journal-id-type="nlm-ta">{escape(j_abbr)}</journal-id>'
        f"<journal-title-group><journal-title>{escape(j_title)}</journal-title></journal-title-group>"
        f'<issn pub-type="epub">{2000 + meta.index % 7000:04d}-{meta.index % 997:04d}</issn>'
        f"<publisher><publisher-name>{escape(publisher)}</publisher-name></publisher></journal-meta>"
        f'<article-meta>{ids}<article-categories><subj-group subj-group-type="heading"><subject>'
        f"{escape(_cap(meta.article_type.replace('-', ' ')))}</subject></subj-group></article-categories>"
        f"<title-group><article-title>{escape(title)}</article-title></title-group>"
        f"<contrib-group>{authors}</contrib-group>{_pub_date(rng, meta)}"
        f"<volume>{meta.year - 2005}</volume><elocation-id>{meta.stem.rsplit('-', 1)[-1]}</elocation-id>"
        f"{_permissions(rng, meta)}<abstract><p>{escape(_sentences(rng, _INTRO, topic, 2))}</p></abstract>"
        "</article-meta></front>"
    )


def _article_ids(rng: np.random.Generator, meta: _Meta) -> str:
    """pmid/pmc/doi ids; the pmc id sometimes lacks its ``PMC`` prefix, as in older PMC files."""
    digits = meta.pmcid[3:]
    if rng.random() < 0.7:
        pmc = f'<article-id pub-id-type="pmc">{meta.pmcid}</article-id>'
    else:
        pmc = f'<article-id pub-id-type="pmc">{digits}</article-id>'
        if rng.random() < 0.5:
            pmc += f'<article-id pub-id-type="pmcid">{meta.pmcid}</article-id>'
    publisher = (
        f'<article-id pub-id-type="publisher-id">{meta.stem}</article-id>' if rng.random() < 0.4 else ""
    )
    return (
        f'<article-id pub-id-type="pmid">{meta.pmid}</article-id>{pmc}'
        f'<article-id pub-id-type="doi">{meta.doi}</article-id>{publisher}'
    )


def _pub_date(rng: np.random.Generator, meta: _Meta) -> str:
    body = f"<day>{meta.day:02d}</day><month>{meta.month:02d}</month><year>{meta.year}</year>"
    if rng.random() < 0.5:
        collection = f'<pub-date pub-type="collection"><year>{meta.year}</year></pub-date>'
        return f'<pub-date pub-type="epub">{body}</pub-date>{collection}'
    return f'<pub-date publication-format="electronic" date-type="pub">{body}</pub-date>'


def _permissions(rng: np.random.Generator, meta: _Meta) -> str:
    """CC license with ``xlink:href``; JATS 1.2+ files may add an ``ali:license_ref`` too."""
    _, url, text, _ = meta.license
    ali = ""
    if rng.random() < 0.3:
        ali = f'<ali:license_ref xmlns:ali="http://www.niso.org/schemas/ali/1.0/">{url}</ali:license_ref>'
    return (
        f"<permissions><copyright-statement>© {meta.year} The Authors</copyright-statement>"
        f"<copyright-year>{meta.year}</copyright-year>"
        f'<license license-type="open-access" xlink:href="{url}">{ali}<license-p>This is an open access '
        f'article distributed under the terms of the <ext-link ext-link-type="uri" xlink:href="{url}">'
        f"{escape(text)}</ext-link>.</license-p></license></permissions>"
    )


def _body_xml(rng: np.random.Generator, meta: _Meta, figs: list[_FigSpec], topic: str) -> tuple[str, str]:
    """(body, floats-group) — figures follow their citing paragraphs unless floated to the end."""
    results = []
    i = 0
    while i < len(figs):
        stop = i + 2 if figs[i].group and i + 1 < len(figs) and figs[i + 1].group == figs[i].group else i + 1
        results.append(_citing_paragraph(rng, figs[i], topic))
        if not meta.floats_at_end:
            results.append(_figures_xml(figs, i, stop))
        i = stop
    if not figs:
        results.append(f"<p>{escape(_sentences(rng, _METHODS, topic, 2))}</p>")
    case = meta.article_type == "case-report"
    intro = escape(_sentences(rng, _INTRO, topic, 3))
    methods = escape(_sentences(rng, _METHODS, topic, 2))
    discussion = escape(_sentences(rng, _DISCUSSION, topic, 2))
    body = (
        f'<body><sec id="s1"><title>Introduction</title><p>{intro}</p></sec>'
        f'<sec id="s2"><title>{"Case presentation" if case else "Materials and methods"}</title>'
        f"<p>{methods}</p></sec>"
        f'<sec id="s3"><title>Results</title>{"".join(results)}</sec>'
        f'<sec id="s4"><title>Discussion</title><p>{discussion}</p></sec></body>'
    )
    floats = (
        f"<floats-group>{_figures_xml(figs, 0, len(figs))}</floats-group>"
        if meta.floats_at_end and figs
        else ""
    )
    return body, floats


def _back_xml(rng: np.random.Generator) -> str:
    refs = "".join(
        f'<ref id="B{k}"><mixed-citation publication-type="journal">{escape(_pick(rng, _SURNAMES))} '
        f"{escape(_pick(rng, _GIVEN)[0])}. Synthetic reference {k}. <italic>J Synth Med</italic>. "
        f"{int(rng.integers(1995, 2024))};{int(rng.integers(1, 60))}:{int(rng.integers(1, 999))}."
        "</mixed-citation></ref>"
        for k in range(1, int(rng.integers(2, 5)))
    )
    return f"<back><ref-list><title>References</title>{refs}</ref-list></back>"


# What makes a real PMC article ~15x larger than its figures need: a reference list of dozens of
# entries (about a third of the bytes), many paragraphs citing them, affiliations, keywords,
# acknowledgements, tables. Readers of JATS pay for all of it (the realdata articles average 82 KB),
# so the synthetic corpus carries it too; none of it is read into a figure record.
_RELATED = (
    "Previous studies of {t} reported heterogeneous outcomes{c}.",
    "Imaging plays a central role in the work-up of {t}{c}.",
    "Large cohorts have described the natural history of {t}{c}.",
    "Guidelines recommend a multidisciplinary approach to {t}{c}.",
    "Animal models have clarified several aspects of {t}{c}.",
    "Risk factors for {t} include age, smoking and metabolic disease{c}.",
    "Recent reviews summarise the diagnostic criteria for {t}{c}.",
    "Deep learning methods have been applied to images of {t}{c}.",
    "Inter-observer agreement in {t} is moderate at best{c}.",
    "Treatment response in {t} varies between centres{c}.",
)
_METHOD_DETAIL = (
    "Samples were processed within two hours of collection{c}.",
    "Two observers blinded to the clinical data read all images{c}.",
    "Continuous variables are given as mean and standard deviation.",
    "Group differences were tested with the Mann-Whitney U test{c}.",
    "A two-sided p value below 0.05 was considered significant.",
    "Missing data were handled by multiple imputation{c}.",
    "Sample size was estimated from a pilot study{c}.",
    "Written informed consent was obtained from all participants.",
)
_JOURNAL_ABBREVS = ("J Clin Invest", "Radiology", "Lancet", "Nat Med", "PLoS One", "BMC Med", "Eur Radiol",
                    "Mod Pathol", "Ophthalmology", "Cell Rep")  # fmt: skip
_DEPARTMENTS = ("Radiology", "Pathology", "Medicine", "Cell Biology", "Ophthalmology")
_INSTITUTIONS = ("University Hospital", "Medical School", "Research Institute")
_COUNTRIES = ("Germany", "Japan", "Brazil", "Nigeria", "Canada", "India")
_FIRST_REF = 4  # _back_xml numbers its (1-3) references from B1; the bulk's follow


class _ScholarlyBulk:
    """Affiliations, keywords, cited paragraphs, a table, references and acknowledgements.

    Inserted around the parts ``_front_xml``/``_body_xml``/``_back_xml`` write, at places no
    figure record reads: after the contributors and the abstract, inside the Introduction, Methods
    and Discussion sections (never into a paragraph that cites a figure), and at the end of the
    reference list.
    """

    def __init__(self, rng: np.random.Generator, topic: str) -> None:
        self.rng = rng
        self.topic = topic
        self.refs = int(rng.integers(15, 61))

    def _cite(self) -> str:
        if self.rng.random() < 0.35:
            return ""
        first = _FIRST_REF + int(self.rng.integers(0, self.refs))
        xref = f'<xref ref-type="bibr" rid="B{first}">{first}</xref>'
        if self.rng.random() < 0.3 and first + 1 < _FIRST_REF + self.refs:
            xref += f',<xref ref-type="bibr" rid="B{first + 1}">{first + 1}</xref>'
        return f" [{xref}]"

    def _paragraphs(self, pool: Sequence[str], count: int) -> str:
        out = []
        for _ in range(count):
            picks = self.rng.permutation(len(pool))[: int(self.rng.integers(3, 6))]
            sentences = (pool[int(i)].format(t=escape(self.topic), c="{c}") for i in picks)
            out.append("<p>" + " ".join(x.replace("{c}", self._cite()) for x in sentences) + "</p>")
        return "".join(out)

    def front(self, front: str) -> str:
        affs = "".join(
            f'<aff id="aff{k}"><label>{k}</label>Department of {_pick(self.rng, _DEPARTMENTS)}, '
            f"{_pick(self.rng, _INSTITUTIONS)} {escape(_pick(self.rng, _SURNAMES))}, "
            f"<country>{_pick(self.rng, _COUNTRIES)}</country></aff>"
            for k in range(1, int(self.rng.integers(2, 5)))
        )
        keywords = "".join(f"<kwd>{w}</kwd>" for w in (escape(self.topic), "imaging", "case series",
                                                         "biomarkers")[: int(self.rng.integers(2, 5))])
        front = front.replace("</contrib-group>", f"</contrib-group>{affs}", 1)
        return front.replace("</abstract>", f'</abstract><kwd-group kwd-group-type="author">{keywords}'
                             "</kwd-group>", 1)

    def _table(self) -> str:
        rows = "".join(
            f"<tr><td>{name}</td><td>{self.rng.normal(50, 12):.1f} ± {self.rng.uniform(2, 9):.1f}</td>"
            f"<td>{self.rng.normal(55, 12):.1f} ± {self.rng.uniform(2, 9):.1f}</td>"
            f"<td>{self.rng.uniform(0.001, 0.9):.3f}</td></tr>"
            for name in ("Age (years)", "BMI (kg/m2)", "Follow-up (months)", "Score", "Lesion size (mm)")
        )
        return (
            '<table-wrap id="T1" position="float"><label>Table 1</label><caption><p>Characteristics of the '
            f"study population.</p></caption><table frame=\"hsides\"><thead><tr><th>Variable</th><th>Group A"
            f"</th><th>Group B</th><th>p</th></tr></thead><tbody>{rows}</tbody></table>"
            "<table-wrap-foot><fn><p>Values are mean ± SD.</p></fn></table-wrap-foot></table-wrap>"
        )

    def body(self, body: str) -> str:
        intro = self._paragraphs(_RELATED, int(self.rng.integers(2, 5)))
        methods = self._paragraphs(_METHOD_DETAIL, int(self.rng.integers(2, 5)))
        if self.rng.random() < 0.5:
            methods += self._table()
        discussion = self._paragraphs(_RELATED, int(self.rng.integers(3, 6)))
        for sec, extra in (('id="s1"', intro), ('id="s2"', methods), ('id="s4"', discussion)):
            start = body.index(f"<sec {sec}>")
            end = body.index("</sec>", start)
            body = body[:end] + extra + body[end:]
        return body

    def back(self, back: str) -> str:
        refs = "".join(self._reference(k) for k in range(_FIRST_REF, _FIRST_REF + self.refs))
        ack = "<ack><p>We thank the patients and the staff of the imaging department.</p></ack>"
        back = back.replace("<back>", f"<back>{ack}", 1)
        return back.replace("</ref-list>", f"{refs}</ref-list>", 1)

    def _reference(self, k: int) -> str:
        rng = self.rng
        names = "".join(
            f"<name><surname>{escape(_pick(rng, _SURNAMES))}</surname><given-names>"
            f"{escape(_pick(rng, _GIVEN)[0])}</given-names></name>"
            for _ in range(int(rng.integers(1, 7)))
        )
        year = int(rng.integers(1990, 2025))
        first_page = int(rng.integers(1, 2000))
        return (
            f'<ref id="B{k}"><label>{k}</label><element-citation publication-type="journal">'
            f'<person-group person-group-type="author">{names}</person-group><article-title>'
            f"{escape(_cap(_pick(rng, _RELATED).format(t=self.topic, c='')))}</article-title>"
            f"<source>{_pick(rng, _JOURNAL_ABBREVS)}</source><year>{year}</year>"
            f"<volume>{int(rng.integers(1, 400))}</volume><fpage>{first_page}</fpage>"
            f"<lpage>{first_page + int(rng.integers(3, 20))}</lpage>"
            f'<pub-id pub-id-type="pmid">{int(rng.integers(1_000_000, 39_000_000))}</pub-id>'
            f'<pub-id pub-id-type="doi">10.{int(rng.integers(1000, 9999))}/{int(rng.integers(10**6, 10**7))}'
            "</pub-id></element-citation></ref>"
        )


def _article_title(rng: np.random.Generator, figs: list[_FigSpec], topic: str) -> str:
    if figs and rng.random() < 0.5:
        return f"{_cap(figs[0].panels[0].modality.name)} findings in {topic}: a report"
    return _pick(
        rng,
        (
            f"New insights into {topic}",
            f"Characterisation of {topic} in a cohort of {int(rng.integers(12, 400))} patients",
            f"Mechanisms of {topic} revisited",
        ),
    )


_BLOCK_END_RE = re.compile(
    r"</(?:front|journal-meta|article-meta|body|sec|fig|fig-group|back|ref|floats-group)>"
)


def _article_xml(
    rng: np.random.Generator, meta: _Meta, figs: list[_FigSpec], prose: np.random.Generator
) -> bytes:
    """The whole document in one of three wrappers, UTF-8 or ASCII with character references.

    ``prose`` draws the scholarly bulk (see ``_ScholarlyBulk``) from its own stream, so that bulk
    can change without changing any figure, caption, citing sentence or metadata of a seed.
    """
    topic = _pick(rng, _TOPICS[figs[0].panels[0].modality.id if figs else _pick(rng, MODALITIES).id])
    title = _article_title(rng, figs, topic)
    front = _front_xml(rng, meta, title, topic)
    body, floats = _body_xml(rng, meta, figs, topic)
    bulk = _ScholarlyBulk(prose, topic)
    front, body = bulk.front(front), bulk.body(body)
    back = bulk.back(_back_xml(rng))
    inner = _BLOCK_END_RE.sub(r"\g<0>\n", f"\n{front}{body}{back}{floats}")
    attrs = f'article-type="{meta.article_type}" dtd-version="1.3" xml:lang="en"'
    decl = '<?xml version="1.0" encoding="UTF-8"?>\n'
    if meta.wrapper == "bare":
        doc = f"{_bare_head(rng)}<article {_XLINK} {attrs}>{_pi(rng)}{inner}</article>\n"
    elif meta.wrapper == "articleset":
        doc = (
            f"{decl}<pmc-articleset><article {_XLINK} {attrs}>{_pi(rng)}{inner}</article></pmc-articleset>\n"
        )
    else:
        doc = decl + _oai_wrap(
            meta,
            f'<article xmlns="https://jats.nlm.nih.gov/ns/archiving/1.3/" {_XLINK} {attrs}>{inner}</article>',
        )
    data = doc.encode("ascii", "xmlcharrefreplace") if meta.ascii_refs else doc.encode("utf-8")
    return _malform(rng, data) if meta.malformed else data


def _bare_head(rng: np.random.Generator) -> str:
    """What precedes a bare ``<article>``: XML declaration and/or DOCTYPE, or a producer comment."""
    doctype = _DOCTYPE + "\n" if rng.random() < 0.5 else ""
    if rng.random() < 0.2:  # PMC's pipeline comment; an XML declaration may not follow a comment
        return "<!--\nFile produced by a synthetic pipelineRunner for tests\n-->\n" + doctype
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' if rng.random() < 0.8 else "") + doctype


def _pi(rng: np.random.Generator) -> str:
    """PMC's ``<?properties open_access?>`` processing instruction, in some files."""
    return "<?properties open_access?>" if rng.random() < 0.3 else ""


def _oai_wrap(meta: _Meta, article: str) -> str:
    num = meta.pmcid[3:]
    return (
        '<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.openarchives.org/'
        'OAI/2.0/ http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"><responseDate>2024-01-15T10:00:00Z'
        f'</responseDate><request verb="GetRecord" identifier="oai:pubmedcentral.nih.gov:{num}" '
        'metadataPrefix="pmc">https://www.ncbi.nlm.nih.gov/pmc/oai/oai.cgi</request><GetRecord><record><header>'
        f"<identifier>oai:pubmedcentral.nih.gov:{num}</identifier><datestamp>{meta.year}-{meta.month:02d}-"
        f"{meta.day:02d}</datestamp><setSpec>{meta.journal[2]}</setSpec></header><metadata>{article}</metadata>"
        "</record></GetRecord></OAI-PMH>\n"
    )


def _malform(rng: np.random.Generator, data: bytes) -> bytes:
    """Damage the XML the way real files are damaged: truncated, raw ``&``, or a mismatched tag."""
    how = _pick(rng, ("truncate", "ampersand", "mismatch"))
    if how == "truncate":
        return data[: int(len(data) * rng.uniform(0.3, 0.9))]
    if how == "ampersand":
        return data.replace(b"<p>", b"<p>R&D and P&L notes: ", 1)
    return data.replace(b"</title-group>", b"</title-grp>", 1)
