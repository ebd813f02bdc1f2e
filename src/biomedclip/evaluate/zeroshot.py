"""Zero-shot classification with prompt ensembles (CLIP's recipe, used by the BiomedCLIP paper).

A class is represented by the mean of its normalised prompt embeddings ("a chest X-ray image",
"chest X-ray presented in image", …), re-normalised; an image goes to the most similar class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from biomedclip.models.runtime import ModelLike, as_runner, softmax_probabilities


def class_probabilities(image_feats: np.ndarray, class_feats: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax over classes of ``temperature`` × cosine similarity ([N, C]) — the runtime's rule."""
    return softmax_probabilities(image_feats, class_feats, temperature)


def accuracy(probabilities: np.ndarray, labels: Sequence[int]) -> float:
    """Top-1 accuracy of ``argmax`` predictions."""
    labels = np.asarray(labels)
    return float((probabilities.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


def multilabel_probabilities(image_feats: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                             logit_scale: float) -> np.ndarray:
    """Per label, P(present) = softmax over {"finding", "no finding"} prompt similarities ([N, C])."""
    pos = logit_scale * image_feats @ positive.T
    neg = logit_scale * image_feats @ negative.T
    return 1.0 / (1.0 + np.exp(neg - pos))


def evaluate_zeroshot(model: ModelLike, data: Any, task: Any, *, split: str = "test", cache: Any = None,
                      n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95, batch_size: int | None = None,
                      progress: Any = None, name: str | None = None) -> Any:
    """Zero-shot classification of one split with bootstrap CIs, as a report-ready ``TaskResult``.

    Single-label: softmax over class prompt-ensemble similarities at the model's temperature.
    Multi-label (``data.multilabel``): each class against its negative prompts ("no {}").
    ``model`` is a :class:`~biomedclip.models.runtime.ModelRunner` (a bare ``LoadedModel`` runs
    where its weights are).
    """
    import time

    from biomedclip.evaluate.cache import FeatureCache, model_fingerprint
    from biomedclip.evaluate.features import cached_image_features, require_readable
    from biomedclip.evaluate.metrics import (
        CLIP_BENCHMARK_METRICS,
        bootstrap_metrics,
        classification_metrics,
        multilabel_metrics,
    )
    from biomedclip.evaluate.report import TaskResult
    from biomedclip.evaluate.taskfile import align_labels

    started = time.perf_counter()
    runner = as_runner(model)
    cache = cache if cache is not None else FeatureCache(None)
    data = align_labels(data, task)
    part = data.split(split)
    images_fp = part.images.fingerprint()
    entry, hit = cached_image_features(runner, part.images, images_fp, split, cache, batch_size=batch_size,
                                       progress=progress)
    require_readable(entry, len(part), f"{data.path} (split {split!r})")
    labels = part.labels[entry.kept]
    scale = runner.temperature
    positive = runner.class_embeddings(task.classes, task.templates)
    if data.multilabel:
        negative = runner.class_embeddings(task.classes, task.negative_templates)
        scores = multilabel_probabilities(entry.features, positive, negative, scale)
        full = multilabel_metrics(labels, scores)
        headline_names = ("accuracy", "exact_match", "balanced_accuracy", "macro_f1", "macro_auroc")
    else:
        scores = class_probabilities(entry.features, positive, scale)
        full = classification_metrics(labels, scores)
        headline_names = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc", *CLIP_BENCHMARK_METRICS)
    boot = bootstrap_metrics(labels, scores, n_resamples=n_bootstrap, seed=seed, level=level,
                             multilabel=data.multilabel)
    metrics = {k: full[k] for k in headline_names}
    details = {k: v for k, v in full.items() if k not in metrics}
    details.update(headline=task.metric, logit_scale=scale, temperature=scale, cache_hit=hit,
                   skipped_items=entry.skipped, model_fingerprint=model_fingerprint(runner),
                   **runner.runtime.describe())
    if not data.multilabel:
        details["majority_accuracy"] = float(np.bincount(labels).max() / len(labels))
    return TaskResult(
        kind="zeroshot", name=name or task.name,
        data={"path": str(data.path), "format": data.kind, "split": split, "items": int(len(part)),
              "evaluated": int(len(labels)), "skipped": len(entry.skipped), "fingerprint": images_fp,
              "multilabel": data.multilabel},
        task=task.to_json(), metrics=metrics, ci={k: list(v) for k, v in boot.ci.items()},
        bootstrap=boot.to_json(), details=details, notes=list(data.notes),
        seconds=time.perf_counter() - started,
        arrays={"labels": labels, "scores": scores, "classes": list(task.classes),
                "items": [part.images.describe(int(i)) for i in entry.kept]},
    )
