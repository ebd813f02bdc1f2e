"""Vocabulary of the synthetic corpus: modalities, attributes, prompt templates, broken kinds.

This is the contract with zero-shot evaluation: the class names here are the values written to
``labels.jsonl`` and ``classes.json`` (see :mod:`biomedclip.synth.truth`), and every caption the
corpus writes names its modality with one of a modality's synonyms.
"""

from __future__ import annotations

from dataclasses import dataclass


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
