"""Zero-shot classification with prompt ensembles (CLIP's recipe, used by the BiomedCLIP paper).

A class is represented by the mean of its normalised prompt embeddings ("a chest X-ray image",
"chest X-ray presented in image", …), re-normalised; an image goes to the most similar class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from biomedclip.evaluate.features import encode_texts


def class_embeddings(loaded: Any, classnames: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """[C, D] unit-norm class embeddings from a prompt ensemble (templates use ``{}``)."""
    if not classnames or not templates:
        raise ValueError("need at least one class name and one template")
    prompts = [t.format(c) for c in classnames for t in templates]
    feats = encode_texts(loaded, prompts).reshape(len(classnames), len(templates), -1).mean(axis=1)
    return feats / np.linalg.norm(feats, axis=1, keepdims=True)


def class_probabilities(image_feats: np.ndarray, class_feats: np.ndarray, logit_scale: float = 100.0) -> np.ndarray:
    """Softmax over classes of ``logit_scale`` × cosine similarity ([N, C])."""
    logits = logit_scale * image_feats @ class_feats.T
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def accuracy(probabilities: np.ndarray, labels: Sequence[int]) -> float:
    """Top-1 accuracy of ``argmax`` predictions."""
    labels = np.asarray(labels)
    return float((probabilities.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")
