"""Cross-modal retrieval metrics: Recall@K and median rank, image→text and text→image.

Correct when an image has several captions: for image→text a hit is *any* of the image's
captions within the top K; for text→image each caption has exactly one right image. Ties are
counted pessimistically (an equally scored wrong item ranks before the right one), so a model
that outputs constant embeddings scores at chance, not at 100%.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from biomedclip.models.runtime import ModelLike

DEFAULT_KS = (1, 5, 10)


def _ranks(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per query (row), the 1-based rank of the best-placed positive column, ties pessimistic."""
    best_positive = np.where(positive, scores, -np.inf).max(axis=1, keepdims=True)
    better_or_tied_negatives = ((scores >= best_positive) & ~positive).sum(axis=1)
    return better_or_tied_negatives + 1


def retrieval_ranks(image_feats: np.ndarray, text_feats: np.ndarray,
                    text_image_index: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks: per image of its best caption (image→text), per caption of its image (text→image)."""
    index = np.asarray(text_image_index)
    if len(index) != len(text_feats):
        raise ValueError("text_image_index needs one image index per text")
    sims = image_feats @ text_feats.T  # [images, texts]
    positive = index[None, :] == np.arange(len(image_feats))[:, None]
    if not positive.any(axis=1).all():
        raise ValueError("every image needs at least one caption")
    return _ranks(sims, positive), _ranks(sims.T, positive.T)


def retrieval_metrics(image_feats: np.ndarray, text_feats: np.ndarray, text_image_index: Sequence[int],
                      ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@K and median rank both ways; ``text_image_index[j]`` is the image of caption j."""
    i2t, t2i = retrieval_ranks(image_feats, text_feats, text_image_index)
    metrics: dict[str, float] = {}
    for name, ranks in (("image_to_text", i2t), ("text_to_image", t2i)):
        for k in ks:
            metrics[f"{name}_R@{k}"] = float((ranks <= k).mean())
        metrics[f"{name}_median_rank"] = float(np.median(ranks))
    return metrics


def recall_bootstrap(ranks: np.ndarray, k: int, *, n_resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of Recall@K over resampled queries (same scheme as :mod:`~biomedclip.evaluate.metrics`)."""
    hits = (np.asarray(ranks) <= k).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(hits), size=(n_resamples, len(hits)))
    values = hits[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def evaluate_retrieval(model: ModelLike, data: Any, *, cache: Any = None, ks: Sequence[int] = DEFAULT_KS,
                       n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95, batch_size: int | None = None,
                       progress: Any = None, name: str | None = None) -> Any:
    """Image↔text retrieval on a :class:`~biomedclip.evaluate.datasets.RetrievalData`, as a ``TaskResult``.

    Unreadable images are skipped together with their captions (and listed). Recall@K gets
    bootstrap CIs over queries.
    """
    import time

    from biomedclip.evaluate.cache import FeatureCache, model_fingerprint
    from biomedclip.evaluate.features import cached_image_features, cached_text_features, require_readable
    from biomedclip.evaluate.report import TaskResult
    from biomedclip.models.runtime import as_runner

    started = time.perf_counter()
    runner = as_runner(model)
    cache = cache if cache is not None else FeatureCache(None)
    images_fp = data.images.fingerprint()
    entry, hit = cached_image_features(runner, data.images, images_fp, f"retrieval-{data.split}", cache,
                                       batch_size=batch_size, progress=progress)
    texts, text_hit = cached_text_features(runner, data.captions, data.texts_fingerprint(), "captions", cache)
    require_readable(entry, len(data.images), f"{data.path} (split {data.split!r})")
    new_index = np.full(len(data.images), -1, dtype=np.int64)
    new_index[entry.kept] = np.arange(len(entry.kept))
    owner = new_index[data.caption_image]
    keep_caption = owner >= 0
    i2t, t2i = retrieval_ranks(entry.features, texts[keep_caption], owner[keep_caption])
    ks = sorted(set(int(k) for k in ks))
    metrics: dict[str, float] = {}
    ci: dict[str, list[float]] = {}
    for direction, ranks in (("image_to_text", i2t), ("text_to_image", t2i)):
        for k in ks:
            metrics[f"{direction}_R@{k}"] = float((ranks <= k).mean())
            ci[f"{direction}_R@{k}"] = list(recall_bootstrap(ranks, k, n_resamples=n_bootstrap, seed=seed, level=level))
        metrics[f"{direction}_median_rank"] = float(np.median(ranks))
    details = {"ks": ks, "headline": f"image_to_text_R@{ks[0]}", "images": int(len(entry.kept)),
               "captions": int(keep_caption.sum()), "images_with_several_captions":
               int((np.bincount(owner[keep_caption], minlength=len(entry.kept)) > 1).sum()),
               "cache_hit": {"images": hit, "captions": text_hit}, "skipped_items": entry.skipped,
               "model_fingerprint": model_fingerprint(runner), **runner.runtime.describe()}
    return TaskResult(
        kind="retrieval", name=name or f"retrieval-{data.path.name}-{data.split}",
        data={"path": str(data.path), "split": data.split, "items": int(len(data.images)),
              "captions": len(data.captions), "skipped": len(entry.skipped), "fingerprint": images_fp},
        metrics=metrics, ci=ci,
        bootstrap={"method": "percentile over queries", "n_resamples": n_bootstrap, "seed": seed, "level": level},
        details=details, seconds=time.perf_counter() - started,
    )
