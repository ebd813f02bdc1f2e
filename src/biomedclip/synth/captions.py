"""Captions that describe what a figure's panels show, plus realistic distractor sentences.

Captions are written in a mini markup (``[i] [b] [sup] [sub]``) that becomes JATS ``<italic>``
``<bold>`` ``<sup>`` ``<sub>`` in the XML (:func:`_jats`) and is flattened the way a JATS parser
flattens it for the ground-truth caption (:func:`_plain`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.sax.saxutils import escape

import numpy as np

from biomedclip.synth.sampling import _cap, _pick
from biomedclip.synth.specs import _FigSpec, _Panel
from biomedclip.synth.vocab import _COUNT_WORDS, Modality

_MARKUP = {
    "[i]": "<italic>",
    "[/i]": "</italic>",
    "[b]": "<bold>",
    "[/b]": "</bold>",
    "[sup]": "<sup>",
    "[/sup]": "</sup>",
    "[sub]": "<sub>",
    "[/sub]": "</sub>",
}
_MARK_RE = re.compile(r"\[/?(?:i|b|sup|sub)\]")


def _jats(text: str) -> str:
    """Mini-markup text → escaped JATS mixed content."""
    return _MARK_RE.sub(lambda m: _MARKUP[m.group()], escape(text))


def _plain(text: str) -> str:
    """Mini-markup text → the flattened, whitespace-normalised text a JATS parser yields."""
    return " ".join(_MARK_RE.sub("", text).split())


def _age_sex(rng: np.random.Generator) -> str:
    """``"a 54-year-old woman"`` (with ``an`` before 8, 11, 18, 80–89)."""
    age = int(rng.integers(19, 88))
    article = "an" if str(age).startswith("8") or age in (11, 18) else "a"
    return f"{article} {age}-year-old {_pick(rng, ('man', 'woman', 'male patient', 'female patient'))}"


def _fill(rng: np.random.Generator, template: str) -> str:
    """Fill ``{n}``-style placeholders with small random numbers and phrases."""
    return template.format(
        n=int(rng.integers(3, 25)),
        k=int(rng.integers(2, 6)),
        d=int(rng.integers(1, 15)),
        m=int(rng.integers(2, 13)),
        um=_pick(rng, (10, 20, 25, 50, 100, 200)),
        mag=_pick(rng, (100, 200, 400)),
        p=_pick(rng, ("0.01", "0.03", "0.002", "0.04")),
        pt=_age_sex(rng),
        obj=_pick(rng, ("63×/1.4 NA oil", "40×/1.3 NA oil", "20×/0.8 NA")),
        scope=_pick(rng, ("Zeiss LSM 880", "Leica SP8", "Nikon A1R", "Olympus FV3000")),
        tesla=_pick(rng, ("1.5", "3")),
    )


# Distractor sentences come in groups; a caption takes at most one sentence per group, so it never
# states two patient ages or two scale bars.
_PATIENT = ("Images of {pt}.", "The patient was {pt} admitted with acute symptoms.", "Imaging of {pt}.")
_CLINICAL = (
    _PATIENT,
    (
        "Images obtained on day {d} after admission.",
        "Follow-up imaging after {m} months is shown in Supplementary Figure S{k}.",
    ),
    (
        "Written informed consent for publication was obtained.",
        "The study was approved by the institutional review board (protocol {n}-{d}).",
    ),
)
_MICRO = (
    ("Scale bar, {um} µm.", "Scale bars: {um} µm.", "Original magnification ×{mag}."),
    (
        "Representative images from {k} independent experiments.",
        "Images were acquired on a {scope} with a {obj} objective.",
    ),
)
_STATS = (
    (
        "Data are presented as mean ± SD ([i]n[/i] = {n}).",
        "Error bars indicate SEM; [i]n[/i] = {n} biological replicates.",
    ),
    (
        "*[i]p[/i] < 0.05, **[i]p[/i] < 0.01 by two-tailed Student's [i]t[/i]-test.",
        "One-way ANOVA with Tukey's post hoc test; [i]P[/i] = {p}.",
    ),
    (
        "Cells were seeded at 10[sup]5[/sup] per well.",
        "Values are normalised to the control condition (set to 1).",
    ),
)
_HISTO_EXTRA = (
    ("Sections were stained with haematoxylin and eosin.", "Formalin-fixed, paraffin-embedded section."),
)


def _syn(rng: np.random.Generator, mod: Modality) -> str:
    """A modality phrase; the class name itself in about 40 % of captions."""
    return mod.name if rng.random() < 0.4 else _pick(rng, mod.synonyms)


def _lead_cxr(rng: np.random.Generator, p: _Panel) -> list[str]:
    a, syn = p.attrs, _syn(rng, p.modality)
    verb = _pick(rng, ("showing", "demonstrating", "revealing", "with"))
    arrow = " (arrow)" if p.extras["arrow"] else ""
    if a["finding"] == "normal":
        what = _pick(
            rng,
            (
                "clear lung fields and no focal opacity",
                "no acute cardiopulmonary abnormality",
                "normal findings with clear lungs",
            ),
        )
        return [
            f"{_cap(syn)} {verb} {what}.",
            _pick(rng, ("The cardiac silhouette is normal.", "No pleural effusion or pneumothorax.")),
        ]
    where = f"{a['position']} {a['zone']} zone"
    if a["finding"] == "opacity":
        shape = "round" if a["shape"] == "round" else _pick(rng, ("irregular", "irregular, ill-defined"))
        first = f"{_cap(syn)} {verb} a {a['size']} {shape} opacity in the {where}{arrow}."
    else:
        n = a["count"]
        noun = "nodule" if n == 1 else "nodules"
        first = f"{_cap(syn)} {verb} {_COUNT_WORDS[n]} small round {noun} in the {where}{arrow}."
    other = "right" if a["position"] == "left" else "left"
    # Naming the other side is realistic but muddles left/right for a small text encoder: rarely.
    second = f"The {other} lung is clear." if rng.random() < 0.25 else "The contralateral lung is clear."
    return [first, _pick(rng, (second, "No pleural effusion.", "Heart size is normal."))]


def _lead_mri(rng: np.random.Generator, p: _Panel) -> list[str]:
    a, syn = p.attrs, _syn(rng, p.modality)
    seq = a["sequence"]
    head = f"{_pick(rng, ('Axial', 'Axial', 'Transverse'))} {seq} {syn}"
    if a["finding"] == "normal":
        return [
            f"{head} without a focal lesion; the ventricles are symmetric.",
            _pick(rng, ("No midline shift.", "Normal grey–white matter differentiation.")),
        ]
    lobe = "frontal" if a["zone"] == "upper" else "occipital"
    kind = "hyperintense" if seq == "T2-weighted" else "ring-enhancing"
    arrow = " (arrow)" if p.extras["arrow"] else ""
    first = (
        f"{head} showing a {a['size']} {a['shape']} {kind} mass in the {a['position']} {lobe} lobe"
        f" ({a['position']} {a['zone']} part of the image){arrow}."
    )
    return [
        first,
        _pick(
            rng, ("Note the surrounding oedema.", "There is mild mass effect.", "Biopsy confirmed a glioma.")
        ),
    ]


def _lead_us(rng: np.random.Generator, p: _Panel) -> list[str]:
    a, syn = p.attrs, _syn(rng, p.modality)
    organ = p.extras["organ"]
    if a["finding"] == "normal":
        return [f"{_cap(syn)} of the {organ} showing homogeneous echotexture without a focal lesion."]
    depth = "superficial" if a["zone"] == "upper" else "deep"
    arrow = " (arrow)" if p.extras["arrow"] else ""
    if a["finding"] == "cyst":
        first = (
            f"{_cap(syn)} of the {organ} showing a {a['size']} round anechoic cyst on the "
            f"{a['position']} side of the image, {depth} ({a['zone']} part){arrow}."
        )
        return [first, "Note the posterior acoustic enhancement."]
    first = (
        f"{_cap(syn)} of the {organ} showing a {a['size']} irregular hypoechoic mass on the "
        f"{a['position']} side of the image, {depth} ({a['zone']} part){arrow}."
    )
    return [first, "Posterior acoustic shadowing is present."]


def _lead_histo(rng: np.random.Generator, p: _Panel) -> list[str]:
    a, syn = p.attrs, _syn(rng, p.modality)
    organ = p.extras["organ"]
    if a["finding"] == "normal":
        return [f"{_cap(syn)} of {organ} tissue showing normal architecture without atypia."]
    extent = "small focus" if a["size"] == "small" else "large area"
    return [
        f"{_cap(syn)} of a {organ} biopsy showing a {extent} of tumour in the {a['position']} half of "
        "the field.",
        _pick(
            rng,
            (
                "Tumour cells have crowded hyperchromatic nuclei.",
                "Note the dense, dark nuclei of the tumour cells.",
            ),
        ),
    ]


_FLUO_TARGETS = {
    "green": ("GFP", "α-tubulin (Alexa Fluor 488)", "LC3", "vimentin"),
    "red": ("phalloidin", "mCherry", "TOM20", "Ki-67 (Alexa Fluor 594)"),
    "blue": ("DAPI", "Hoechst 33342", "lamin B1 (Alexa Fluor 405)"),
}


def _lead_fluo(rng: np.random.Generator, p: _Panel) -> list[str]:
    a, syn = p.attrs, _syn(rng, p.modality)
    n, colour = a["count"], a["colour"]
    what = f"{_COUNT_WORDS[n]} {p.extras['cell_line']} {'cell' if n == 1 else 'cells'}"
    if n == 1 and rng.random() < 0.5:
        what = f"a single {p.extras['cell_line']} cell"
    target = _pick(rng, _FLUO_TARGETS[colour])
    return [f"{_cap(syn)} of {what} stained for {target} ({colour})."]


def _lead_fundus(rng: np.random.Generator, p: _Panel) -> list[str]:
    a, syn = p.attrs, _syn(rng, p.modality)
    eye = p.extras["eye"]
    head = f"{_cap(syn)} of the {eye} eye"
    if a["finding"] == "normal":
        return [f"{head} showing a normal optic disc, macula and vessels."]
    if a["finding"] == "haemorrhage":
        word = _pick(rng, ("haemorrhages", "hemorrhages"))
        return [
            f"{head} showing multiple dark red retinal {word}.",
            _pick(rng, ("Findings consistent with diabetic retinopathy.", "Dot-blot pattern.")),
        ]
    return [
        f"{head} showing yellow hard exudates around the macula.",
        _pick(rng, ("Findings consistent with diabetic macular oedema.", "Visual acuity was 20/40.")),
    ]


def _lead_blot(rng: np.random.Generator, p: _Panel) -> list[str]:
    syn = _syn(rng, p.modality)
    prot = _pick(rng, ("p-ERK", "p-AKT", "cleaved caspase-3", "LC3-II", "HIF-1α", "p53"))
    load = _pick(rng, ("β-actin", "GAPDH", "total ERK", "vinculin"))
    drug = _pick(rng, ("rapamycin", "cisplatin", "TNF-α", "siRNA", "doxorubicin"))
    return [
        f"{_cap(syn)} of {prot} in lysates treated with {drug} or vehicle; {load} served as the loading "
        "control.",
        _pick(
            rng, ("Molecular weights (kDa) are indicated.", "Uncropped blots are in Supplementary Figure S1.")
        ),
    ]


def _lead_chart(rng: np.random.Generator, p: _Panel) -> list[str]:
    a = p.attrs
    kind = a["chart_type"]
    if rng.random() < 0.45:
        syn = kind
    else:
        syn = (
            _pick(rng, ("bar chart", "bar graph"))
            if kind == "bar chart"
            else _pick(rng, ("line chart", "line graph", "line plot"))
        )
    part = "bars" if kind == "bar chart" else "line"
    what = _pick(
        rng,
        ("relative mRNA expression", "tumour volume", "cell viability", "body weight", "serum IL-6 levels"),
    )
    return [f"{_cap(syn)} of {what} ({a['colour']} {part})."]


_LEADS: dict[str, Callable[[np.random.Generator, _Panel], list[str]]] = {
    "chest_xray": _lead_cxr,
    "brain_mri": _lead_mri,
    "ultrasound": _lead_us,
    "histopathology": _lead_histo,
    "fluorescence": _lead_fluo,
    "fundus": _lead_fundus,
    "western_blot": _lead_blot,
    "chart": _lead_chart,
}
_DISTRACTORS: dict[str, tuple[tuple[str, ...], ...]] = {
    "chest_xray": _CLINICAL,
    "brain_mri": _CLINICAL + (("Imaging at {tesla} T.",),),
    "ultrasound": _CLINICAL,
    "histopathology": _MICRO[:1] + _HISTO_EXTRA + _CLINICAL[:1],
    "fluorescence": _MICRO + _STATS[2:],
    "fundus": _CLINICAL,
    "western_blot": _STATS + _MICRO[1:],
    "chart": _STATS,
}
_TITLES: dict[str, tuple[str, ...]] = {
    "chest_xray": ("Chest imaging at presentation.", "Radiological findings.", "Imaging findings."),
    "brain_mri": ("Neuroimaging findings.", "Brain imaging at diagnosis.", "Imaging findings."),
    "ultrasound": ("Sonographic findings.", "Ultrasound examination.", "Imaging findings."),
    "histopathology": (
        "Histopathological findings.",
        "Pathology of the resected specimen.",
        "Microscopic findings.",
    ),
    "fluorescence": ("Subcellular localisation.", "Immunofluorescence analysis.", "Cell imaging."),
    "fundus": ("Retinal findings.", "Ophthalmological examination.", "Fundus examination."),
    "western_blot": (
        "Protein expression analysis.",
        "Immunoblot analysis.",
        "Protein levels after treatment.",
    ),
    "chart": ("Quantification.", "Quantitative analysis.", "Treatment effect."),
}


def _caption(rng: np.random.Generator, fig: _FigSpec) -> None:
    """Fill ``fig.title``/``fig.paragraphs`` (and ``fig.lead`` for the citing sentence)."""
    first = fig.panels[0].modality
    title = _pick(rng, _TITLES[first.id]) if rng.random() < 0.85 else ""
    leads = [_LEADS[panel.modality.id](rng, panel) for panel in fig.panels]
    fig.lead = _plain(leads[0][0]).rstrip(".")
    if fig.compound:
        bold = rng.random() < 0.5
        body = [
            f"{f'[b]({letter})[/b]' if bold else f'({letter})'} {' '.join(sentences)}"
            for letter, sentences in zip("AB", leads, strict=True)
        ]
    else:
        body = leads[0]
    pool = _DISTRACTORS[first.id]
    groups = rng.permutation(len(pool))[: int(rng.integers(1, 4))]
    extra = [_fill(rng, _pick(rng, pool[int(i)])) for i in groups]
    if rng.random() < 0.5 or len(body) + len(extra) < 3:
        fig.paragraphs = [" ".join(body + extra)]
    else:
        fig.paragraphs = [" ".join(body), " ".join(extra)]
    fig.title = title
