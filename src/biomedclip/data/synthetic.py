"""Synthetic PMC Open Access corpus: JATS articles whose figure captions describe their images.

Why it exists: the demo and the training/evaluation tests need a corpus that (1) looks like the real
PMC OA inputs to every data-pipeline stage — nested folders of ``.nxml`` + media, legacy ``.tar.gz``
packages, three XML wrappers, extension-less graphic hrefs, mixed image formats (palette PNG,
16-bit TIFF, CMYK JPEG, GIF thumbnails) and a few broken items — and (2) carries a signal a tiny
CLIP can learn in minutes on CPU: every modality has a look that survives a 96 px resize, and the
captions name the modality (with synonyms) and the finding attributes the pixels actually show.

Outputs of :func:`synthesize` (``OUT`` = the output folder):

* ``folders/<group>/<PMCID>/<PMCID>.nxml`` + media files beside it,
* ``packages/<PMCID>.tar.gz`` (top folder ``<PMCID>/`` with ``<stem>.nxml``, ``<stem>.pdf``, media
  and ``.gif`` thumbnails beside full-size ``.jpg`` files),
* ``labels.jsonl`` — one row per ``<fig>``: ``key`` (:func:`records.make_key`), modality, finding
  attributes, ``compound``, ``broken`` and the plain caption (ground truth joined to shards by key),
* ``classes.json`` — class names and prompt templates for zero-shot evaluation,
* ``summary.json`` — the counts of :class:`SynthSummary`.

Positions (``left``/``right``, ``upper``/``lower``) always mean *as seen in the image* — no
radiological left/right swap — so one caption word maps to one image half in every modality.

Determinism: each article draws from its own RNG seeded with ``(seed, index)``; tar/gzip headers
use fixed mtimes, owners and member order; so one seed gives byte-identical files for any number
of workers (on the same numpy/Pillow/zlib builds).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import multiprocessing
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from biomedclip.data.records import make_key

__all__ = [
    "ATTRIBUTE_CLASSES",
    "BROKEN_KINDS",
    "MODALITIES",
    "Modality",
    "SynthSummary",
    "classes_spec",
    "synthesize",
]

# --------------------------------------------------------------------------------------------------
# Vocabulary: modalities, attributes, prompt templates (the contract with zero-shot evaluation)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Modality:
    """One imaging modality: its label/prompt name, caption synonyms and which attributes it has.

    ``name`` is the class name used in ``labels.jsonl`` and zero-shot prompts, so it also appears
    verbatim in a good share of captions (the text encoder must have seen it). ``synonyms`` are the
    phrases captions use to name it; every non-broken caption contains at least one of them.
    """

    id: str
    name: str
    synonyms: tuple[str, ...]
    aspect: tuple[float, float]
    attributes: tuple[str, ...]


MODALITIES: tuple[Modality, ...] = (
    Modality(
        "chest_xray",
        "chest X-ray",
        (
            "chest X-ray",
            "chest radiograph",
            "posteroanterior chest radiograph",
            "frontal chest X-ray",
            "PA chest X-ray",
            "CXR",
            "chest radiography",
        ),
        (0.82, 1.0),
        ("finding", "position", "zone", "size", "shape", "count"),
    ),
    Modality(
        "brain_mri",
        "brain MRI",
        (
            "brain MRI",
            "MRI of the brain",
            "brain MR image",
            "cranial MRI",
            "brain magnetic resonance imaging",
        ),
        (0.85, 1.0),
        ("finding", "position", "zone", "size", "shape", "sequence"),
    ),
    Modality(
        "ultrasound",
        "ultrasound",
        (
            "ultrasound",
            "ultrasound image",
            "ultrasonography",
            "sonogram",
            "B-mode ultrasound",
            "sonographic image",
        ),
        (1.25, 1.45),
        ("finding", "position", "zone", "size", "shape"),
    ),
    Modality(
        "histopathology",
        "histopathology",
        (
            "histopathology",
            "histology",
            "H&E staining",
            "haematoxylin and eosin staining",
            "hematoxylin and eosin (H&E) staining",
            "H&E-stained section",
            "photomicrograph",
        ),
        (1.0, 1.5),
        ("finding", "position", "size"),
    ),
    Modality(
        "fluorescence",
        "fluorescence microscopy",
        (
            "fluorescence microscopy",
            "immunofluorescence",
            "confocal microscopy",
            "fluorescence image",
            "immunofluorescence staining",
            "confocal image",
        ),
        (1.0, 1.2),
        ("count", "colour"),
    ),
    Modality(
        "fundus",
        "fundus photograph",
        (
            "fundus photograph",
            "fundus photography",
            "colour fundus photograph",
            "color fundus photo",
            "retinal photograph",
            "fundus image",
        ),
        (1.25, 1.5),
        ("finding",),
    ),
    Modality(
        "western_blot",
        "western blot",
        ("western blot", "Western blot", "immunoblot", "immunoblotting", "western blotting"),
        (1.5, 2.0),
        (),
    ),
    Modality(
        "chart",
        "chart",
        ("chart", "bar chart", "bar graph", "line chart", "line graph", "line plot"),
        (1.2, 1.5),
        ("chart_type", "colour"),
    ),
)
_BY_ID: dict[str, Modality] = {m.id: m for m in MODALITIES}

#: Attribute → class names. Label values equal the class name, except ``count`` (an int 1–4 whose
#: class name is the number word) and ``finding``, which is ``null`` for modalities without one.
ATTRIBUTE_CLASSES: dict[str, tuple[str, ...]] = {
    "finding": ("normal", "opacity", "nodule", "mass", "cyst", "tumour", "haemorrhage", "exudate"),
    "position": ("left", "right"),
    "zone": ("upper", "lower"),
    "size": ("small", "large"),
    "shape": ("round", "irregular"),
    "count": ("one", "two", "three", "four"),
    "colour": ("red", "green", "blue"),
    "sequence": ("T1-weighted", "T2-weighted"),
    "chart_type": ("bar chart", "line chart"),
}
_ATTR_NAMES: tuple[str, ...] = tuple(ATTRIBUTE_CLASSES)
_FINDINGS_BY_MODALITY: dict[str, tuple[str, ...]] = {
    "chest_xray": ("normal", "opacity", "nodule"),
    "brain_mri": ("normal", "mass"),
    "ultrasound": ("normal", "cyst", "mass"),
    "histopathology": ("normal", "tumour"),
    "fundus": ("normal", "haemorrhage", "exudate"),
}
# Prompts in the captions' own phrasing ("CXR showing ...", "Fundus photograph."). CLIP-style
# "a {} image" prompts measured 0.71 zero-shot accuracy where these reach 0.9 with the same tiny
# model: in this corpus "image" itself marks modalities ("fundus image", "ultrasound image"), so a
# small text tower reads the template word as a class cue.
_MODALITY_TEMPLATES = ("{}", "{}.", "{} showing")
_ATTR_TEMPLATES: dict[str, tuple[str, ...]] = {
    "finding": ("{}", "an image showing {}", "{} presented in image"),
    "position": ("a lesion on the {} side", "{} sided finding", "finding in the {} half of the image"),
    "zone": ("a lesion in the {} zone", "finding in the {} part of the image"),
    "size": ("a {} lesion", "a {} finding"),
    "shape": ("a {} lesion", "a {} opacity"),
    "count": ("{} cells", "an image of {} cells", "{} objects presented in image"),
    "colour": ("{} fluorescence", "{} cells", "a {} image"),
    "sequence": ("a {} MRI", "{} image"),
    "chart_type": ("a {}", "{} presented in image"),
}
_COUNT_WORDS = ("zero", "one", "two", "three", "four")

#: Kinds of deliberately broken items; ``malformed_xml`` is per article, the others per figure.
BROKEN_KINDS: tuple[str, ...] = (
    "missing_graphic",
    "no_caption",
    "corrupt_image",
    "zero_byte_image",
    "malformed_xml",
)
_FIGURE_BROKEN_KINDS = BROKEN_KINDS[:4]


def classes_spec() -> dict[str, Any]:
    """The ``classes.json`` document: modality and attribute class names plus prompt templates."""
    attrs: dict[str, Any] = {}
    for name, classes in ATTRIBUTE_CLASSES.items():
        entry: dict[str, Any] = {
            "classes": list(classes),
            "templates": list(_ATTR_TEMPLATES[name]),
            "modalities": [m.name for m in MODALITIES if name in m.attributes],
        }
        if name == "count":
            entry["values"] = [1, 2, 3, 4]
        if name == "finding":
            entry["by_modality"] = {_BY_ID[k].name: list(v) for k, v in _FINDINGS_BY_MODALITY.items()}
        attrs[name] = entry
    return {
        "modality": {
            "classes": [m.name for m in MODALITIES],
            "ids": [m.id for m in MODALITIES],
            "synonyms": {m.name: list(m.synonyms) for m in MODALITIES},
            "templates": list(_MODALITY_TEMPLATES),
        },
        "attributes": attrs,
        "notes": "Positions are as seen in the image (viewer's left/right). Evaluate modality on "
        "non-compound, non-broken figures; attributes only where the label is not null.",
    }


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Config:
    """Per-run settings shipped to worker processes (picklable, small)."""

    out: str
    seed: int
    package_fraction: float
    broken_fraction: float
    image_size: int


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
            raise FileExistsError(f"{out} is not empty; choose a new folder or pass overwrite=True")
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


# --------------------------------------------------------------------------------------------------
# Random helpers
# --------------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    """Uniform choice that keeps Python types (``rng.choice`` would return numpy scalars)."""
    return seq[int(rng.integers(len(seq)))]


def _pickw(rng: np.random.Generator, seq: Sequence[Any], weights: Sequence[float]) -> Any:
    """Weighted choice over a short sequence."""
    cum = np.cumsum(weights)
    return seq[int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))]


def _cap(text: str) -> str:
    """Capitalise the first letter only (``"chest X-ray"`` → ``"Chest X-ray"``, keeps ``CXR``)."""
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------------------
# Figure specs: what each figure shows (sampled before drawing so caption and pixels agree)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Panel:
    """One image panel: modality, label attributes and caption/drawing-only extras."""

    modality: Modality
    attrs: dict[str, Any]
    extras: dict[str, Any]


@dataclass
class _FigSpec:
    """One ``<fig>``: ids, panels, media file, caption and whether/how it is broken."""

    fig_id: str
    label: str
    panels: list[_Panel]
    media: str
    href: str
    fmt: str
    broken: str | None
    title: str = ""
    paragraphs: list[str] = field(default_factory=list)
    group: str | None = None
    lead: str = ""

    @property
    def compound(self) -> bool:
        return len(self.panels) > 1


def _sample_attrs(rng: np.random.Generator, mod: Modality) -> _Panel:
    """Label attributes + extras for one panel of ``mod``."""
    attrs: dict[str, Any] = dict.fromkeys(_ATTR_NAMES)
    extras: dict[str, Any] = {"arrow": False}
    sampler = _ATTR_SAMPLERS.get(mod.id)
    if sampler is not None:
        sampler(rng, attrs, extras)
    return _Panel(mod, attrs, extras)


def _lesion_common(rng: np.random.Generator, attrs: dict[str, Any]) -> None:
    attrs["position"] = _pick(rng, ("left", "right"))
    attrs["zone"] = _pick(rng, ("upper", "lower"))
    attrs["size"] = _pick(rng, ("small", "large"))


def _attrs_cxr(rng: np.random.Generator, attrs: dict[str, Any], extras: dict[str, Any]) -> None:
    attrs["finding"] = _pickw(rng, ("normal", "opacity", "nodule"), (0.3, 0.4, 0.3))
    if attrs["finding"] == "normal":
        return
    _lesion_common(rng, attrs)
    if attrs["finding"] == "opacity":
        attrs["shape"] = _pick(rng, ("round", "irregular"))
    else:
        attrs.update(size="small", shape="round", count=int(rng.integers(1, 4)))
    extras["arrow"] = bool(rng.random() < 0.35)


def _attrs_mri(rng: np.random.Generator, attrs: dict[str, Any], extras: dict[str, Any]) -> None:
    attrs["sequence"] = _pick(rng, ("T1-weighted", "T2-weighted"))
    attrs["finding"] = _pickw(rng, ("normal", "mass"), (0.35, 0.65))
    if attrs["finding"] == "mass":
        _lesion_common(rng, attrs)
        attrs["shape"] = _pick(rng, ("round", "irregular"))
        extras["arrow"] = bool(rng.random() < 0.3)


def _attrs_us(rng: np.random.Generator, attrs: dict[str, Any], extras: dict[str, Any]) -> None:
    attrs["finding"] = _pickw(rng, ("normal", "cyst", "mass"), (0.3, 0.4, 0.3))
    extras["organ"] = _pick(rng, ("thyroid", "liver", "breast", "kidney", "testis", "neck"))
    if attrs["finding"] != "normal":
        _lesion_common(rng, attrs)
        attrs["shape"] = "round" if attrs["finding"] == "cyst" else "irregular"
        extras["arrow"] = bool(rng.random() < 0.25)


def _attrs_histo(rng: np.random.Generator, attrs: dict[str, Any], extras: dict[str, Any]) -> None:
    attrs["finding"] = _pickw(rng, ("normal", "tumour"), (0.4, 0.6))
    extras["organ"] = _pick(rng, ("liver", "colon", "breast", "lung", "kidney", "skin", "stomach"))
    if attrs["finding"] == "tumour":
        attrs["position"] = _pick(rng, ("left", "right"))
        attrs["size"] = _pick(rng, ("small", "large"))


def _attrs_fluo(rng: np.random.Generator, attrs: dict[str, Any], extras: dict[str, Any]) -> None:
    attrs["count"] = int(rng.integers(1, 5))
    attrs["colour"] = _pick(rng, ("red", "green", "blue"))
    extras["cell_line"] = _pick(rng, ("HeLa", "U2OS", "HEK293T", "MCF-7", "COS-7", "NIH/3T3", "A549"))


def _attrs_fundus(rng: np.random.Generator, attrs: dict[str, Any], extras: dict[str, Any]) -> None:
    attrs["finding"] = _pickw(rng, ("normal", "haemorrhage", "exudate"), (0.34, 0.33, 0.33))
    extras["eye"] = _pick(rng, ("right", "left"))


def _attrs_chart(rng: np.random.Generator, attrs: dict[str, Any], extras: dict[str, Any]) -> None:
    attrs["chart_type"] = _pick(rng, ("bar chart", "line chart"))
    attrs["colour"] = _pick(rng, ("red", "green", "blue"))


_ATTR_SAMPLERS: dict[str, Callable[[np.random.Generator, dict[str, Any], dict[str, Any]], None]] = {
    "chest_xray": _attrs_cxr,
    "brain_mri": _attrs_mri,
    "ultrasound": _attrs_us,
    "histopathology": _attrs_histo,
    "fluorescence": _attrs_fluo,
    "fundus": _attrs_fundus,
    "chart": _attrs_chart,
}

# --------------------------------------------------------------------------------------------------
# Captions (mini markup: [i] [b] [sup] [sub] become JATS <italic> <bold> <sup> <sub>)
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Drawing primitives (numpy, vectorised; units = fraction of the image's short side)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """Pixel-centre coordinates in short-side units: circles stay round in any aspect ratio."""

    h: int
    w: int
    y: np.ndarray
    x: np.ndarray

    @property
    def hu(self) -> float:
        return self.h / min(self.h, self.w)

    @property
    def wu(self) -> float:
        return self.w / min(self.h, self.w)

    @property
    def px(self) -> float:
        return 1.0 / min(self.h, self.w)


def _grid(h: int, w: int) -> _Grid:
    s = float(min(h, w))
    y = ((np.arange(h, dtype=np.float32) + 0.5) / s)[:, None]
    x = ((np.arange(w, dtype=np.float32) + 0.5) / s)[None, :]
    return _Grid(h, w, y, x)


def _window(g: _Grid, cy: float, cx: float, reach: float) -> tuple[slice, slice]:
    """Pixel slices of the square of half-size ``reach`` around a point (clipped to the image)."""
    s = min(g.h, g.w)
    y0, y1 = max(0, int((cy - reach) * s)), min(g.h, int((cy + reach) * s) + 2)
    x0, x1 = max(0, int((cx - reach) * s)), min(g.w, int((cx + reach) * s) + 2)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _ellipse(
    g: _Grid, cy: float, cx: float, ry: float, rx: float, soft: float, angle: float = 0.0, mirror: float = 0.0
) -> np.ndarray:
    """Soft-edged filled ellipse mask in [0, 1].

    ``mirror`` > 0 draws the pair of ellipses centred ``mirror`` units left and right of ``cx``
    (their maximum) for the price of one: symmetric anatomy such as shoulders.
    """
    dy, dx = g.y - cy, g.x - cx
    if mirror:
        dx = np.abs(dx) - mirror
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = dx * c + dy * s, dy * c - dx * s
    d = np.sqrt((dy / ry) ** 2 + (dx / rx) ** 2)
    return np.clip((1.0 - d) * (min(ry, rx) / max(soft, g.px)), 0.0, 1.0)


def _blob(
    g: _Grid, rng: np.random.Generator, cy: float, cx: float, r: float, *, irregular: bool, soft: float
) -> np.ndarray:
    """Round or irregular (random low harmonics of the radius) soft blob, computed in its window."""
    mask = np.zeros((g.h, g.w), np.float32)
    ys, xs = _window(g, cy, cx, r * 1.7 + soft)
    dy, dx = g.y[ys] - cy, g.x[:, xs] - cx
    dist = np.sqrt(dy * dy + dx * dx)
    if irregular:
        theta = np.arctan2(dy, dx)
        radius = np.full_like(dist, r)
        for k in range(2, 6):
            amp = rng.uniform(0.08, 0.2) / math.sqrt(k - 1)
            radius += r * amp * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    else:
        ecc = rng.uniform(0.9, 1.1)
        dist = np.sqrt(dy * dy * ecc + dx * dx / ecc)
        radius = r
    mask[ys, xs] = np.clip((radius - dist) / max(soft, g.px), 0.0, 1.0)
    return mask


def _noise(
    rng: np.random.Generator, g: _Grid, cell: float, stretch: tuple[float, float] = (1.0, 1.0)
) -> np.ndarray:
    """Smooth noise with feature size ``cell`` (units): random grid upsampled bicubically."""
    sh = max(2, round(g.hu / (cell * stretch[0])) + 1)
    sw = max(2, round(g.wu / (cell * stretch[1])) + 1)
    small = rng.standard_normal((sh, sw), dtype=np.float32)
    return np.asarray(Image.fromarray(small).resize((g.w, g.h), Image.Resampling.BICUBIC))


_GRAIN_SIDE = 1024


@lru_cache(maxsize=1)
def _grain_texture() -> np.ndarray:
    """A fixed field of Gaussian noise; images take a random window of it (fresh draws cost more)."""
    return np.random.default_rng(20240601).standard_normal((_GRAIN_SIDE, _GRAIN_SIDE), dtype=np.float32)


def _grain(rng: np.random.Generator, arr: np.ndarray, sigma: float) -> np.ndarray:
    """Per-pixel sensor noise (luminance only, so RGB images cost the same as grey ones)."""
    h, w = arr.shape[:2]
    if h <= _GRAIN_SIDE and w <= _GRAIN_SIDE:
        y0, x0 = int(rng.integers(_GRAIN_SIDE - h + 1)), int(rng.integers(_GRAIN_SIDE - w + 1))
        noise = _grain_texture()[y0 : y0 + h, x0 : x0 + w] * sigma
    else:
        noise = rng.standard_normal((h, w), dtype=np.float32) * sigma
    return arr + (noise[..., None] if arr.ndim == 3 else noise)


def _smooth(arr: np.ndarray, factor: float) -> np.ndarray:
    """Cheap blur of a 2-D float array: box-downscale then bilinear upscale."""
    h, w = arr.shape
    small = Image.fromarray(arr.astype(np.float32)).resize(
        (max(2, int(w / factor)), max(2, int(h / factor))), Image.Resampling.BOX
    )
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))


def _rgb(mask: np.ndarray, colour: Sequence[float]) -> np.ndarray:
    return mask[..., None] * np.asarray(colour, np.float32)


def _blend(base: np.ndarray, mask: np.ndarray, colour: Sequence[float]) -> np.ndarray:
    """Paint ``colour`` over an RGB ``base`` with opacity ``mask``."""
    m = mask[..., None]
    delta = np.asarray(colour, np.float32) - base
    delta *= m
    delta += base
    return delta


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at a pixel size (cached: loading costs more than drawing)."""
    return ImageFont.load_default(size=max(6, size))


