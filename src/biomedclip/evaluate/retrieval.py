"""Cross-modal retrieval metrics: Recall@K and median rank, image→text and text→image.

Correct when an image has several captions: for image→text a hit is *any* of the image's
captions within the top K; for text→image each caption has exactly one right image. Ties are
counted pessimistically (an equally scored wrong item ranks before the right one), so a model
that outputs constant embeddings scores at chance, not at 100%.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10)


def _ranks(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per query (row), the 1-based rank of the best-placed positive column, ties pessimistic."""
    best_positive = np.where(positive, scores, -np.inf).max(axis=1, keepdims=True)
    better_or_tied_negatives = ((scores >= best_positive) & ~positive).sum(axis=1)
    return better_or_tied_negatives + 1


def retrieval_metrics(image_feats: np.ndarray, text_feats: np.ndarray, text_image_index: Sequence[int],
                      ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@K and median rank both ways; ``text_image_index[j]`` is the image of caption j."""
    index = np.asarray(text_image_index)
    if len(index) != len(text_feats):
        raise ValueError("text_image_index needs one image index per text")
    sims = image_feats @ text_feats.T  # [images, texts]
    positive = index[None, :] == np.arange(len(image_feats))[:, None]
    if not positive.any(axis=1).all():
        raise ValueError("every image needs at least one caption")
    i2t = _ranks(sims, positive)
    t2i = _ranks(sims.T, positive.T)
    metrics: dict[str, float] = {}
    for name, ranks in (("image_to_text", i2t), ("text_to_image", t2i)):
        for k in ks:
            metrics[f"{name}_R@{k}"] = float((ranks <= k).mean())
        metrics[f"{name}_median_rank"] = float(np.median(ranks))
    return metrics
