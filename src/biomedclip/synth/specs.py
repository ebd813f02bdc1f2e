"""Figure specs: what each figure shows, sampled before anything is drawn or written.

Captions (:mod:`~biomedclip.synth.captions`), pixels (:mod:`~biomedclip.synth.render`) and labels
(:mod:`~biomedclip.synth.truth`) all read one :class:`_Panel`/:class:`_FigSpec`, which is why the
caption words and the image agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from biomedclip.synth.sampling import _pick, _pickw
from biomedclip.synth.vocab import _ATTR_NAMES, Modality


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
