"""Retrieval metrics on hand-worked examples: multiple captions per image, ties."""

from __future__ import annotations

import numpy as np
import pytest

from biomedclip.evaluate.retrieval import retrieval_metrics
from biomedclip.evaluate.zeroshot import accuracy, class_probabilities


def test_hand_worked_ranks_with_two_captions_per_image() -> None:
    images = np.eye(3)
    # captions 0,1 → image 0; caption 2 → image 1; caption 3 → image 2
    texts = np.array([[0.2, 0.9, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.9, 0.0, 0.1]])
    m = retrieval_metrics(images, texts, [0, 0, 1, 2], ks=(1, 2))
    # image→text: image0 best caption is #1 (score 1.0) rank 1; image1: captions by score
    # [0.9 (c0), 0, 1.0 (c2), 0] → c2 rank 1; image2: c3 score 0.1, c0/c1/c2 score 0 → rank 1
    assert m["image_to_text_R@1"] == pytest.approx(1.0)
    # text→image: c0 → [0.2, 0.9, 0] right image 0 → rank 2; c1 → rank 1; c2 → rank 1;
    # c3 → [0.9, 0, 0.1] right image 2 → rank 2
    assert m["text_to_image_R@1"] == pytest.approx(0.5)
    assert m["text_to_image_R@2"] == pytest.approx(1.0)
    assert m["text_to_image_median_rank"] == pytest.approx(1.5)


def test_ties_are_pessimistic() -> None:
    constant = np.ones((4, 2)) / np.sqrt(2)
    m = retrieval_metrics(constant, constant, [0, 1, 2, 3], ks=(1, 4))
    assert m["image_to_text_R@1"] == 0.0 and m["image_to_text_R@4"] == 1.0
    assert m["text_to_image_median_rank"] == 4.0


def test_rejects_bad_index() -> None:
    with pytest.raises(ValueError, match="one image index per text"):
        retrieval_metrics(np.eye(2), np.eye(2), [0])
    with pytest.raises(ValueError, match="at least one caption"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 0])


def test_zero_shot_probabilities_and_accuracy() -> None:
    classes = np.eye(3)
    images = np.array([[1.0, 0.1, 0.0], [0.0, 0.2, 1.0], [0.1, 1.0, 0.0], [1.0, 0.0, 0.0]])
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    probs = class_probabilities(images, classes, 100.0)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert accuracy(probs, [0, 2, 1, 1]) == pytest.approx(0.75)