def _overlay(
    arr: np.ndarray, draw_fn: Callable[[ImageDraw.ImageDraw], None], colour: float | Sequence[float] = 1.0
) -> np.ndarray:
    """Draw vector marks (arrows, text, scale bars) through an 8-bit mask onto a float image."""
    h, w = arr.shape[:2]
    mask_img = Image.new("L", (w, h), 0)
    draw_fn(ImageDraw.Draw(mask_img))
    box = mask_img.getbbox()
    if box is None:
        return arr
    x0, y0, x1, y1 = box
    mask = np.asarray(mask_img.crop(box), np.float32) / 255.0
    out = np.array(arr, dtype=np.float32, copy=True)
    if arr.ndim == 3:
        rgb = colour if isinstance(colour, Sequence) else (colour,) * 3
        out[y0:y1, x0:x1] = _blend(out[y0:y1, x0:x1], mask, rgb)
    else:
        value = colour if not isinstance(colour, Sequence) else float(np.mean(colour))
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1.0 - mask) + mask * value
    return out


def _arrow_fn(
    g: _Grid, cy: float, cx: float, r: float, from_left: bool
) -> Callable[[ImageDraw.ImageDraw], None]:
    """An arrow whose tip sits just outside a lesion of radius ``r`` at (cy, cx)."""
    s = min(g.h, g.w)
    sign = -1.0 if from_left else 1.0
    tip = ((cx + sign * (r + 0.02)) * s, (cy - (r + 0.02) * 0.7) * s)
    tail = (tip[0] + sign * 0.12 * s, tip[1] - 0.09 * s)
    width = max(1, round(0.012 * s))

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.line([tail, tip], fill=255, width=width)
        ux, uy = tip[0] - tail[0], tip[1] - tail[1]
        norm = math.hypot(ux, uy)
        ux, uy = ux / norm, uy / norm
        head = 0.045 * s
        left = (tip[0] - head * ux + head * 0.6 * uy, tip[1] - head * uy - head * 0.6 * ux)
        right = (tip[0] - head * ux - head * 0.6 * uy, tip[1] - head * uy + head * 0.6 * ux)
        d.polygon([tip, left, right], fill=255)

    return draw


