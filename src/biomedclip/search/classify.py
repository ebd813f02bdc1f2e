"""Zero-shot classification of image files: class probabilities from labels typed by a user.

The maths is the model runtime's (:class:`biomedclip.models.runtime.ModelRunner`: prompt-ensemble
class embeddings, softmax of cosine similarities at the model's temperature — the same rule
zero-shot evaluation uses); this module adds what a user at a terminal or a web page needs: files
of any kind (DICOM/NIfTI too) with per-file errors instead of a crash, and labels and templates as
plain strings or a task file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from biomedclip.errors import BiomedclipError
from biomedclip.io.medical import ReadOptions, load_image
from biomedclip.models.prompts import DEFAULT_TEMPLATES
from biomedclip.models.runtime import ModelLike, ModelRunner, as_runner


class LabelError(BiomedclipError, ValueError):
    """Labels or templates that cannot be used."""


def check_labels(labels: Sequence[str], templates: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Cleaned labels (≥ 2, distinct, non-empty) and templates (each with exactly one ``{}``)."""
    clean = [label.strip() for label in labels if label and label.strip()]
    if len(clean) < 2:
        raise LabelError("give at least two labels to choose between")
    if len(set(clean)) != len(clean):
        raise LabelError(f"labels must be distinct: {clean}")
    chosen = [t for t in (templates or DEFAULT_TEMPLATES) if t.strip()]
    bad = [t for t in chosen if t.count("{}") != 1]
    if bad or not chosen:
        raise LabelError(f"every template needs exactly one '{{}}' for the label: {bad or chosen}")
    return clean, list(chosen)


@dataclass
class LabelSet:
    """Class embeddings of one label set, reusable across images (the server caches these)."""

    labels: list[str]
    templates: list[str]
    embeddings: np.ndarray  # [C, D] unit norm


def label_set(runner: ModelRunner, labels: Sequence[str], templates: Sequence[str] | None = None) -> LabelSet:
    """Encode the prompt ensemble of each label once."""
    clean, chosen = check_labels(labels, templates)
    return LabelSet(clean, chosen, runner.class_embeddings(clean, chosen))


def classify_images(model: ModelLike, images: Sequence[Image.Image], labels: Sequence[str] | LabelSet,
                    templates: Sequence[str] | None = None) -> np.ndarray:
    """[N, C] class probabilities for RGB images (``model``: a runner, or a bare loaded model)."""
    runner = as_runner(model)
    chosen = labels if isinstance(labels, LabelSet) else label_set(runner, labels, templates)
    return runner.probabilities(runner.encode_images(images), chosen.embeddings)


@dataclass
class FileResult:
    """Classification of one file, or why it could not be read."""

    file: str
    probabilities: dict[str, float] = field(default_factory=dict)
    prediction: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{file, prediction, probabilities: [{label, p}, …]}``, or ``{file, error}`` for an unreadable file.

        Probabilities are a list in label order, the shape ``POST /classify`` answers with too.
        """
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "prediction": self.prediction,
                "probabilities": probability_list(self.probabilities.keys(), self.probabilities.values())}


def probability_list(labels: Iterable[str], probabilities: Iterable[float]) -> list[dict[str, Any]]:
    """``[{"label": …, "p": …}, …]`` in label order: the one JSON shape of class probabilities (CLI and server)."""
    return [{"label": label, "p": round(float(p), 6)} for label, p in zip(labels, probabilities, strict=True)]


def classify_files(model: ModelLike, files: Sequence[str | Path], labels: Sequence[str],
                   templates: Sequence[str] | None = None, *,
                   read_options: ReadOptions | None = None) -> list[FileResult]:
    """Classify image files (PNG/JPEG/TIFF/DICOM/NIfTI…); unreadable files get an ``error``, not an exception."""
    from biomedclip.search.embed import ITEM_ERRORS

    runner = as_runner(model)
    chosen = label_set(runner, labels, templates)
    results = [FileResult(str(f)) for f in files]
    images, readable = [], []
    for result in results:
        try:
            images.append(load_image(result.file, read_options))
            readable.append(result)
        except ITEM_ERRORS as exc:
            result.error = str(exc)
    if images:
        probs = classify_images(runner, images, chosen)
        for result, row in zip(readable, probs, strict=True):
            result.probabilities = {label: round(float(p), 6) for label, p in zip(chosen.labels, row, strict=True)}
            result.prediction = chosen.labels[int(row.argmax())]
    return results
