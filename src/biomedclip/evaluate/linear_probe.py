"""Linear probes on frozen image features: full data, k-shot and label fractions.

A probe is scikit-learn's ``LogisticRegression`` (one-vs-rest for multi-label) on the cached,
unit-norm image embeddings. The inverse regularisation strength ``C`` is chosen on the
**validation split only** — the test split is touched once, by the chosen model — with ties
broken by lower validation log-loss (small validation sets often tie on accuracy).

* **full**: all training labels; test metrics with bootstrap CIs, confusion matrix, ROC.
* **k-shot** (k = 1, 2, 4, 8, 16 by default): k training *and* k validation examples per class,
  drawn with each of several seeds; mean ± sd over seeds. A class with fewer than k examples
  contributes all it has (noted in the results).
* **label fraction** (1%, 10%, 100% as in the paper): a stratified share of the training split
  (at least one example per class), the full validation split for C; several seeds below 100%.

Datasets without a validation split get one carved from train (stratified, seeded); datasets
with a single split are divided 60/20/20. Both are recorded in the result's notes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.multiclass import OneVsRestClassifier

from biomedclip.evaluate.metrics import (
    CLIP_BENCHMARK_METRICS,
    bootstrap_metrics,
    classification_metrics,
    multilabel_metrics,
)
from biomedclip.models.runtime import ModelLike

__all__ = [
    "DEFAULT_CS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_SHOTS",
    "ProbeFit",
    "evaluate_linear_probe",
    "fit_probe",
    "fraction_indices",
    "kshot_indices",
]

DEFAULT_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 4, 8))
DEFAULT_SHOTS: tuple[int, ...] = (1, 2, 4, 8, 16)
DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.1, 1.0)
MAX_ITER = 2000


@dataclass
class ProbeFit:
    """A fitted probe and how its C was chosen."""

    model: Any
    C: float
    val_score: float
    val_scores: dict[float, float]
    converged: bool

    def predict_scores(self, features: np.ndarray) -> np.ndarray:
        """[N, C] class probabilities (per-label probabilities for multi-label)."""
        return np.asarray(self.model.predict_proba(features), dtype=np.float64)


def _estimator(C: float, multilabel: bool) -> Any:
    base = LogisticRegression(C=C, max_iter=MAX_ITER)
    return OneVsRestClassifier(base) if multilabel else base


def _full_scores(model: Any, features: np.ndarray, n_classes: int, multilabel: bool) -> np.ndarray:
    """Probabilities with one column per class, also for classes missing from a small training set."""
    proba = np.asarray(model.predict_proba(np.asarray(features, dtype=np.float64)), dtype=np.float64)
    if multilabel:
        return proba
    out = np.zeros((len(features), n_classes))
    out[:, np.asarray(model.classes_, dtype=np.int64)] = proba
    return out


def _selection_score(metric: str, labels: np.ndarray, scores: np.ndarray, multilabel: bool) -> float:
    if multilabel:
        cols = [c for c in range(labels.shape[1]) if 0 < labels[:, c].sum() < len(labels)]
        return float(np.mean([roc_auc_score(labels[:, c], scores[:, c]) for c in cols])) if cols else float("nan")
    if metric == "macro_auroc":
        value = classification_metrics(labels, scores)["macro_auroc"]
        return float(value)  # type: ignore[arg-type]
    if metric == "balanced_accuracy":
        return float(classification_metrics(labels, scores)["balanced_accuracy"])  # type: ignore[arg-type]
    return float((scores.argmax(axis=1) == labels).mean())


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
              n_classes: int, multilabel: bool = False, cs: Sequence[float] = DEFAULT_CS,
              metric: str = "accuracy") -> ProbeFit:
    """Fit one probe per C on train, keep the best on validation (then lowest val log-loss)."""
    if multilabel:
        keep = [c for c in range(train_y.shape[1]) if 0 < train_y[:, c].sum() < len(train_y)]
        if len(keep) != train_y.shape[1]:
            raise ValueError("every label needs positive and negative training examples for a multi-label probe")
    elif len(np.unique(train_y)) < 2:
        raise ValueError("a probe needs training examples of at least two classes")
    train_x = np.asarray(train_x, dtype=np.float64)  # float32 probabilities miss sklearn's sum-to-one check
    best: tuple[float, float, float, Any, bool] | None = None  # (score, -loss, C, model, converged)
    scores: dict[float, float] = {}
    for C in cs:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = _estimator(C, multilabel).fit(train_x, train_y)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        proba = _full_scores(model, val_x, n_classes, multilabel)
        score = _selection_score(metric, val_y, proba, multilabel)
        scores[float(C)] = score
        if multilabel:
            loss = float(np.mean([log_loss(val_y[:, c], np.clip(proba[:, c], 1e-12, 1 - 1e-12), labels=[0, 1])
                                  for c in range(val_y.shape[1])]))
        else:
            loss = float(log_loss(val_y, proba, labels=list(range(n_classes))))
        key = (score if np.isfinite(score) else -np.inf, -loss)
        if best is None or key > (best[0], best[1]):
            best = (key[0], key[1], float(C), model, converged)
    assert best is not None
    return ProbeFit(model=best[3], C=best[2], val_score=scores[best[2]], val_scores=scores, converged=best[4])


def kshot_indices(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k indices per class (all of a class that has fewer), drawn with ``seed``; sorted."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def fraction_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified ``fraction`` of the items (≥ 1 per class), drawn with ``seed``; sorted."""
    if fraction >= 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    strata = labels if labels.ndim == 1 else labels.argmax(axis=1)  # multi-label: stratify by first label
    chosen = []
    for c in np.unique(strata):
        members = np.flatnonzero(strata == c)
        take = max(1, int(round(fraction * len(members))))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def _eval_scalars(labels: np.ndarray, scores: np.ndarray, multilabel: bool) -> dict[str, float]:
    full = multilabel_metrics(labels, scores) if multilabel else classification_metrics(labels, scores)
    return {k: float(full[k]) for k in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc")}  # type: ignore[arg-type]


def _summarise(runs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    summary = []
    for value in sorted({r[key] for r in runs}):
        group = [r for r in runs if r[key] == value]
        row: dict[str, Any] = {key: value, "runs": len(group),
                               "train_items": int(np.mean([r["train_items"] for r in group]))}
        for metric in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc"):
            vals = np.array([r[metric] for r in group], dtype=float)
            row[f"{metric}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            row[f"{metric}_sd"] = float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1 else 0.0
        summary.append(row)
    return summary


@dataclass
class _Features:
    x: np.ndarray
    y: np.ndarray
    items: list[str]
    skipped: list[dict[str, Any]]
    hit: bool


def _split_features(runner: Any, data: Any, split: str, cache: Any, batch_size: int | None,
                    progress: Any) -> _Features:
    from biomedclip.evaluate.features import cached_image_features, require_readable

    part = data.split(split)
    entry, hit = cached_image_features(runner, part.images, part.images.fingerprint(), split, cache,
                                       batch_size=batch_size,
                                       progress=(lambda d, t: progress(split, d, t)) if progress else None)
    require_readable(entry, len(part), f"{data.path} (split {split!r})")
    return _Features(entry.features, part.labels[entry.kept], [part.images.describe(int(i)) for i in entry.kept],
                     entry.skipped, hit)


def _ensure_splits(data: Any, seed: int) -> tuple[Any, list[str]]:
    """Make sure train/val/test exist, carving them (stratified, seeded) where they do not."""
    from dataclasses import replace

    notes: list[str] = []
    splits = dict(data.splits)

    def stratify(labels: np.ndarray) -> np.ndarray | None:
        if labels.ndim != 1:
            return None
        counts = np.bincount(labels)
        return labels if counts[counts > 0].min() >= 2 else None

    if "train" not in splits:
        (only_name, only), = [(n, p) for n, p in splits.items()][:1]
        idx = np.arange(len(only))
        train_idx, rest = train_test_split(idx, test_size=0.4, random_state=seed, stratify=stratify(only.labels))
        val_idx, test_idx = train_test_split(rest, test_size=0.5, random_state=seed,
                                             stratify=stratify(only.labels[rest]))
        splits = {"train": only.subset(np.sort(train_idx)), "val": only.subset(np.sort(val_idx)),
                  "test": only.subset(np.sort(test_idx))}
        notes.append(f"no train split: the {only_name!r} split was divided 60/20/20 into train/val/test "
                     f"(stratified, seed {seed})")
    elif "val" not in splits:
        train = splits["train"]
        idx = np.arange(len(train))
        train_idx, val_idx = train_test_split(idx, test_size=0.2, random_state=seed, stratify=stratify(train.labels))
        splits["train"], splits["val"] = train.subset(np.sort(train_idx)), train.subset(np.sort(val_idx))
        notes.append(f"no val split: 20% of train held out for choosing C (stratified, seed {seed})")
    if "test" not in splits:
        raise ValueError(f"{data.path}: a linear probe needs a test split (found {', '.join(data.splits)})")
    return replace(data, splits=splits), notes


def evaluate_linear_probe(
    model: ModelLike, data: Any, *, task: Any = None, cache: Any = None, shots: Sequence[int] = DEFAULT_SHOTS,
    fractions: Sequence[float] = DEFAULT_FRACTIONS, seeds: int = 3, cs: Sequence[float] = DEFAULT_CS,
    n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95, batch_size: int | None = None,
    progress: Callable[[str, int, int], None] | None = None, name: str | None = None,
) -> Any:
    """Full, k-shot and label-fraction linear probes on one dataset, as a report-ready ``TaskResult``.

    ``task`` (optional) supplies class names and the validation metric (e.g. ``macro_auroc`` for
    TCGA-TIL); without it the dataset's own label names are used and C is chosen by accuracy.
    ``progress(stage, done, total)`` reports embedding per split and then probe fits.
    """
    from biomedclip.evaluate.cache import FeatureCache, model_fingerprint
    from biomedclip.evaluate.report import TaskResult
    from biomedclip.evaluate.taskfile import align_labels
    from biomedclip.models.runtime import as_runner

    started = time.perf_counter()
    runner = as_runner(model)
    cache = cache if cache is not None else FeatureCache(None)
    if task is not None:
        data = align_labels(data, task)
        classes, metric = list(task.classes), task.metric
    else:
        classes, metric = [n.replace("_", " ") for n in data.label_names], "accuracy"
    data, notes = _ensure_splits(data, seed)
    feats = {s: _split_features(runner, data, s, cache, batch_size, progress) for s in ("train", "val", "test")}
    train, val, test = feats["train"], feats["val"], feats["test"]
    multilabel, n_classes = data.multilabel, len(classes)
    shots = [] if multilabel else sorted(set(int(k) for k in shots))
    if multilabel and shots:
        notes.append("k-shot is defined for single-label tasks only; skipped")
    fractions = sorted(set(float(f) for f in fractions) | {1.0})
    plan = len(shots) * seeds + sum(1 if f >= 1.0 else seeds for f in fractions)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress("probe fits", done, plan)

    # full data (the 100% label fraction) — the headline probe, with CIs and plots
    fit = fit_probe(train.x, train.y, val.x, val.y, n_classes=n_classes, multilabel=multilabel, cs=cs, metric=metric)
    tick()
    scores = _full_scores(fit.model, test.x, n_classes, multilabel)
    full = multilabel_metrics(test.y, scores) if multilabel else classification_metrics(test.y, scores)
    boot = bootstrap_metrics(test.y, scores, n_resamples=n_bootstrap, seed=seed, level=level, multilabel=multilabel)
    headline = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc",
                *(() if multilabel else CLIP_BENCHMARK_METRICS))
    metrics = {k: float(full[k]) for k in headline}  # type: ignore[arg-type]
    if not fit.converged:
        notes.append(f"logistic regression did not fully converge in {MAX_ITER} iterations at C={fit.C:g}")

    fraction_runs: list[dict[str, Any]] = []
    for fraction in fractions:
        if fraction >= 1.0:
            fraction_runs.append({"fraction": 1.0, "seed": seed, "train_items": len(train.y), "C": fit.C,
                                  **_eval_scalars(test.y, scores, multilabel)})
            continue
        for s in range(seeds):
            idx = fraction_indices(train.y, fraction, seed + s)
            try:
                sub = fit_probe(train.x[idx], train.y[idx], val.x, val.y, n_classes=n_classes,
                                multilabel=multilabel, cs=cs, metric=metric)
            except ValueError as exc:
                notes.append(f"label fraction {fraction:g}, seed {seed + s}: skipped ({exc})")
                tick()
                continue
            fraction_runs.append({"fraction": fraction, "seed": seed + s, "train_items": int(len(idx)), "C": sub.C,
                                  **_eval_scalars(test.y, _full_scores(sub.model, test.x, n_classes, multilabel),
                                                  multilabel)})
            tick()

    kshot_runs: list[dict[str, Any]] = []
    for k in shots:
        short = [classes[c] for c in np.unique(train.y) if (train.y == c).sum() < k]
        if short:
            notes.append(f"k={k}: classes with fewer than {k} training examples use all they have: {short}")
        for s in range(seeds):
            train_idx = kshot_indices(train.y, k, seed + s)
            val_idx = kshot_indices(val.y, k, seed + s)
            try:
                sub = fit_probe(train.x[train_idx], train.y[train_idx], val.x[val_idx], val.y[val_idx],
                                n_classes=n_classes, cs=cs, metric=metric)
            except ValueError as exc:
                notes.append(f"k={k}, seed {seed + s}: skipped ({exc})")
                tick()
                continue
            kshot_runs.append({"k": k, "seed": seed + s, "train_items": int(len(train_idx)), "C": sub.C,
                               **_eval_scalars(test.y, _full_scores(sub.model, test.x, n_classes, False), False)})
            tick()

    details: dict[str, Any] = {k: v for k, v in full.items() if k not in metrics}
    skipped = [dict(s, split=name_) for name_, f in feats.items() for s in f.skipped]
    details.update(
        headline=metric if metric in metrics else "accuracy", selection_metric=metric, chosen_C=fit.C,
        val_score=fit.val_score, val_scores={f"{c:g}": v for c, v in fit.val_scores.items()}, cs=list(cs),
        kshot={"runs": kshot_runs, "summary": _summarise(kshot_runs, "k"), "seeds": seeds},
        fractions={"runs": fraction_runs, "summary": _summarise(fraction_runs, "fraction"), "seeds": seeds},
        cache_hit={s: f.hit for s, f in feats.items()}, skipped_items=skipped,
        model_fingerprint=model_fingerprint(runner), **runner.runtime.describe(),
        split_sizes={s: int(len(f.y)) for s, f in feats.items()},
    )
    if not multilabel:
        details["majority_accuracy"] = float((test.y == np.bincount(train.y).argmax()).mean())
    return TaskResult(
        kind="linear_probe", name=name or (task.name if task is not None else f"{data.path.stem}"),
        data={"path": str(data.path), "format": data.kind, "split": "train→val (C) → test",
              "items": int(sum(len(f.y) for f in feats.values())), "skipped": len(skipped),
              "fingerprint": {s: data.split(s).images.fingerprint() for s in ("train", "val", "test")},
              "multilabel": multilabel},
        task=task.to_json() if task is not None else {"classes": classes, "source": "dataset label names"},
        metrics=metrics, ci={k: list(v) for k, v in boot.ci.items()}, bootstrap=boot.to_json(), details=details,
        notes=list(data.notes) + notes, seconds=time.perf_counter() - started,
        arrays={"labels": test.y, "scores": scores, "classes": classes, "items": test.items},
    )