def _scale_bar_fn(
    g: _Grid, length: float = 0.2, *, left: bool = False, thick: float = 0.02, margin: float = 0.06
) -> Callable[[ImageDraw.ImageDraw], None]:
    """A micrograph scale bar in the bottom-right (or bottom-left) corner; sizes in units."""
    s = min(g.h, g.w)

    def draw(d: ImageDraw.ImageDraw) -> None:
        x0 = margin * s if left else g.w - (margin + length) * s
        y1 = g.h - margin * s
        d.rectangle([x0, y1 - max(2, thick * s), x0 + length * s, y1], fill=255)

    return draw


def _text_fn(items: Sequence[tuple[float, float, str]], size: int) -> Callable[[ImageDraw.ImageDraw], None]:
    """Text labels at pixel positions (tick labels, vendor annotations, protein names)."""

    def draw(d: ImageDraw.ImageDraw) -> None:
        font = _font(size)
        for x, y, text in items:
            d.text((x, y), text, fill=255, font=font)

    return draw


# --------------------------------------------------------------------------------------------------
# Acquisition variation: what makes two real figures of one modality differ besides the finding
# --------------------------------------------------------------------------------------------------
# The data build drops perceptual duplicates (64-bit pHash, Hamming distance <= 4). pHash keeps only
# the signs of the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail, so it sees layout and
# illumination, not texture: two renders of one template that differ only in noise or a small lesion
# hash alike, and the build would throw away most of a modality. Real figures differ in exactly
# what pHash sees — patient size and positioning, field of view, exposure, uneven illumination,
# collimation borders, burnt-in annotations — so each renderer draws those per image from the
# article's RNG. Amplitudes are kept small enough that lesions stay in their image half/zone.
# The learnability tests train tiny linear pixel classifiers on ~45 images, so for lesion
# modalities the variation is mostly left-right symmetric (zoom, habitus, symmetric collimation,
# vertical illumination ramps) rather than sideways shifts, which would compete with the lesion.


def _zoom(img: np.ndarray, zoom: float, fill: float) -> np.ndarray:
    """Magnify (``zoom`` > 1, crops the borders) or shrink (< 1, pads with ``fill``) a grey image
    about its centre: field of view and patient-to-detector distance.

    One PIL box-resize (~0.2 ms at 256 px). A general affine resample would allow tilts and shifts
    but costs 3–4× more; tilts hardly change pHash, and shifts compete with the lesion side.
    """
    h, w = img.shape
    src = np.ascontiguousarray(img, dtype=np.float32)
    pad = 0
    if zoom < 1.0:
        pad = math.ceil(max(h, w) * (1.0 / zoom - 1.0) / 2.0) + 1
        src = np.pad(src, pad, constant_values=fill)
    half_w, half_h = w / zoom / 2.0, h / zoom / 2.0
    cx, cy = pad + w / 2.0, pad + h / 2.0
    box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    return np.asarray(Image.fromarray(src).resize((w, h), Image.Resampling.BILINEAR, box=box))


def _shading(
    rng: np.random.Generator, g: _Grid, ramp: float, vignette: float, *, vertical: bool = False
) -> np.ndarray:
    """Smooth multiplicative illumination: a ramp times an off-centre vignette (mean about 1).

    X-ray heel effect, MRI coil sensitivity, uneven microscope or fundus-camera illumination: all
    are low-frequency, which is what pHash (and a 96 px thumbnail) keeps. ``vertical`` keeps the
    ramp and the vignette centre near the vertical axis, for radiology where the ramp follows the
    body axis (X-ray tube anode–cathode axis, posterior head-coil elements): a left–right ramp
    there would mimic a one-sided finding.
    """
    if vertical:
        theta = math.pi / 2 + rng.normal(0.0, 0.15)
        vx = g.wu / 2 + rng.normal(0.0, 0.03)
    else:
        theta = rng.uniform(0.0, 2.0 * math.pi)
        vx = g.wu / 2 + rng.normal(0.0, 0.15)
    vy = g.hu / 2 + rng.normal(0.0, 0.15)
    slope = rng.uniform(-ramp, ramp)
    lin = 1.0 + slope * ((g.x - g.wu / 2) * math.cos(theta) + (g.y - g.hu / 2) * math.sin(theta))
    r2 = (g.y - vy) ** 2 + (g.x - vx) ** 2
    return (lin * (1.0 - rng.uniform(0.0, vignette) * r2)).astype(np.float32)


def _tone(img: np.ndarray, gain: float, level: float, gamma: float) -> np.ndarray:
    """Window/level and gamma (display processing differs between scanners and journals)."""
    return np.clip((img - level) * gain + level, 0.0, 1.0) ** gamma


def _collimate(rng: np.random.Generator, g: _Grid, img: np.ndarray, value: float) -> np.ndarray:
    """Set the borders outside a collimated field to ``value`` (X-ray shutters, a scanner's frame).

    Shutters move in pairs symmetric about the central ray, so the left and right (or top and
    bottom) borders get the same width: a one-sided bright edge would look like a one-sided finding.
    """
    s = min(g.h, g.w)
    out = np.array(img, dtype=np.float32, copy=True)
    pairs = _pick(rng, ((0,), (1,), (0, 1)))
    for axis in pairs:
        n = max(1, int(rng.uniform(0.02, 0.1) * s))
        if axis == 0:
            out[:n] = value
            out[-n:] = value
        else:
            out[:, :n] = value
            out[:, -n:] = value
    return out


def _corner_text(
    rng: np.random.Generator, g: _Grid, blocks: Sequence[Sequence[str]], size: int, margin: float = 0.025
) -> list[tuple[float, float, str]]:
    """Text items for :func:`_text_fn`: each block of lines in its own random image corner.

    Scanner/camera annotations (sequence, date, side marker) sit in the corners of real figures;
    right-hand blocks are right-aligned so they stay inside the image.
    """
    s = min(g.h, g.w)
    font = _font(size)
    step = size * 1.15
    items: list[tuple[float, float, str]] = []
    for block, corner in zip(blocks, rng.permutation(4), strict=False):
        y = margin * s if corner < 2 else g.h - margin * s - step * len(block)
        for line in block:
            x = margin * s if corner % 2 == 0 else g.w - margin * s - float(font.getlength(line))
            items.append((x, y, line))
            y += step
    return items


def _date(rng: np.random.Generator) -> str:
    """An ISO date as scanners and cameras burn into images (annotation text only)."""
    return f"{int(rng.integers(2008, 2024))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"


# --------------------------------------------------------------------------------------------------
# Modality renderers: (rng, grid, panel) → float32 image in [0, 1], (h, w) grey or (h, w, 3) RGB
# --------------------------------------------------------------------------------------------------

_SIZE_R = {"small": (0.045, 0.06), "large": (0.095, 0.12)}


def _lesion_radius(rng: np.random.Generator, size: str) -> float:
    lo, hi = _SIZE_R[size]
    return float(rng.uniform(lo, hi))


