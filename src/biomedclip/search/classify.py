"""Zero-shot classification of image files: class probabilities from labels typed by a user.

The maths is the evaluation suite's (:mod:`biomedclip.evaluate.zeroshot`: prompt-ensemble class
embeddings, softmax of scaled cosine similarities); this module adds what a user at a terminal or
a web page needs: files of any kind (DICOM/NIfTI too) with per-file errors instead of a crash,
labels and templates as plain strings or a task file, and the model's own learned temperature
(``logit_scale``) instead of a fixed 100, so the probabilities are the ones the model was trained
to produce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from biomedclip.evaluate.taskfile import DEFAULT_TEMPLATES


class LabelError(ValueError):
    """Labels or templates that cannot be used."""


def logit_scale(loaded: Any) -> float:
    """The model's learned softmax temperature (exp of ``logit_scale``; 100 for a converged CLIP)."""
    return float(loaded.model.logit_scale.detach().float().exp().item())


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


def label_set(loaded: Any, labels: Sequence[str], templates: Sequence[str] | None = None) -> LabelSet:
    """Encode the prompt ensemble of each label once."""
    from biomedclip.evaluate.zeroshot import class_embeddings

    clean, chosen = check_labels(labels, templates)
    return LabelSet(clean, chosen, class_embeddings(loaded, clean, chosen))


def probabilities(loaded: Any, image_features: np.ndarray, labels: LabelSet) -> np.ndarray:
    """[N, C] class probabilities of unit-norm image features at the model's temperature."""
    from biomedclip.evaluate.zeroshot import class_probabilities

    return class_probabilities(image_features, labels.embeddings, logit_scale(loaded))


def classify_images(loaded: Any, images: Sequence[Image.Image], labels: Sequence[str] | LabelSet,
                    templates: Sequence[str] | None = None, *, bf16: bool = True) -> np.ndarray:
    """[N, C] class probabilities for RGB images."""
    from biomedclip.evaluate.features import encode_images

    chosen = labels if isinstance(labels, LabelSet) else label_set(loaded, labels, templates)
    return probabilities(loaded, encode_images(loaded, images, bf16=bf16), chosen)


@dataclass
class FileResult:
    """Classification of one file, or why it could not be read."""

    file: str
    probabilities: dict[str, float] = field(default_factory=dict)
    prediction: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "prediction": self.prediction, "probabilities": self.probabilities,
                "error": self.error}


def classify_files(loaded: Any, files: Sequence[str | Path], labels: Sequence[str],
                   templates: Sequence[str] | None = None, *, bf16: bool = True,
                   window: tuple[float, float] | None = None, slice_index: int | None = None,
                   axis: int = -1) -> list[FileResult]:
    """Classify image files (PNG/JPEG/TIFF/DICOM/NIfTI…); unreadable files get an ``error``, not an exception."""
    from biomedclip.io.medical import load_image
    from biomedclip.search.embed import ITEM_ERRORS

    chosen = label_set(loaded, labels, templates)
    results = [FileResult(str(f)) for f in files]
    images, readable = [], []
    for result in results:
        try:
            images.append(load_image(result.file, window=window, slice_index=slice_index, axis=axis))
            readable.append(result)
        except ITEM_ERRORS as exc:
            result.error = str(exc)
    if images:
        probs = classify_images(loaded, images, chosen, bf16=bf16)
        for result, row in zip(readable, probs, strict=True):
            result.probabilities = {label: round(float(p), 6) for label, p in zip(chosen.labels, row, strict=True)}
            result.prediction = chosen.labels[int(row.argmax())]
    return results
