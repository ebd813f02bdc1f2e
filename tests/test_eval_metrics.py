"""Metrics against independent computations: scikit-learn, hand-worked examples, direct numpy bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)

from biomedclip.evaluate.metrics import (
    _weighted_multi,
    _weighted_single,
    bootstrap_metrics,
    classification_metrics,
    multilabel_metrics,
    top_k_accuracy,
    weighted_auroc,
)
from biomedclip.evaluate.retrieval import recall_bootstrap, retrieval_metrics, retrieval_ranks


def _problem(n: int = 300, c: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.0
    logits = np.round(logits, 1)  # ties on purpose
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_point_estimates_match_sklearn() -> None:
    y, p = _problem()
    m = classification_metrics(y, p)
    pred = p.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["per_class_recall"] == pytest.approx(list(recall_score(y, pred, average=None)))
    assert m["macro_auroc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert np.array(m["confusion_matrix"]).sum() == len(y)


def test_clip_benchmark_names_equal_direct_computations() -> None:
    # 8 classes, continuous scores (no ties): acc5 against scikit-learn and a plain numpy top-5
    y, p = _problem(n=400, c=8, seed=11)
    p = p + np.random.default_rng(1).normal(scale=1e-6, size=p.shape)
    m = classification_metrics(y, p)
    pred = p.argmax(axis=1)
    assert m["acc1"] == pytest.approx(accuracy_score(y, pred)) and m["acc1"] == m["accuracy"]
    assert m["mean_per_class_recall"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["mean_per_class_recall"] == m["balanced_accuracy"]
    top5 = np.argsort(-p, axis=1)[:, :5]
    assert m["acc5"] == pytest.approx(np.mean([y[i] in top5[i] for i in range(len(y))]))
    assert m["acc5"] == pytest.approx(top_k_accuracy_score(y, p, k=5, labels=list(range(8))))
    assert m["acc1"] < m["acc5"] < 1.0
    # ≤ 5 classes: every class is in the top 5, so acc5 is 1.0 by construction
    for c in (2, 3, 5):
        yc, pc = _problem(n=50, c=c, seed=c)
        assert classification_metrics(yc, pc)["acc5"] == 1.0
    # ties: top-1 of the ranking is argmax's choice, so acc1 and top_k_accuracy(k=1) agree
    y, p = _problem(n=300, c=6, seed=4)  # rounded logits: ties on purpose
    assert top_k_accuracy(y, p, 1) == pytest.approx(classification_metrics(y, p)["accuracy"])


def test_clip_benchmark_names_in_the_bootstrap() -> None:
    y, p = _problem(n=150, c=7, seed=8)
    rng = np.random.default_rng(3)
    w = rng.integers(0, 4, size=(5, len(y))).astype(float)
    out = _weighted_single(y, p, w)
    hits = (np.argsort(-p, axis=1, kind="stable")[:, :5] == y[:, None]).any(axis=1)
    for b in range(len(w)):
        assert out["acc5"][b] == pytest.approx(np.average(hits, weights=w[b]))
    np.testing.assert_array_equal(out["acc1"], out["accuracy"])
    np.testing.assert_array_equal(out["mean_per_class_recall"], out["balanced_accuracy"])
    boot = bootstrap_metrics(y, p, n_resamples=100, seed=0)
    point = classification_metrics(y, p)
    assert boot.ci["acc1"] == boot.ci["accuracy"]
    assert boot.ci["acc5"][0] <= point["acc5"] <= boot.ci["acc5"][1]


def test_hand_worked_small_example() -> None:
    # true: 0 0 1 1 2 ; predicted: 0 1 1 1 0
    scores = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3]])
    m = classification_metrics([0, 0, 1, 1, 2], scores)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class_recall"] == pytest.approx([0.5, 1.0, 0.0])
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    # F1: class0 P=1/2 R=1/2 → 0.5; class1 P=2/3 R=1 → 0.8; class2 → 0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # class-2 AUROC: positive item scores 0.3, negatives 0.1 ×4 → 1.0
    assert m["per_class_auroc"][2] == pytest.approx(1.0)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_absent_class_is_left_out_of_macro_auroc() -> None:
    y, p = _problem(c=3)
    keep = y != 2
    m = classification_metrics(y[keep], p[keep])
    assert m["per_class_auroc"][2] is None
    expected = np.mean([roc_auc_score(y[keep] == c, p[keep][:, c]) for c in (0, 1)])
    assert m["macro_auroc"] == pytest.approx(expected)
    assert m["per_class_support"][2] == 0


def test_weighted_metrics_equal_sklearn_with_sample_weight() -> None:
    y, p = _problem(n=150, c=3, seed=3)
    rng = np.random.default_rng(5)
    w = rng.integers(0, 4, size=(6, len(y))).astype(float)
    out = _weighted_single(y, p, w)
    pred = p.argmax(axis=1)
    for b in range(len(w)):
        assert out["accuracy"][b] == pytest.approx(accuracy_score(y, pred, sample_weight=w[b]))
        assert out["balanced_accuracy"][b] == pytest.approx(balanced_accuracy_score(y, pred, sample_weight=w[b]))
        assert out["macro_f1"][b] == pytest.approx(
            f1_score(y, pred, average="macro", labels=[0, 1, 2], sample_weight=w[b], zero_division=0))
        assert out["macro_auroc"][b] == pytest.approx(
            np.mean([roc_auc_score(y == c, p[:, c], sample_weight=w[b]) for c in range(3)]))
    # one binary AUROC with heavy ties
    truth = y == 1
    scores = np.round(p[:, 1], 1)
    assert weighted_auroc(truth, scores, w[:1])[0] == pytest.approx(roc_auc_score(truth, scores, sample_weight=w[0]))
    assert np.isnan(weighted_auroc(np.ones(4, bool), np.arange(4.0), np.ones((1, 4))))[0]


def test_bootstrap_equals_direct_numpy_resampling() -> None:
    y, p = _problem(n=120, c=2, seed=7)
    boot = bootstrap_metrics(y, p, n_resamples=200, seed=42)
    rng = np.random.default_rng(42)
    idx = rng.integers(0, len(y), size=(200, len(y)))
    acc, auc, bal = [], [], []
    for rows in idx:
        yy, pp = y[rows], p[rows]
        acc.append((pp.argmax(axis=1) == yy).mean())
        bal.append(balanced_accuracy_score(yy, pp.argmax(axis=1)))
        both = 0 < yy.sum() < len(yy)
        auc.append(np.mean([roc_auc_score(yy == c, pp[:, c]) for c in (0, 1)]) if both else np.nan)
    assert boot.ci["accuracy"] == pytest.approx(tuple(np.percentile(acc, [2.5, 97.5])))
    assert boot.ci["balanced_accuracy"] == pytest.approx(tuple(np.percentile(bal, [2.5, 97.5])))
    assert boot.ci["macro_auroc"] == pytest.approx(tuple(np.nanpercentile(auc, [2.5, 97.5])))
    again = bootstrap_metrics(y, p, n_resamples=200, seed=42)
    other = bootstrap_metrics(y, p, n_resamples=200, seed=43)
    assert again.ci == boot.ci and other.ci != boot.ci
    point = classification_metrics(y, p)
    for name, (lo, hi) in boot.ci.items():
        assert 0 <= lo <= point[name] <= hi <= 1


def test_multilabel_metrics_match_sklearn_and_bootstrap() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random((200, 4)) < 0.3).astype(int)
    p = np.clip(0.45 * y + 0.6 * rng.random((200, 4)), 0, 1)
    m = multilabel_metrics(y, p)
    pred = (p >= 0.5).astype(int)
    assert m["exact_match"] == pytest.approx(accuracy_score(y, pred))
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["macro_auroc"] == pytest.approx(roc_auc_score(y, p, average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(np.mean([balanced_accuracy_score(y[:, c], pred[:, c])
                                                            for c in range(4)]))
    w = rng.integers(0, 3, size=(3, 200)).astype(float)
    out = _weighted_multi(y, p, w, 0.5)
    for b in range(3):
        assert out["macro_auroc"][b] == pytest.approx(roc_auc_score(y, p, average="macro", sample_weight=w[b]))
        assert out["exact_match"][b] == pytest.approx(accuracy_score(y, pred, sample_weight=w[b]))
    boot = bootstrap_metrics(y, p, n_resamples=100, seed=0, multilabel=True)
    assert boot.ci["macro_auroc"][0] <= m["macro_auroc"] <= boot.ci["macro_auroc"][1]


def test_bad_metric_inputs() -> None:
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics([0, 3], np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        classification_metrics([0, 1, 1], np.ones((2, 2)))
    with pytest.raises(ValueError, match="confidence level"):
        bootstrap_metrics(np.array([0, 1]), np.eye(2), level=1.5)


def test_recall_at_k_with_ties_and_several_captions() -> None:
    # 2 images; image 0 has captions 0 and 1, image 1 has caption 2. Scores chosen by hand:
    images = np.array([[1.0, 0.0], [0.0, 1.0]])
    texts = np.array([[0.0, 1.0],    # caption 0 (image 0) looks like image 1
                      [0.6, 0.6],    # caption 1 (image 0) ties between both images
                      [0.0, 1.0]])   # caption 2 (image 1)
    i2t, t2i = retrieval_ranks(images, texts, [0, 0, 1])
    # image 0: best own caption is #1 (0.6); wrong caption 2 scores 0 → rank 1
    # image 1: own caption 2 scores 1.0, but wrong caption 0 ties at 1.0 → pessimistic rank 2
    assert i2t.tolist() == [1, 2]
    # caption 0 → image 1 wins → rank 2; caption 1 ties → rank 2; caption 2 → rank 1
    assert t2i.tolist() == [2, 2, 1]
    m = retrieval_metrics(images, texts, [0, 0, 1], ks=(1, 2))
    assert m["image_to_text_R@1"] == 0.5 and m["text_to_image_R@1"] == pytest.approx(1 / 3)
    assert m["text_to_image_R@2"] == 1.0 and m["text_to_image_median_rank"] == 2.0


def test_recall_bootstrap_equals_numpy() -> None:
    ranks = np.array([1, 3, 1, 7, 2, 1, 12, 4])
    lo, hi = recall_bootstrap(ranks, 5, n_resamples=300, seed=9)
    rng = np.random.default_rng(9)
    idx = rng.integers(0, len(ranks), size=(300, len(ranks)))
    values = [(ranks[r] <= 5).mean() for r in idx]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))
    assert lo <= (ranks <= 5).mean() <= hi


def test_report_shows_clip_benchmark_names_and_the_acc5_caveat(tmp_path) -> None:
    import json

    from biomedclip.evaluate.report import TaskResult, write_report

    for n_classes, caveat in ((3, True), (7, False)):
        y, p = _problem(n=60, c=n_classes, seed=n_classes)
        full = classification_metrics(y, p)
        names = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc", "acc1", "acc5", "mean_per_class_recall")
        boot = bootstrap_metrics(y, p, n_resamples=50, seed=0)
        classes = [f"class {i}" for i in range(n_classes)]
        result = TaskResult(kind="zeroshot", name="t", data={"path": "x", "split": "test", "items": 60},
                            task={"source": "t.json", "classes": classes, "templates": ["a {} image"]},
                            metrics={k: full[k] for k in names}, ci={k: list(v) for k, v in boot.ci.items()},
                            details={k: v for k, v in full.items() if k not in names},
                            arrays={"labels": y, "scores": p, "classes": classes, "items": [str(i) for i in range(60)]})
        out = tmp_path / str(n_classes)
        write_report(out, [result], model={"name": "m", "fingerprint": None}, seed=0)
        report = (out / "report.md").read_text()
        assert f"acc5 {full['acc5']:.4f} (top-5 accuracy)" in report
        assert ("acc5 is 1.0 by construction with 3 classes" in report) == caveat
        assert "| acc1 |" not in report and "| accuracy |" in report  # aliases on one line, not repeated rows
        assert "None" not in report and "“a {} image”" in report
        doc = json.loads((out / "results.json").read_text())["tasks"][0]
        assert doc["metrics"]["acc1"] == doc["metrics"]["accuracy"] and "acc5" in doc["ci"]
