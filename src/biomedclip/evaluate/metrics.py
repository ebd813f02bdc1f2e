"""Classification metrics with bootstrap confidence intervals, single- and multi-label.

Point estimates come straight from scikit-learn. The bootstrap needs the same metrics on
thousands of resamples, where calling scikit-learn per resample would dominate the run; a
resample is equivalent to integer *sample weights* (how often each item was drawn), so the
resampled metrics are computed for all resamples at once from weighted confusion matrices and a
weighted Mann–Whitney AUROC (tests check both against scikit-learn with ``sample_weight``).

Resampling scheme (fixed, so results are reproducible and checkable by hand)::

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))   # row b = the items of resample b

and the interval is the percentile interval ``np.nanpercentile(values, [2.5, 97.5])`` over the
resamples where the metric is defined (AUROC needs both a positive and a negative).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

__all__ = [
    "CLIP_BENCHMARK_METRICS",
    "BootstrapResult",
    "bootstrap_metrics",
    "classification_metrics",
    "multilabel_metrics",
    "top_k_accuracy",
    "weighted_auroc",
]

SCALAR_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc")
# CLIP_benchmark's names for single-label classification, so our results.json reads like theirs:
# acc1 is our accuracy, mean_per_class_recall our balanced_accuracy (both scikit-learn's
# balanced_accuracy_score), acc5 the top-5 accuracy (1.0 by construction with ≤ 5 classes, where
# CLIP_benchmark leaves it empty).
CLIP_BENCHMARK_METRICS = ("acc1", "acc5", "mean_per_class_recall")
TOP_K = 5
_MAX_BLOCK = 4_000_000  # resamples × items per vectorised block (bounded memory)


# -- point estimates (scikit-learn) ---------------------------------------------------------------

def _ovr_auroc(labels: np.ndarray, scores: np.ndarray) -> tuple[float, list[float | None]]:
    """Macro one-vs-rest AUROC over the classes that have positives and negatives in ``labels``.

    A class absent from the evaluation set has no AUROC; it is reported as ``None`` and left out
    of the macro mean rather than failing the run (small or filtered test sets).
    """
    per_class: list[float | None] = []
    for c in range(scores.shape[1]):
        truth = labels == c
        per_class.append(float(roc_auc_score(truth, scores[:, c])) if 0 < truth.sum() < len(truth) else None)
    defined = [v for v in per_class if v is not None]
    return (float(np.mean(defined)) if defined else float("nan")), per_class


def _top_k_hits(labels: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """[N] bool: is the true class among the ``k`` highest scores of its row?

    Ties are broken towards the lower class index, as ``argmax`` does, so top-1 equals the
    accuracy of the argmax prediction; with ``k`` ≥ the number of classes every row is a hit.
    """
    if k >= scores.shape[1]:
        return np.ones(len(labels), dtype=bool)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (order == np.asarray(labels)[:, None]).any(axis=1)


def top_k_accuracy(labels: Sequence[int] | np.ndarray, scores: np.ndarray, k: int = TOP_K) -> float:
    """Share of items whose true class is among the ``k`` best-scored classes (1.0 when k ≥ classes)."""
    y = np.asarray(labels, dtype=np.int64)
    return float(_top_k_hits(y, np.asarray(scores), k).mean()) if len(y) else float("nan")


def classification_metrics(labels: Sequence[int] | np.ndarray, scores: np.ndarray) -> dict[str, object]:
    """Accuracy, balanced accuracy, macro-F1, per-class recall and macro OvR AUROC.

    ``labels`` are class indices [N]; ``scores`` are [N, C] class scores (probabilities or
    logits — only their order per column matters for AUROC, the row argmax is the prediction).
    Every class in ``range(C)`` counts for macro-F1 and recall, even if absent from ``labels``
    (recall is then undefined and reported as 0 by scikit-learn's ``zero_division=0``).
    ``acc1``, ``acc5`` and ``mean_per_class_recall`` repeat these under CLIP_benchmark's names
    (see :data:`CLIP_BENCHMARK_METRICS`).
    """
    y = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(y):
        raise ValueError(f"scores must be [N, C] with N = {len(y)} labels, got {scores.shape}")
    classes = list(range(scores.shape[1]))
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise ValueError(f"labels must be class indices in 0..{len(classes) - 1}")
    pred = scores.argmax(axis=1)
    macro_auroc, per_class_auroc = _ovr_auroc(y, scores)
    present = sorted(set(y.tolist()))
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true" is expected on small test sets
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(y, pred)) if len(y) else float("nan")
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        # balanced accuracy = mean recall over the classes present in the labels (scikit-learn's definition)
        "balanced_accuracy": balanced,
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        "macro_auroc": macro_auroc,
        "acc1": float(accuracy_score(y, pred)),
        "acc5": top_k_accuracy(y, scores, TOP_K),
        "mean_per_class_recall": balanced,
        "per_class_recall": [float(v) for v in recall_score(y, pred, labels=classes, average=None, zero_division=0)],
        "per_class_auroc": per_class_auroc,
        "per_class_support": [int((y == c).sum()) for c in classes],
        "classes_present": present,
        "confusion_matrix": confusion_matrix(y, pred, labels=classes).tolist(),
    }


def multilabel_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, object]:
    """Multi-label metrics: ``labels`` [N, C] in {0, 1}, ``scores`` [N, C] per-label probabilities.

    A label is predicted when its probability ≥ ``threshold``. ``accuracy`` is the mean per-label
    accuracy (1 − Hamming loss), ``exact_match`` scikit-learn's subset accuracy,
    ``balanced_accuracy`` the mean over labels of (sensitivity + specificity) / 2, ``macro_f1``
    and ``macro_auroc`` are averaged over labels (AUROC over labels with both outcomes present).
    """
    y = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if y.shape != scores.shape or y.ndim != 2:
        raise ValueError(f"multi-label labels and scores must both be [N, C], got {y.shape} and {scores.shape}")
    pred = (scores >= threshold).astype(np.int64)
    per_auroc: list[float | None] = []
    balanced: list[float] = []
    for c in range(y.shape[1]):
        col = y[:, c]
        both = 0 < col.sum() < len(col)
        per_auroc.append(float(roc_auc_score(col, scores[:, c])) if both else None)
        score = balanced_accuracy_score if both else accuracy_score
        balanced.append(float(score(col, pred[:, c])))
    defined = [v for v in per_auroc if v is not None]
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if y.size else float("nan"),
        "exact_match": float(accuracy_score(y, pred)) if len(y) else float("nan"),
        "balanced_accuracy": float(np.mean(balanced)) if balanced else float("nan"),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "macro_auroc": float(np.mean(defined)) if defined else float("nan"),
        "per_class_recall": [float(v) for v in recall_score(y, pred, average=None, zero_division=0)],
        "per_class_auroc": per_auroc,
        "per_class_support": [int(v) for v in y.sum(axis=0)],
        "threshold": threshold,
    }


# -- weighted (bootstrap) versions ------------------------------------------------------------------

def weighted_auroc(truth: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of one binary problem under each row of ``weights`` ([B, N] → [B]); NaN where undefined.

    Weighted Mann–Whitney: the share of (positive, negative) weight pairs ordered correctly,
    ties counting one half — what ``roc_auc_score(truth, scores, sample_weight=w)`` returns.
    """
    truth = np.asarray(truth, dtype=bool)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # tie groups
    w = np.asarray(weights, dtype=np.float64)[:, order]
    pos_sorted = truth[order]
    neg = np.add.reduceat(w * ~pos_sorted, starts, axis=1)
    pos = np.add.reduceat(w * pos_sorted, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (pos * (neg_below + 0.5 * neg)).sum(axis=1) / total, np.nan)


def _weighted_single(y: np.ndarray, scores: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Single-label scalar metrics for every weight row of ``w`` [B, N]."""
    n_classes = scores.shape[1]
    pred = scores.argmax(axis=1)
    cells = y * n_classes + pred
    cm = np.stack([np.bincount(cells, weights=row, minlength=n_classes * n_classes) for row in w])
    cm = cm.reshape(len(w), n_classes, n_classes)  # [B, true, pred]
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    total = support.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        present = support > 0
        balanced = np.where(present.any(axis=1), (recall * present).sum(axis=1) / present.sum(axis=1), np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
        auroc_per_class = np.stack([weighted_auroc(y == c, scores[:, c], w) for c in range(n_classes)], axis=1)
        accuracy = tp.sum(axis=1) / total
        return {
            "accuracy": accuracy,
            "balanced_accuracy": balanced,
            "macro_f1": f1.mean(axis=1),
            "macro_auroc": np.nanmean(auroc_per_class, axis=1),
            "acc1": accuracy,
            "acc5": (w @ _top_k_hits(y, scores, TOP_K)) / total,
            "mean_per_class_recall": balanced,
        }


def _weighted_multi(y: np.ndarray, scores: np.ndarray, w: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Multi-label scalar metrics for every weight row of ``w`` [B, N]."""
    pred = scores >= threshold
    truth = y.astype(bool)
    total = w.sum(axis=1)
    tp = w @ (pred & truth)
    fp = w @ (pred & ~truth)
    fn = w @ (~pred & truth)
    tn = w @ (~pred & ~truth)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos, negs = tp + fn, tn + fp
        sens = np.where(pos > 0, tp / pos, np.nan)
        spec = np.where(negs > 0, tn / negs, np.nan)
        both = (pos > 0) & (negs > 0)
        per_label_acc = (tp + tn) / total[:, None]
        balanced = np.where(both, (sens + spec) / 2, per_label_acc)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        aurocs = np.stack([weighted_auroc(truth[:, c], scores[:, c], w) for c in range(y.shape[1])], axis=1)
        exact = (w @ (pred == truth).all(axis=1)) / total
        return {
            "accuracy": per_label_acc.mean(axis=1),
            "exact_match": exact,
            "balanced_accuracy": balanced.mean(axis=1),
            "macro_f1": f1.mean(axis=1),
            "macro_auroc": np.nanmean(aurocs, axis=1),
        }


@dataclass
class BootstrapResult:
    """Percentile intervals per metric, with how many resamples defined each metric."""

    ci: dict[str, tuple[float, float]]
    n_resamples: int
    seed: int
    level: float
    valid: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"level": self.level, "n_resamples": self.n_resamples, "seed": self.seed,
                "method": "percentile", "ci": {k: list(v) for k, v in self.ci.items()}, "valid": self.valid}


def bootstrap_metrics(labels: np.ndarray, scores: np.ndarray, *, n_resamples: int = 1000, seed: int = 0,
                      level: float = 0.95, multilabel: bool = False, threshold: float = 0.5) -> BootstrapResult:
    """Percentile bootstrap CIs of the scalar metrics (see the module docstring for the scheme)."""
    y = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    n = len(y)
    if n_resamples < 1 or n == 0:
        raise ValueError("bootstrap needs at least one resample and one item")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    block = max(1, _MAX_BLOCK // n)
    chunks: list[dict[str, np.ndarray]] = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices → NaN, handled below
        for start in range(0, n_resamples, block):
            rows = idx[start:start + block]
            w = np.stack([np.bincount(r, minlength=n) for r in rows]).astype(np.float64)
            chunks.append(_weighted_multi(y, scores, w, threshold) if multilabel
                          else _weighted_single(y, scores, w))
    tail = (1 - level) / 2 * 100
    ci: dict[str, tuple[float, float]] = {}
    valid: dict[str, int] = {}
    for name in chunks[0]:
        values = np.concatenate([c[name] for c in chunks])
        finite = values[np.isfinite(values)]
        valid[name] = int(finite.size)
        if finite.size:
            lo, hi = np.percentile(finite, [tail, 100 - tail])
            ci[name] = (float(lo), float(hi))
        else:
            ci[name] = (float("nan"), float("nan"))
    return BootstrapResult(ci=ci, n_resamples=n_resamples, seed=seed, level=level, valid=valid)