def _draw_cxr(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Chest radiograph: torso, dark lung fields, ribs, spine, heart; bright opacity/nodules.

    Habitus (torso width, shoulders and arms, abdomen), inspiration, heart size and positioning vary
    per patient; collimation, exposure, processing, side markers and text per department. Most of
    it is left–right symmetric and leaves the lungs in place, so the lesion side stays the
    strongest left–right signal in the image.
    """
    a, hu, wu = p.attrs, g.hu, g.wu
    cx = wu / 2 + rng.normal(0, 0.015)
    torso_w = rng.uniform(0.85, 1.15)  # habitus: soft tissue around the chest
    body = rng.uniform(0.95, 1.05)  # lung and rib-cage width
    insp = rng.uniform(0.92, 1.06)  # inspiration: lung height
    img = np.full((g.h, g.w), 0.05, np.float32)
    torso = np.maximum(
        _ellipse(g, hu * 0.8, cx, hu * 0.72, wu * 0.5 * torso_w, 0.06),
        _ellipse(g, 0.0, cx, hu * 0.3, wu * 0.12 * rng.uniform(0.85, 1.2), 0.03),
    )
    if rng.random() < 0.6:  # shoulders and upper arms at the upper outer corners
        ay, ar = hu * rng.uniform(0.05, 0.25), wu * rng.uniform(0.1, 0.18)
        torso = np.maximum(torso, _ellipse(g, ay, cx, hu * 0.3, ar, 0.05, mirror=wu * 0.48 * torso_w))
    img += (0.55 + rng.uniform(-0.05, 0.05)) * torso
    img += rng.uniform(-0.08, 0.15) * np.clip((g.y - hu * 0.82) / 0.1, 0.0, 1.0) * torso  # abdomen
    lw = wu * 0.2 * body
    lungs = np.maximum(
        _ellipse(g, hu * 0.49, cx - lw, hu * 0.31 * insp, wu * 0.155 * body, 0.04),
        _ellipse(g, hu * 0.5, cx + lw, hu * 0.29 * insp, wu * 0.15 * body, 0.04),
    )
    heart_w = rng.uniform(0.85, 1.2)
    heart = _ellipse(g, hu * 0.67, cx + wu * 0.06 * heart_w, hu * 0.15, wu * 0.17 * heart_w, 0.05)
    lungs = lungs * (1.0 - 0.85 * heart)
    img -= lungs * (0.36 + 0.04 * _noise(rng, g, 0.05))
    img += 0.1 * np.clip(1.0 - np.abs(g.x - cx) / (wu * 0.045), 0.0, 1.0) * torso
    dx = np.abs(g.x - cx)
    phase = (g.y - hu * 0.1 - 0.2 * dx - 1.3 * dx * dx) / (hu * 0.07 * insp)
    ribs = np.clip((np.cos(2 * math.pi * phase) - 0.5) * 2.5, 0.0, 1.0)
    cage = _ellipse(g, hu * 0.5, cx, hu * 0.38 * insp, wu * 0.42 * body, 0.05)
    cage *= np.clip((dx - wu * 0.05) / 0.03, 0.0, 1.0)
    img += ribs * cage * (0.03 + 0.09 * lungs)
    clav = np.clip(1.0 - np.abs(g.y - hu * 0.16 - 0.2 * np.abs(g.x - cx)) / 0.018, 0.0, 1.0)
    img += 0.12 * clav * (np.abs(g.x - cx) < wu * 0.3 * body) * torso
    if a["finding"] in ("opacity", "nodule"):
        img, target = _cxr_lesion(rng, g, a, img, cx, lw)
        if p.extras["arrow"]:
            img = _overlay(img, _arrow_fn(g, *target, from_left=a["position"] == "left"))
    img = _zoom(img, rng.uniform(0.94, 1.08), 0.05)  # detector distance; radiographers centre the chest
    img = img * _shading(rng, g, 0.25, 0.3, vertical=True) + rng.uniform(-0.04, 0.06)
    if rng.random() < 0.65:
        img = _collimate(rng, g, img, _pick(rng, (0.0, 0.02, 0.85, 0.95)))
    img = _overlay(img, _cxr_marks(rng, g), rng.uniform(0.8, 1.0))
    img = _grain(rng, img, rng.uniform(0.008, 0.03))
    img = _tone(img, rng.uniform(0.85, 1.2), 0.3, rng.uniform(0.8, 1.2))
    return img


def _cxr_marks(rng: np.random.Generator, g: _Grid) -> Callable[[ImageDraw.ImageDraw], None]:
    """Side marker (``R``/``L`` in a box) and the projection/date text radiographs carry."""
    s = min(g.h, g.w)
    size = round(rng.uniform(0.05, 0.085) * s)
    blocks: list[list[str]] = [[_pick(rng, ("R", "L"))]]
    if rng.random() < 0.3:
        blocks.append([_pick(rng, ("PA", "AP", "ERECT", "SUPINE", "PORTABLE"))])
    if rng.random() < 0.15:
        blocks.append([_date(rng), f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"])
    items = _corner_text(rng, g, blocks, size, margin=rng.uniform(0.02, 0.06))
    boxed = rng.random() < 0.5
    text = _text_fn(items, size)
    marker_x, marker_y, _ = items[0]

    def draw(d: ImageDraw.ImageDraw) -> None:
        if boxed:
            pad = 0.25 * size
            box = [marker_x - pad, marker_y - pad * 0.4, marker_x + size * 0.7 + pad, marker_y + size + pad]
            d.rectangle(box, outline=255, width=max(1, round(0.1 * size)))
        text(d)

    return draw


def _cxr_lesion(
    rng: np.random.Generator, g: _Grid, a: dict[str, Any], img: np.ndarray, cx: float, lw: float
) -> tuple[np.ndarray, tuple[float, float, float]]:
    side = -1.0 if a["position"] == "left" else 1.0
    ly = g.hu * (0.37 if a["zone"] == "upper" else 0.58) + rng.normal(0, 0.015)
    lx = cx + side * lw + rng.normal(0, 0.012)
    if a["finding"] == "opacity":
        r = _lesion_radius(rng, a["size"])
        blob = _blob(g, rng, ly, lx, r, irregular=a["shape"] == "irregular", soft=0.025)
        return img + rng.uniform(0.3, 0.4) * blob, (ly, lx, r)
    offsets = ((0.0, 0.0), (0.07, 0.04), (-0.05, 0.06), (0.05, -0.06))
    for dy, dx in offsets[: a["count"]]:
        r = rng.uniform(0.022, 0.03)
        img = img + 0.38 * _blob(g, rng, ly + dy, lx + side * dx, r, irregular=False, soft=0.008)
    return img, (ly, lx, 0.05)


def _draw_mri(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Axial brain MRI: black background, scalp ring, brain with sulci, butterfly ventricles.

    Head size and shape, slice level (ventricle size), head tilt, field of view, coil bias field,
    window/level, noise and the scanner's corner text vary per image.
    """
    a = p.attrs
    t2 = a["sequence"] == "T2-weighted"
    cy, cx = g.hu / 2 + rng.normal(0, 0.01), g.wu / 2 + rng.normal(0, 0.01)
    ry = rng.uniform(0.4, 0.46)
    rx, ang = ry * rng.uniform(0.74, 0.86), rng.normal(0, 0.05)
    head = _ellipse(g, cy, cx, ry, rx, 0.01, ang)
    scalp = rng.uniform(0.018, 0.032)
    skull = _ellipse(g, cy, cx, ry - scalp, rx - scalp, 0.006, ang)
    brain = _ellipse(g, cy, cx, ry - scalp - 0.02, rx - scalp - 0.02, 0.006, ang)
    wm = np.clip(
        (_ellipse(g, cy, cx, ry * 0.72, rx * 0.72, 0.08, ang) - 0.3 + 0.35 * _noise(rng, g, 0.05)) * 3, 0, 1
    )
    gm_v, wm_v, csf_v = (0.55, 0.4, 0.92) if t2 else (0.42, 0.58, 0.1)
    tissue = gm_v * (1 - wm) + wm_v * wm
    sulci = np.clip(1.0 - np.abs(_noise(rng, g, 0.035)) * 5.0, 0.0, 1.0) * (1 - wm)
    vs = rng.uniform(0.65, 1.35)  # slice level and age: ventricle size
    vy = cy - 0.02 + rng.normal(0, 0.015)
    vent = np.maximum(
        _ellipse(g, vy, cx - 0.045 * vs, 0.11 * vs, 0.028 * vs, 0.01, 0.3),
        _ellipse(g, vy, cx + 0.045 * vs, 0.11 * vs, 0.028 * vs, 0.01, -0.3),
    )
    falx = np.clip(1.0 - np.abs(g.x - cx) / 0.005, 0, 1) * (np.abs(g.y - cy) > 0.16 * vs)
    csf = np.maximum(np.maximum(sulci * 0.8, vent), falx)
    tissue = tissue * (1 - csf) + csf_v * csf
    img = (0.85 if not t2 else 0.6) * (head - skull) + 0.06 * (skull - brain) + brain * tissue
    if a["finding"] == "mass":
        img = _mri_lesion(rng, g, p, img, (cy, cx), (ry / 0.44, rx / 0.35), t2)
    # Field of view; no shift or tilt: head holders centre the head (and a sideways shift would
    # compete with the lesion side in small-sample tests).
    img = _zoom(img, rng.uniform(0.88, 1.12), 0.0)
    img = img * _shading(rng, g, 0.5, 0.8, vertical=True) + 0.015
    img = _grain(rng, img, rng.uniform(0.008, 0.035))
    img = _tone(img, rng.uniform(0.85, 1.25), 0.3, rng.uniform(0.8, 1.2))
    if rng.random() < 0.35:
        img = _overlay(img, _mri_marks(rng, g, t2), rng.uniform(0.6, 1.0))
    return img


def _mri_marks(rng: np.random.Generator, g: _Grid, t2: bool) -> Callable[[ImageDraw.ImageDraw], None]:
    """DICOM-viewer corner text (sequence, series/image, window) and sometimes a ruler."""
    s = min(g.h, g.w)
    seq = _pick(rng, ("T2 TSE", "T2 FSE", "AX T2") if t2 else ("T1 SE", "T1 MPRAGE", "AX T1"))
    blocks = [
        [seq, f"SE {int(rng.integers(2, 12))} IM {int(rng.integers(5, 40))}"],
        [f"W {int(rng.integers(400, 2000))} L {int(rng.integers(200, 1000))}"],
        [_pick(rng, ("1.5T", "3T")), _date(rng)],
    ][: int(rng.integers(1, 4))]
    size = round(rng.uniform(0.04, 0.06) * s)
    text = _text_fn(_corner_text(rng, g, blocks, size), size)
    ruler = rng.random() < 0.4
    rx = (0.04 if rng.random() < 0.5 else g.wu - 0.04) * s

    def draw(d: ImageDraw.ImageDraw) -> None:
        text(d)
        if ruler:
            for k in range(11):
                y = (g.hu / 2 - 0.25 + 0.05 * k) * s
                half = (0.02 if k % 5 == 0 else 0.01) * s
                d.line([(rx - half, y), (rx + half, y)], fill=255, width=1)

    return draw


def _mri_lesion(
    rng: np.random.Generator,
    g: _Grid,
    p: _Panel,
    img: np.ndarray,
    centre: tuple[float, float],
    scale: tuple[float, float],
    t2: bool,
) -> np.ndarray:
    a = p.attrs
    side = -1.0 if a["position"] == "left" else 1.0
    ly = centre[0] + (-1 if a["zone"] == "upper" else 1) * 0.2 * scale[0] + rng.normal(0, 0.015)
    lx = centre[1] + side * 0.17 * scale[1] + rng.normal(0, 0.01)
    r = _lesion_radius(rng, a["size"])
    blob = _blob(g, rng, ly, lx, r, irregular=a["shape"] == "irregular", soft=0.01)
    if t2:
        halo = _blob(g, rng, ly, lx, r * 1.5, irregular=True, soft=0.03)
        img = img * (1 - 0.5 * halo) + 0.5 * halo * 0.75
        img = img * (1 - blob) + blob * 0.95
    else:
        core = _blob(g, rng, ly, lx, r * 0.6, irregular=False, soft=0.01)
        img = img * (1 - blob) + blob * (0.95 * (1 - core) + 0.12 * core)
    if p.extras["arrow"]:
        img = _overlay(img, _arrow_fn(g, ly, lx, r, from_left=side < 0))
    return img


def _draw_us(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """B-mode ultrasound: speckle in a fan (convex probe) or a rectangle (linear probe) on black.

    Probe type, sector angle and depth, gain and time-gain compensation, tissue layering and the
    on-screen annotations (probe, depth, grey-scale bar, focus marker) vary per image.
    """
    a, hu, wu = p.attrs, g.hu, g.wu
    ax = wu / 2
    if rng.random() < 0.8:  # convex probe: fan from an apex above the image
        ay = -rng.uniform(0.02, 0.15) * hu
        dy, dx = g.y - ay, g.x - ax
        depth = np.sqrt(dx * dx + dy * dy)
        ang = np.abs(np.arctan2(dx, dy))
        half = min(math.radians(rng.uniform(28, 45)), math.asin(min(0.99, wu / 2 / (hu * 1.05))))
        r0, r1 = -ay + rng.uniform(0.06, 0.2) * hu, hu * rng.uniform(0.9, 1.02) - ay
        sector = (
            np.clip((half - ang) * depth / 0.01, 0, 1)
            * np.clip((depth - r0) / 0.01, 0, 1)
            * np.clip((r1 - depth) / 0.01, 0, 1)
        )
        edge = [(ax + rr * math.sin(half) + 0.03, ay + rr * math.cos(half)) for rr in np.arange(r0, r1, 0.1)]
    else:  # linear probe: a rectangle
        top, bottom = rng.uniform(0.03, 0.12) * hu, rng.uniform(0.86, 0.98) * hu
        hw = rng.uniform(0.32, 0.44) * wu
        depth = np.broadcast_to(g.y - top, (g.h, g.w))
        r0 = 0.0
        sector = np.clip((hw - np.abs(g.x - ax)) / 0.01, 0, 1) * np.clip(depth / 0.01, 0, 1)
        sector = sector * np.clip((bottom - g.y) / 0.01, 0, 1)
        edge = [(ax + hw + 0.03, yy) for yy in np.arange(top, bottom, 0.1)]
    shape = (max(2, g.h // 2), max(2, g.w // 4))
    n1 = rng.standard_normal(shape, dtype=np.float32)
    n2 = rng.standard_normal(shape, dtype=np.float32)
    speck = np.asarray(
        Image.fromarray(np.sqrt(n1 * n1 + n2 * n2)).resize((g.w, g.h), Image.Resampling.BILINEAR)
    )
    period, reach = rng.uniform(0.09, 0.18), rng.uniform(0.25, 0.45) * hu
    layers = rng.uniform(0.06, 0.16) * np.sin(
        2 * math.pi * (g.y + 0.04 * _noise(rng, g, 0.2)) / period + rng.uniform(0, 2 * math.pi)
    )
    tissue = 0.6 + 0.15 * _noise(rng, g, 0.18) + layers * (g.y < reach)
    gain = rng.uniform(0.75, 1.3) * (1.0 + rng.uniform(-0.5, 0.5) * (g.y - hu / 2))  # gain and TGC
    img = sector * tissue * speck * (0.55 * gain) * np.exp(-rng.uniform(0.5, 1.1) * (depth - r0))
    if a["finding"] in ("cyst", "mass"):
        img = _us_lesion(rng, g, p, img, sector, ax)
    img = _overlay(img, _us_marks(rng, g, edge), rng.uniform(0.7, 0.95))
    return np.clip(img, 0.0, 1.0)


def _us_lesion(
    rng: np.random.Generator, g: _Grid, p: _Panel, img: np.ndarray, sector: np.ndarray, ax: float
) -> np.ndarray:
    a = p.attrs
    side = -1.0 if a["position"] == "left" else 1.0
    ly = g.hu * (0.42 if a["zone"] == "upper" else 0.7) + rng.normal(0, 0.015)
    lx = ax + side * 0.19 * (ly / 0.7 + 0.3) + rng.normal(0, 0.01)
    r = _lesion_radius(rng, a["size"])
    cyst = a["finding"] == "cyst"
    blob = _blob(g, rng, ly, lx, r, irregular=not cyst, soft=0.01 if cyst else 0.02)
    below = np.clip(1 - np.abs(g.x - lx) / r, 0, 1) * (g.y > ly) * sector
    img = img * (1.0 + (0.6 if cyst else -0.45) * below)
    img = img * (1.0 - (0.95 if cyst else 0.65) * blob)
    if p.extras["arrow"]:
        img = _overlay(img, _arrow_fn(g, ly, lx, r, from_left=side < 0), 0.9)
    return img


def _us_marks(
    rng: np.random.Generator, g: _Grid, edge: Sequence[tuple[float, float]]
) -> Callable[[ImageDraw.ImageDraw], None]:
    """Scanner overlay: depth dots along the image edge, probe/depth/gain text, grey bar, focus."""
    s = min(g.h, g.w)
    blocks = [
        [f"{_pick(rng, ('L12-5', 'C5-1', 'L9', 'C6-2', 'eL18-4', 'C1-6'))}  {rng.uniform(3, 12):.1f} MHz"],
        [f"D {rng.uniform(3, 9):.1f} cm"],
        [f"G {int(rng.integers(30, 80))}", f"DR {int(rng.integers(50, 80))}"],
        [_pick(rng, ("THYROID", "ABDOMEN", "SMALL PARTS", "BREAST", "RENAL", "MSK")), _date(rng)],
    ][: int(rng.integers(2, 5))]
    size = round(rng.uniform(0.045, 0.065) * s)
    text = _text_fn(_corner_text(rng, g, blocks, size, margin=0.02), size)
    bar = rng.random() < 0.5
    bar_x = (0.03 if rng.random() < 0.5 else g.wu - 0.06) * s
    focus = rng.uniform(0.3, 0.8) * g.h

    def draw(d: ImageDraw.ImageDraw) -> None:
        rad = max(1.0, 0.006 * s)
        for tx, ty in edge:
            d.ellipse([tx * s - rad, ty * s - rad, tx * s + rad, ty * s + rad], fill=255)
        if edge:
            fx = edge[0][0] * s + 0.03 * s
            tip, back = (fx, focus), fx + 0.03 * s
            d.polygon([tip, (back, focus - 0.02 * s), (back, focus + 0.02 * s)], fill=255)
        if bar:
            y0, y1 = 0.3 * g.h, 0.7 * g.h
            for k in range(8):
                d.rectangle(
                    [bar_x, y0 + (y1 - y0) * k / 8, bar_x + 0.03 * s, y0 + (y1 - y0) * (k + 1) / 8],
                    fill=round(255 * (1 - k / 8)),
                )
        text(d)

    return draw


def _draw_histo(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """H&E: pink eosin stroma with fibres, white lumens, purple nuclei; tumour = crowded dark nuclei.

    Texture already differs per field; stain tone, illumination and a scale bar add the rest.
    """
    a = p.attrs
    stretch = (1.0, 4.0) if rng.random() < 0.5 else (4.0, 1.0)
    fib = np.clip(_noise(rng, g, 0.025, stretch) * 0.8 + 0.2, 0, 1)
    pink = np.asarray((0.94, 0.62, 0.8), np.float32) * rng.uniform(0.95, 1.03, 3).astype(np.float32)
    img = _rgb(1.0 - 0.4 * fib, pink) + _rgb(0.4 * fib, (0.84, 0.4, 0.64))
    img += (0.03 * _noise(rng, g, 0.1))[..., None]
    lumens = np.zeros((g.h, g.w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.1, g.hu - 0.1), rng.uniform(0.1, g.wu - 0.1)
        lumens = np.maximum(lumens, _blob(g, rng, cy, cx, rng.uniform(0.04, 0.1), irregular=True, soft=0.01))
    img = _blend(img, lumens, (0.97, 0.95, 0.97))
    nuclei = np.maximum(
        _nuclei(rng, g, spacing=0.05, radius=0.013, density=0.5),
        _nuclei(rng, g, spacing=0.037, radius=0.01, density=0.3),
    ) * (1 - lumens)
    img = _blend(img, nuclei, (0.38, 0.2, 0.58))
    if a["finding"] == "tumour":
        img = _histo_tumour(rng, g, a, img)
    # Microscope illumination and camera exposure; a scale bar in some figures.
    img = img * (_shading(rng, g, 0.12, 0.25) * rng.uniform(0.92, 1.06))[..., None]
    if rng.random() < 0.35:
        length, left = rng.uniform(0.1, 0.25), rng.random() < 0.3
        bar = _scale_bar_fn(g, length, left=left, thick=rng.uniform(0.012, 0.025))
        img = _overlay(img, bar, (0.0, 0.0, 0.0) if rng.random() < 0.7 else (1.0, 1.0, 1.0))
    return np.clip(img, 0.0, 1.0)


def _histo_tumour(rng: np.random.Generator, g: _Grid, a: dict[str, Any], img: np.ndarray) -> np.ndarray:
    side = -1.0 if a["position"] == "left" else 1.0
    large = a["size"] == "large"
    r = rng.uniform(0.26, 0.32) if large else rng.uniform(0.13, 0.17)
    cy = g.hu / 2 + rng.normal(0, 0.05)
    cx = g.wu / 2 + side * (g.wu * 0.25 if not large else g.wu * 0.22) + rng.normal(0, 0.02)
    region = _blob(g, rng, cy, cx, r, irregular=True, soft=0.03)
    img = _blend(img, region * 0.55, (0.72, 0.45, 0.72))
    dense = (
        np.maximum(
            _nuclei(rng, g, spacing=0.043, radius=0.016, density=0.9),
            _nuclei(rng, g, spacing=0.031, radius=0.011, density=0.6),
        )
        * region
    )
    return _blend(img, dense, (0.26, 0.1, 0.45))


def _nuclei(
    rng: np.random.Generator, g: _Grid, *, spacing: float, radius: float, density: float
) -> np.ndarray:
    """Round-ish nuclei, one per occupied cell of a jittered grid (vectorised by cell lookup)."""
    ny, nx = int(g.hu / spacing) + 1, int(g.wu / spacing) + 1
    margin = min(radius * 0.8, spacing * 0.35)  # nuclei may touch cell borders: keeps the grid irregular
    oy = rng.uniform(margin, spacing - margin, (ny, nx)).astype(np.float32)
    ox = rng.uniform(margin, spacing - margin, (ny, nx)).astype(np.float32)
    rad = (rng.uniform(0.6, 1.0, (ny, nx)) * radius * (rng.random((ny, nx)) < density)).astype(np.float32)
    ecc = rng.uniform(0.75, 1.33, (ny, nx)).astype(np.float32)
    iy = np.minimum((g.y[:, 0] / spacing).astype(np.intp), ny - 1)[:, None]
    ix = np.minimum((g.x[0] / spacing).astype(np.intp), nx - 1)[None, :]
    dy = g.y - (iy * spacing + oy[iy, ix])
    dx = g.x - (ix * spacing + ox[iy, ix])
    e = ecc[iy, ix]
    dist = np.sqrt(dy * dy * e + dx * dx / e)
    return np.clip((rad[iy, ix] - dist) / max(0.004, g.px), 0.0, 1.0)


_FLUO_RGB = {"green": (0.15, 1.0, 0.25), "red": (1.0, 0.15, 0.12), "blue": (0.35, 0.55, 1.0)}


_FLUO_LASER = {"green": "488 nm", "red": "594 nm", "blue": "405 nm"}


def _draw_fluo(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Fluorescence: black field, ``count`` separated cells in one channel colour, scale bar.

    Cell size and placement, background and out-of-focus haze, uneven illumination, exposure,
    camera noise, the scale bar and a channel label vary per image (the hue never does).
    """
    a = p.attrs
    slots = [((0.27 + 0.46 * (i // 2)) * g.hu, (0.27 + 0.46 * (i % 2)) * g.wu) for i in range(4)]
    cells = np.zeros((g.h, g.w), np.float32)
    r_lo = rng.uniform(0.1, 0.14)
    for i in rng.permutation(4)[: a["count"]]:
        cy, cx = slots[int(i)]
        cy, cx = cy + rng.normal(0, 0.04), cx + rng.normal(0, 0.04)
        r = rng.uniform(r_lo, r_lo + 0.04)
        body = _blob(g, rng, cy, cx, r, irregular=True, soft=0.02)
        nucleus = _blob(
            g, rng, cy + rng.normal(0, 0.02), cx + rng.normal(0, 0.02), r * 0.4, irregular=False, soft=0.015
        )
        cells = np.maximum(cells, body * (0.55 + 0.25 * nucleus))
    texture = 0.75 + 0.25 * np.clip(_noise(rng, g, 0.02), -1, 1)
    light = _shading(rng, g, 0.4, 0.6) * rng.uniform(0.75, 1.0)
    haze = rng.uniform(0.0, 0.05) * np.clip(_noise(rng, g, 0.35) + 1.0, 0.0, 2.0)
    intensity = cells * texture * light + rng.uniform(0.01, 0.05) + haze
    intensity = np.clip(_grain(rng, intensity, rng.uniform(0.01, 0.035)), 0, 1) ** rng.uniform(0.8, 1.2)
    img = _rgb(intensity, _FLUO_RGB[a["colour"]])
    s = min(g.h, g.w)
    if rng.random() < 0.85:
        bar = _scale_bar_fn(
            g, rng.uniform(0.1, 0.25), left=rng.random() < 0.3, thick=rng.uniform(0.012, 0.03), margin=0.05
        )
        img = _overlay(img, bar, (1.0, 1.0, 1.0))
    if rng.random() < 0.4:
        size = round(rng.uniform(0.05, 0.075) * s)
        label = _text_fn([(0.04 * s, 0.03 * s, _FLUO_LASER[a["colour"]])], size)
        img = _overlay(img, label, (1.0, 1.0, 1.0))
    return np.clip(img, 0.0, 1.0)


def _draw_fundus(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Colour fundus photo: orange-red disc on black, yellow optic disc, dark vessels, lesions.

    Camera field of view (circle size, centring, flat top/bottom when the circle is cropped),
    fixation (disc/macula position), pigmentation, exposure, uneven illumination and the camera's
    text (eye, date) vary per image.
    """
    a = p.attrs
    cy = g.hu / 2 + rng.normal(0, 0.02)
    cx = g.wu / 2 + float(np.clip(rng.normal(0, 0.05), -0.1, 0.1))
    R = rng.uniform(0.43, 0.56) * g.hu
    side = 1.0 if p.extras["eye"] == "right" else -1.0
    fov = _ellipse(g, cy, cx, R, R, 0.01)
    rr2 = ((g.y - cy) ** 2 + (g.x - cx) ** 2) / (R * R)
    tex = 0.04 * _noise(rng, g, 0.05)
    base = rng.uniform((0.72, 0.26, 0.05), (0.92, 0.42, 0.16)).astype(np.float32)
    fall = rng.uniform(0.15, 0.35)
    light = _shading(rng, g, 0.5, 0.6) * rng.uniform(0.8, 1.15)
    img = np.stack(
        [
            (base[0] - fall * rr2 + tex) * light,
            (base[1] - fall * 0.64 * rr2 + tex * 0.5) * light,
            base[2] * light,
        ],
        axis=-1,
    )
    mac_y, mac_x = cy + rng.normal(0, 0.03), cx - side * rng.uniform(0.02, 0.08)
    macula = np.exp(-((g.y - mac_y) ** 2 + (g.x - mac_x) ** 2) / (2 * 0.06**2))
    img = img * (1.0 - 0.35 * macula[..., None])
    dy, dx = cy + rng.normal(0, 0.04), cx + side * rng.uniform(0.22, 0.32) * g.hu
    img = _blend(img, _fundus_vessels(rng, g, (dy, dx), side), (0.42, 0.04, 0.03))
    dr = rng.uniform(0.85, 1.15)
    img = _blend(img, _ellipse(g, dy, dx, 0.07 * dr, 0.065 * dr, 0.012), (1.0, 0.86, 0.55))
    img = _blend(img, _ellipse(g, dy, dx, 0.03 * dr, 0.028 * dr, 0.01), (1.0, 0.96, 0.82))
    if a["finding"] == "haemorrhage":
        img = _blend(
            img,
            _spots(rng, g, (mac_y, mac_x), (0.08, 0.3), int(rng.integers(4, 9)), (0.014, 0.028)),
            (0.38, 0.03, 0.02),
        )
    elif a["finding"] == "exudate":
        img = _blend(
            img,
            _spots(rng, g, (mac_y, mac_x), (0.07, 0.16), int(rng.integers(6, 14)), (0.008, 0.015)),
            (1.0, 0.9, 0.45),
        )
    img = np.clip(_grain(rng, img * fov[..., None], rng.uniform(0.005, 0.02)), 0.0, 1.0)
    if rng.random() < 0.6:
        s = min(g.h, g.w)
        eye = "OD" if side > 0 else "OS"
        blocks = [[eye], [_date(rng)], [_pick(rng, ("45°", "50°", "TRC-50DX", "CR-2", "FF450"))]]
        size = round(rng.uniform(0.045, 0.07) * s)
        items = _corner_text(rng, g, blocks[: int(rng.integers(1, 4))], size, margin=0.02)
        img = _overlay(img, _text_fn(items, size), (0.9, 0.9, 0.9))
    return img


def _fundus_vessels(rng: np.random.Generator, g: _Grid, disc: tuple[float, float], side: float) -> np.ndarray:
    """Four vessel arcades leaving the disc up/down and bending temporally (around the macula) or nasally."""
    s = min(g.h, g.w)
    mask = Image.new("L", (g.w, g.h), 0)
    d = ImageDraw.Draw(mask)
    t = np.linspace(0.0, 1.0, 16)
    for v in (-1.0, 1.0):
        for tx, length, width, bend in ((-side, 0.55, 0.02, 0.42), (side, 0.3, 0.014, 0.25)):
            start = v * math.pi / 2 + rng.normal(0, 0.08)
            theta = start + (v * (math.pi / 2 - tx * bend * math.pi) - start) * t
            step = length / len(t)
            xs = disc[1] + np.cumsum(np.cos(theta)) * step
            ys = disc[0] + np.cumsum(np.sin(theta)) * step
            pts = [(disc[1] * s, disc[0] * s)] + [
                (float(x * s), float(y * s)) for x, y in zip(xs, ys, strict=True)
            ]
            d.line(pts, fill=255, width=max(1, round(width * s)), joint="curve")
    return _smooth(np.asarray(mask, np.float32) / 255.0, 1.3) * 0.9


def _spots(
    rng: np.random.Generator,
    g: _Grid,
    centre: tuple[float, float],
    ring: tuple[float, float],
    n: int,
    radius: tuple[float, float],
) -> np.ndarray:
    """``n`` small irregular spots at random angles within a ring around ``centre``."""
    mask = np.zeros((g.h, g.w), np.float32)
    for _ in range(n):
        th, dist = rng.uniform(0, 2 * math.pi), rng.uniform(*ring)
        cy, cx = centre[0] + dist * math.sin(th), centre[1] + dist * math.cos(th)
        mask = np.maximum(mask, _blob(g, rng, cy, cx, rng.uniform(*radius), irregular=True, soft=0.004))
    return mask


_BLOT_PROTEINS = ("p-ERK", "ERK", "GAPDH", "actin", "p53", "LC3", "p-AKT", "AKT", "HIF-1α", "vinculin")


def _draw_blot(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Western blot: light strips with dark horizontal bands per lane (separable band profiles).

    Lane and strip counts, margins, strip tone and outline, band position, thickness, width and
    doublets, membrane shading, lane headers and molecular-weight marks vary per image.
    """
    s = min(g.h, g.w)
    n_lanes = int(rng.integers(3, 11))
    n_rows = _pickw(rng, (1, 2, 3, 4), (0.1, 0.35, 0.35, 0.2))  # target(s) + loading control
    kda = rng.random() < 0.45
    left = rng.uniform(0.17, 0.3) * g.wu
    right = g.wu - (rng.uniform(0.14, 0.2) * g.wu if kda else rng.uniform(0.03, 0.1))
    lane_w = (right - left) / n_lanes
    centres = left + lane_w * (np.arange(n_lanes) + 0.5)
    n_heads = int(rng.integers(1, 3))
    head_h = 0.075 * n_heads + rng.uniform(0.01, 0.04)
    usable = g.hu - head_h - rng.uniform(0.01, 0.05)
    gap = rng.uniform(0.0, 0.04)
    strip_h = usable / n_rows
    first_top = head_h + (usable - strip_h * n_rows) * rng.uniform(0.0, 1.0)
    bg = rng.uniform(0.95, 1.0)
    img = np.full((g.h, g.w), bg, np.float32)
    xs = g.x[0][None, :]
    in_lanes = ((g.x > left - 0.01) & (g.x < right + 0.01)).astype(np.float32)
    labels, marks, boxes = [], [], []
    strip_tone, outline = rng.uniform(0.74, 0.92), rng.random() < 0.3
    for row in range(n_rows):
        top, bottom = first_top + row * strip_h + gap / 2, first_top + (row + 1) * strip_h - gap / 2
        strip = ((g.y > top) & (g.y < bottom)).astype(np.float32) * in_lanes
        tone = strip_tone + rng.normal(0, 0.02) + 0.04 * _noise(rng, g, 0.3)
        img = img * (1 - strip) + tone * strip
        width = rng.uniform(0.3, 0.48) * lane_w
        for _ in range(1 if rng.random() < 0.7 else 2):  # doublets: e.g. phospho/total forms
            inten = rng.uniform(0.15, 1.0, n_lanes).astype(np.float32)
            profile = (inten[:, None] * np.exp(-(np.abs((xs - centres[:, None]) / width) ** 4))).sum(0)
            yc = top + (bottom - top) * rng.uniform(0.3, 0.7)
            thick = min(rng.uniform(0.1, 0.2) * (bottom - top), 0.035)
            band = np.exp(-(((g.y[:, 0] - yc) / thick) ** 2))
            img = img - rng.uniform(0.55, 0.85) * np.outer(band, profile) * strip
        labels.append((0.02 * s, ((top + bottom) / 2 - 0.03) * s, _pick(rng, _BLOT_PROTEINS)))
        if kda:
            weight = f"- {int(rng.integers(15, 180))}"
            marks.append(((right + 0.02) * s, ((top + bottom) / 2 - 0.03) * s, weight))
        if outline:
            boxes.append(((left - 0.01) * s, top * s, (right + 0.01) * s, bottom * s))
    heads = []
    for k in range(n_heads):
        y = (0.02 + 0.075 * k) * s
        signs = [_pick(rng, ("+", "-")) for _ in centres] if k == 0 or rng.random() < 0.5 else None
        heads += [
            (float(c * s) - 0.02 * s, y, signs[i] if signs else str(i + 1)) for i, c in enumerate(centres)
        ]
    if kda:
        heads.append(((right + 0.02) * s, 0.02 * s, "kDa"))
    img = _smooth(img, 1.3) * _shading(rng, g, 0.08, 0.15)
    text = _text_fn(labels + heads + marks, round(rng.uniform(0.055, 0.075) * s))

    def draw(d: ImageDraw.ImageDraw) -> None:
        for box in boxes:
            d.rectangle(box, outline=255, width=max(1, round(0.006 * s)))
        text(d)

    img = _overlay(img, draw, 0.0)
    return np.clip(_grain(rng, img, rng.uniform(0.005, 0.02)), 0.0, 1.0)


_CHART_RGB = {"red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 119, 180)}


_CHART_YLABELS = (
    "Relative expression",
    "Tumour volume (mm³)",
    "Viability (%)",
    "Body weight (g)",
    "IL-6 (pg/ml)",
    "Fold change",
)
_CHART_TITLES = ("Expression", "Tumour growth", "Viability", "Weight", "Serum IL-6", "Response")
_CHART_GREYS = ((110, 110, 110), (40, 40, 40), (170, 170, 170))


def _draw_chart(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Plot on white: axes with ticks and labels, bars with error bars or a line with markers.

    Plotting styles differ between labs: margins, axis label and title, tick count and range,
    full frame or two spines, grid lines, a grey ggplot-like panel, grouped bars, data points,
    extra grey series and legends are drawn per image (the labelled colour always dominates).
    """
    a, s = p.attrs, min(g.h, g.w)
    im = Image.new("RGB", (g.w, g.h), "white")
    d = ImageDraw.Draw(im)
    ylabel, title = rng.random() < 0.6, rng.random() < 0.35
    x0 = rng.uniform(0.2, 0.26) * g.w if ylabel else rng.uniform(0.13, 0.19) * g.w
    y1 = rng.uniform(0.14, 0.2) * g.h if title else rng.uniform(0.05, 0.12) * g.h
    x1, y0 = rng.uniform(0.9, 0.98) * g.w, rng.uniform(0.8, 0.88) * g.h
    lw = max(1, round(rng.uniform(0.005, 0.011) * s))
    font = _font(round(rng.uniform(0.045, 0.065) * s))
    colour = tuple(
        int(c) for c in np.clip(np.asarray(_CHART_RGB[a["colour"]]) + rng.integers(-15, 16, 3), 0, 255)
    )
    panel = rng.random() < 0.12
    if panel:
        d.rectangle([x0, y1, x1, y0], fill=(232, 232, 232))
    grid = panel or rng.random() < 0.3
    n_ticks = int(rng.integers(3, 7))
    top_value = _pick(rng, (1, 1.5, 2, 4, 50, 100, 150, 200, 400))
    for i in range(n_ticks):
        yy = y0 + (y1 - y0) * i / (n_ticks - 1)
        if grid:
            d.line([(x0, yy), (x1, yy)], fill=(255, 255, 255) if panel else (225, 225, 225), width=1)
        d.line([(x0 - 0.02 * s, yy), (x0, yy)], fill="black", width=lw)
        value = top_value * i / (n_ticks - 1)
        label = f"{value:.0f}" if top_value >= 50 else f"{value:.1f}"
        d.text((x0 - 0.03 * s - float(font.getlength(label)), yy - 0.03 * s), label, fill="black", font=font)
    greys = [_CHART_GREYS[int(k)] for k in rng.permutation(3)]
    if a["chart_type"] == "bar chart":
        series = _chart_bars(rng, d, (x0, y0, x1, y1), colour, greys, lw, font)
    else:
        series = _chart_line(rng, d, (x0, y0, x1, y1), colour, greys, lw, font)
    if rng.random() < 0.25:
        d.rectangle([x0, y1, x1, y0], outline="black", width=lw)
    else:
        d.line([(x0, y1), (x0, y0), (x1, y0)], fill="black", width=lw)
    if series > 1 or rng.random() < 0.2:
        _chart_legend(rng, d, (x0, y0, x1, y1), [colour, *greys][:series], font)
    if title:
        text = _pick(rng, _CHART_TITLES)
        d.text(((x0 + x1 - float(font.getlength(text))) / 2, 0.02 * g.h), text, fill="black", font=font)
    if ylabel:
        _chart_ylabel(im, _pick(rng, _CHART_YLABELS), font, (0.01 * g.w, (y0 + y1) / 2))
    return np.asarray(im, np.float32) / 255.0


def _chart_ylabel(im: Image.Image, text: str, font: Any, anchor: tuple[float, float]) -> None:
    """Vertical y-axis title, centred on ``anchor`` height (drawn on a strip, rotated, pasted)."""
    length = int(font.getlength(text)) + 2
    height = int(font.size * 1.3) if hasattr(font, "size") else 12
    strip = Image.new("L", (length, height), 0)
    ImageDraw.Draw(strip).text((1, 0), text, fill=255, font=font)
    strip = strip.rotate(90, expand=True)
    x, y = int(anchor[0]), int(anchor[1] - strip.height / 2)
    im.paste((0, 0, 0), (x, y, x + strip.width, y + strip.height), strip)


def _chart_legend(
    rng: np.random.Generator,
    d: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    colours: Sequence[tuple[int, ...]],
    font: Any,
) -> None:
    """Legend with colour swatches in the upper left or right of the plot area."""
    x0, y0, x1, y1 = box
    size = font.size if hasattr(font, "size") else 10
    names = [_pick(rng, ("Control", "Treated", "WT", "KO", "Vehicle", "Drug", "Sham")) for _ in colours]
    width = size * 1.5 + max(float(font.getlength(n)) for n in names)
    lx = x0 + size * 0.6 if rng.random() < 0.5 else x1 - width - size * 0.6
    for k, (col, name) in enumerate(zip(colours, names, strict=True)):
        ly = y1 + size * (0.4 + 1.3 * k)
        d.rectangle([lx, ly + size * 0.15, lx + size * 0.8, ly + size * 0.95], fill=col)
        d.text((lx + size * 1.2, ly), name, fill="black", font=font)


def _chart_bars(
    rng: np.random.Generator,
    d: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    colour: tuple[int, ...],
    greys: Sequence[tuple[int, ...]],
    lw: int,
    font: Any,
) -> int:
    """Bars (grouped with a grey bar sometimes), error bars, data points; returns the series count."""
    x0, y0, x1, y1 = box
    n = int(rng.integers(2, 7))
    per = 2 if rng.random() < 0.3 else 1
    slot = (x1 - x0) / n
    fill = rng.uniform(0.55, 0.8)
    names = ("Ctrl", "KO", "WT", "siRNA", "Drug", "Veh", "Tx")
    errors, dots = rng.random() < 0.85, rng.random() < 0.25
    bar_w = slot * fill / per
    for i in range(n):
        start = x0 + slot * (i + (1 - fill) / 2)
        for k in range(per):
            v = rng.uniform(0.2, 0.9)
            left, right = start + bar_w * k, start + bar_w * (k + 1)
            top = y0 + (y1 - y0) * v
            col = colour if k == 0 else greys[0]
            d.rectangle([left, top, right, y0], fill=col, outline="black", width=max(1, lw // 2))
            mid = (left + right) / 2
            err = (y0 - y1) * rng.uniform(0.03, 0.08)
            if errors:
                d.line([(mid, top - err), (mid, top + err)], fill="black", width=lw)
                cap = bar_w * 0.2
                d.line([(mid - cap, top - err), (mid + cap, top - err)], fill="black", width=lw)
            if dots:
                rad = max(1.0, 1.2 * lw)
                for px, py in zip(
                    rng.uniform(left + bar_w * 0.2, right - bar_w * 0.2, 4),
                    top + rng.normal(0, err + 1e-3, 4),
                    strict=True,
                ):
                    d.ellipse([px - rad, py - rad, px + rad, py + rad], outline="black", width=1)
        d.text(
            (start, y0 + 0.02 * (y0 - y1)), names[(i * 3 + int(rng.integers(7))) % 7], fill="black", font=font
        )
        if i and rng.random() < 0.4:
            d.text((start + slot * 0.2, top - err - 0.1 * (y0 - y1)), "*", fill="black", font=font)
    return per


def _chart_line(
    rng: np.random.Generator,
    d: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    colour: tuple[int, ...],
    greys: Sequence[tuple[int, ...]],
    lw: int,
    font: Any,
) -> int:
    """A coloured series plus up to two grey ones, markers and optional error bars; series count."""
    x0, y0, x1, y1 = box
    n = int(rng.integers(5, 12))
    xs = x0 + (x1 - x0) * (np.arange(n) + 0.5) / n
    series = [np.clip(np.cumsum(rng.normal(0.08, 0.1, n)) + rng.uniform(0.1, 0.3), 0.05, 0.95)]
    for _ in range(_pickw(rng, (0, 1, 2), (0.45, 0.45, 0.1))):
        series.append(np.clip(series[0] * rng.uniform(0.3, 0.9) + rng.normal(0, 0.04, n), 0.05, 0.95))
    square, errors = rng.random() < 0.35, rng.random() < 0.4
    for k, vals in enumerate(series):
        col = colour if k == 0 else greys[k - 1]
        pts = [(float(x), float(y0 + (y1 - y0) * v)) for x, v in zip(xs, vals, strict=True)]
        d.line(pts, fill=col, width=lw * 2, joint="curve")
        rad = 2.2 * lw
        for px, py in pts:
            if errors:
                err = (y0 - y1) * 0.04
                d.line([(px, py - err), (px, py + err)], fill=col, width=max(1, lw // 2))
            marker = [px - rad, py - rad, px + rad, py + rad]
            if square:
                d.rectangle(marker, fill=col)
            else:
                d.ellipse(marker, fill=col)
    for i in range(0, n, 2):
        d.text((xs[i] - 0.01 * (x1 - x0), y0 + 0.02 * (y0 - y1)), str(i * 2), fill="black", font=font)
    return len(series)


_RENDERERS: dict[str, Callable[[np.random.Generator, _Grid, _Panel], np.ndarray]] = {
    "chest_xray": _draw_cxr,
    "brain_mri": _draw_mri,
    "ultrasound": _draw_us,
    "histopathology": _draw_histo,
    "fluorescence": _draw_fluo,
    "fundus": _draw_fundus,
    "western_blot": _draw_blot,
    "chart": _draw_chart,
}


def _render_panel(rng: np.random.Generator, panel: _Panel, h: int, w: int) -> np.ndarray:
    return _RENDERERS[panel.modality.id](rng, _grid(h, w), panel)


def _panel_aspect(rng: np.random.Generator, mod: Modality) -> float:
    return float(rng.uniform(*mod.aspect))


def _long_side(rng: np.random.Generator, image_size: int) -> int:
    """Usual long side ≈ ``image_size``; ~5 % are 2.3–3.2× larger (≤ 800 px) to exercise resize caps."""
    if rng.random() < 0.05:
        return max(image_size, min(800, round(image_size * rng.uniform(2.3, 3.2))))
    return round(image_size * rng.uniform(0.9, 1.0))


def _render_figure(rng: np.random.Generator, fig: _FigSpec, image_size: int) -> np.ndarray:
    """Whole figure: a single panel, or (A)/(B) panels side by side on white with panel letters."""
    long_side = _long_side(rng, image_size)
    aspects = [_panel_aspect(rng, p.modality) for p in fig.panels]
    if not fig.compound:
        w, h = _fit(aspects[0], long_side)
        return _render_panel(rng, fig.panels[0], h, w)
    gap = 0.04
    total = sum(aspects) + gap
    ph = max(48, round(min(long_side * 1.9, 1000) / total))
    arrays = [
        _as_rgb(_render_panel(rng, p, ph, max(16, round(ph * asp))))
        for p, asp in zip(fig.panels, aspects, strict=True)
    ]
    gap_px = max(2, round(gap * ph))
    spacer = np.ones((ph, gap_px, 3), np.float32)
    canvas = np.concatenate([arrays[0], spacer, arrays[1]], axis=1)
    return _panel_letters(canvas, ph, arrays[0].shape[1] + gap_px)


def _panel_letters(arr: np.ndarray, ph: int, second_x: int) -> np.ndarray:
    """Black panel letters on white boxes in the top-left corner of each panel."""
    size = max(8, round(0.1 * ph))
    corners = ((0, "A"), (second_x, "B"))

    def boxes(d: ImageDraw.ImageDraw) -> None:
        for x, _ in corners:
            d.rectangle([x, 0, x + size * 1.1, size * 1.25], fill=255)

    arr = _overlay(arr, boxes, (1.0, 1.0, 1.0))
    return _overlay(
        arr, _text_fn([(x + size * 0.15, 0, letter) for x, letter in corners], size), (0.0, 0.0, 0.0)
    )


def _fit(aspect: float, long_side: int) -> tuple[int, int]:
    """(w, h) with the given w/h aspect whose longer side is ``long_side``."""
    if aspect >= 1:
        return long_side, max(16, round(long_side / aspect))
    return max(16, round(long_side * aspect)), long_side


def _as_rgb(arr: np.ndarray) -> np.ndarray:
    return arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=2)


# --------------------------------------------------------------------------------------------------
# Encoding: float image → file bytes in the chosen format (+ GIF thumbnails for packages)
# --------------------------------------------------------------------------------------------------

_FORMATS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "chest_xray": (("jpg", "tif16", "png", "jpg_rgb"), (0.5, 0.25, 0.15, 0.1)),
    "brain_mri": (("jpg", "tif16", "png", "png_p"), (0.4, 0.3, 0.2, 0.1)),
    "ultrasound": (("jpg", "png", "jpg_rgb"), (0.7, 0.2, 0.1)),
    "histopathology": (("jpg", "jpg_cmyk", "tif", "png"), (0.75, 0.1, 0.1, 0.05)),
    "fluorescence": (("jpg", "png", "tif"), (0.6, 0.25, 0.15)),
    "fundus": (("jpg", "jpg_cmyk", "png"), (0.8, 0.1, 0.1)),
    "western_blot": (("jpg", "png", "png_p", "tif"), (0.5, 0.2, 0.15, 0.15)),
    "chart": (("png_p", "jpg", "png"), (0.5, 0.3, 0.2)),
    "compound": (("jpg", "png", "jpg_cmyk"), (0.75, 0.15, 0.1)),
}
_EXT = {
    "jpg": "jpg",
    "jpg_rgb": "jpg",
    "jpg_cmyk": "jpg",
    "png": "png",
    "png_p": "png",
    "tif": "tif",
    "tif16": "tif",
}


def _to_u8(arr: np.ndarray) -> np.ndarray:
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _encode(arr: np.ndarray, fmt: str, quality: int) -> tuple[bytes, Image.Image]:
    """File bytes for ``fmt`` plus the 8-bit PIL image (reused for the GIF thumbnail)."""
    image = Image.fromarray(_to_u8(arr))
    buf = io.BytesIO()
    if fmt == "tif16":
        grey = arr if arr.ndim == 2 else arr.mean(axis=2)
        Image.fromarray((np.clip(grey, 0, 1) * 65535.0 + 0.5).astype(np.uint16)).save(buf, "TIFF")
    elif fmt in ("jpg", "jpg_rgb", "jpg_cmyk"):
        target = {"jpg": image, "jpg_rgb": image.convert("RGB"), "jpg_cmyk": image.convert("CMYK")}[fmt]
        target.save(buf, "JPEG", quality=quality)
    elif fmt == "png_p":
        image.convert("RGB").quantize(
            colors=64, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        ).save(buf, "PNG")
    elif fmt == "png":
        image.save(buf, "PNG", compress_level=1)
    else:
        image.save(buf, "TIFF")
    return buf.getvalue(), image


def _gif_thumbnail(image: Image.Image) -> bytes:
    """PMC-style small GIF preview stored beside the full-size JPEG in OA packages."""
    thumb = image.convert("RGB")
    thumb.thumbnail((120, 120), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    thumb.quantize(colors=64, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(buf, "GIF")
    return buf.getvalue()


def _break_bytes(rng: np.random.Generator, data: bytes, kind: str | None) -> bytes | None:
    """Apply an image-level breakage: ``None`` means the file is not written at all."""
    if kind == "missing_graphic":
        return None
    if kind == "zero_byte_image":
        return b""
    if kind == "corrupt_image":
        return data[: max(24, int(len(data) * rng.uniform(0.1, 0.5)))]
    return data


# --------------------------------------------------------------------------------------------------
# Article metadata and figure planning
# --------------------------------------------------------------------------------------------------

_JOURNALS = (
    ("J Synth Med", "Journal of Synthetic Medicine", "jsm", "Synthetic Press"),
    ("Synth Radiol Rep", "Synthetic Radiology Reports", "srr", "Imaginary Health Publishing"),
    ("Front Simul Biol", "Frontiers in Simulated Biology", "fsb", "Open Mock Science"),
    ("Case Rep Artif Imaging", "Case Reports in Artificial Imaging", "crai", "Synthetic Press"),
    ("Synth Cell Biol", "Synthetic Cell Biology", "scb", "Open Mock Science"),
    (
        "Int J Fict Pathol",
        "International Journal of Fictional Pathology",
        "ijfp",
        "Imaginary Health Publishing",
    ),
)
_LICENSES = (
    (
        "cc-by",
        "https://creativecommons.org/licenses/by/4.0/",
        "Creative Commons Attribution 4.0 International License",
        0.5,
    ),
    ("cc-by", "http://creativecommons.org/licenses/by/3.0/", "Creative Commons Attribution License", 0.1),
    (
        "cc-by-nc",
        "https://creativecommons.org/licenses/by-nc/4.0/",
        "Creative Commons Attribution-NonCommercial 4.0 International License",
        0.2,
    ),
    (
        "cc0",
        "https://creativecommons.org/publicdomain/zero/1.0/",
        "Creative Commons CC0 public domain dedication",
        0.12,
    ),
    (
        "cc-by-nc-nd",
        "https://creativecommons.org/licenses/by-nc-nd/4.0/",
        "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 License",
        0.08,
    ),
)
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


@dataclass
class _Meta:
    """Article-level facts shared by the XML, the file layout and the label rows."""

    index: int
    pmcid: str
    pmid: str
    doi: str
    journal: tuple[str, str, str, str]
    year: int
    month: int
    day: int
    license: tuple[str, str, str, float]
    article_type: str
    kind: str
    stem: str
    wrapper: str
    id_style: str
    label_style: str
    malformed: bool
    ascii_refs: bool
    floats_at_end: bool


def _pmc_number(seed: int, index: int) -> int:
    """Unique within a corpus (index), different across seeds (offset) — 8 digits like today's PMCIDs."""
    return 10_000_000 + (seed % 89) * 1_000_000 + index


def _sample_meta(rng: np.random.Generator, cfg: _Config, index: int) -> _Meta:
    journal = _pick(rng, _JOURNALS)
    year = int(rng.integers(2012, 2025))
    elocation = int(rng.integers(100000, 999999))
    lic = _pickw(rng, _LICENSES, [x[3] for x in _LICENSES])
    num = _pmc_number(cfg.seed, index)
    stem = f"{journal[2]}-{year % 100:02d}-{elocation}"
    return _Meta(
        index=index,
        pmcid=f"PMC{num}",
        pmid=str(30_000_000 + (cfg.seed % 61) * 100_000 + index),
        doi=f"10.5555/{journal[2]}.{year}.{index:06d}",
        journal=journal,
        year=year,
        month=int(rng.integers(1, 13)),
        day=int(rng.integers(1, 29)),
        license=lic,
        article_type=_pickw(rng, ("research-article", "case-report", "review-article"), (0.7, 0.22, 0.08)),
        kind="package" if rng.random() < cfg.package_fraction else "folder",
        stem=stem,
        wrapper=_pickw(rng, ("bare", "articleset", "oai"), (0.75, 0.15, 0.1)),
        id_style=_pick(rng, ("F{n}", "F{n}", "fig{n}", "f{n}", stem + "-F{n}")),
        label_style=_pickw(rng, ("Figure {n}", "Fig. {n}", "FIGURE {n}"), (0.7, 0.2, 0.1)),
        malformed=bool(rng.random() < cfg.broken_fraction / 4),
        ascii_refs=bool(rng.random() < 0.4),
        floats_at_end=bool(rng.random() < 0.2),
    )


def _n_figures(rng: np.random.Generator) -> int:
    return int(_pickw(rng, (0, 1, 2, 3, 4), (0.06, 0.3, 0.3, 0.2, 0.14)))


def _plan_figures(rng: np.random.Generator, cfg: _Config, meta: _Meta) -> list[_FigSpec]:
    """Decide ids, labels, panels, formats, file names and breakage for every figure."""
    n = _n_figures(rng)
    group_at = int(rng.integers(0, n - 1)) if n >= 2 and rng.random() < 0.12 else -1
    figs: list[_FigSpec] = []
    number, seq, i = 0, 0, 0
    while i < n:
        number += 1
        members = 2 if i == group_at else 1
        for j in range(members):
            seq += 1
            suffix = "" if members == 1 else "AB"[j]
            figs.append(_plan_one(rng, cfg, meta, number, suffix, seq))
            if members == 2:
                figs[-1].group = meta.id_style.format(n=number)
        i += members
    return figs


def _plan_one(
    rng: np.random.Generator, cfg: _Config, meta: _Meta, number: int, suffix: str, seq: int
) -> _FigSpec:
    """One figure: modality drawn uniformly (first figure cycles by article index for coverage)."""
    mod = MODALITIES[meta.index % len(MODALITIES)] if seq == 1 else _pick(rng, MODALITIES)
    panels = [_sample_attrs(rng, mod)]
    if rng.random() < 0.12:
        other = mod if rng.random() < 0.5 else _pick(rng, MODALITIES)
        panels.append(_sample_attrs(rng, other))
    broken = _pick(rng, _FIGURE_BROKEN_KINDS) if rng.random() < cfg.broken_fraction else None
    formats, weights = _FORMATS["compound" if len(panels) > 1 else mod.id]
    fmt = _pickw(rng, formats, weights)
    if broken == "corrupt_image" and fmt.startswith("tif"):
        fmt = "jpg"  # truncated uncompressed TIFF strips can still half-decode; keep corruption detectable
    media = f"{meta.stem}-g{seq:03d}.{_EXT[fmt]}"
    href = media.rsplit(".", 1)[0] if rng.random() < 0.7 else media
    fig_id = meta.id_style.format(n=number) + (suffix.lower() if meta.id_style != "F{n}" else suffix)
    label = meta.label_style.format(n=number) + suffix
    return _FigSpec(fig_id, label, panels, media, href, fmt, broken)


# --------------------------------------------------------------------------------------------------
# JATS XML
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# One article end to end (runs in worker processes)
# --------------------------------------------------------------------------------------------------

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


def _label_row(meta: _Meta, fig: _FigSpec, source: str) -> dict[str, Any]:
    """The ``labels.jsonl`` row for one figure (top-level attributes describe panel A)."""
    first = fig.panels[0]
    broken = "malformed_xml" if meta.malformed else fig.broken
    caption = "" if fig.broken == "no_caption" else _plain(" ".join([fig.title, *fig.paragraphs]))
    row: dict[str, Any] = {
        "key": make_key(meta.pmcid, fig.fig_id),
        "pmcid": meta.pmcid,
        "fig_id": fig.fig_id,
        "label": fig.label,
        "modality": first.modality.name,
        "modality_id": first.modality.id,
        **first.attrs,
        "compound": fig.compound,
        "panels": [{"modality": p.modality.name, **p.attrs} for p in fig.panels] if fig.compound else None,
        "fig_group": fig.group,
        "broken": broken,
        "caption": caption,
        "media": fig.media,
        "graphic_href": fig.href,
        "format": fig.fmt,
        "source": source,
        "source_kind": meta.kind,
        "pmid": meta.pmid,
        "doi": meta.doi,
        "license": meta.license[0],
        "year": meta.year,
        "journal": meta.journal[1],
    }
    return row
