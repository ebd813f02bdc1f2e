"""Ground truth of the synthetic corpus: ``classes.json`` and the ``labels.jsonl`` rows.

Evaluation (:mod:`biomedclip.evaluate.synthetic`) joins these to built shards by key
(:func:`biomedclip.data.records.make_key`).
"""

from __future__ import annotations

from typing import Any

from biomedclip.data.records import make_key
from biomedclip.synth.captions import _plain
from biomedclip.synth.plan import _Meta
from biomedclip.synth.specs import _FigSpec
from biomedclip.synth.vocab import (
    _ATTR_TEMPLATES,
    _BY_ID,
    _FINDINGS_BY_MODALITY,
    _MODALITY_TEMPLATES,
    ATTRIBUTE_CLASSES,
    MODALITIES,
)


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
