"""Zero-shot, linear probe, retrieval and the feature cache on the session's tiny trained model.

The evaluation set is built from the synthetic corpus the model was trained on: the shard images,
labelled with the modality ``labels.jsonl`` records for each figure, written as a CSV dataset
with train/val/test splits; class names and templates come from ``classes.json``. A trained
model must beat the same architecture untrained, and every number must be consistent.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from biomedclip.evaluate.cache import FeatureCache, model_fingerprint
from biomedclip.evaluate.datasets import LabeledSplit, load_classification, load_retrieval
from biomedclip.evaluate.features import read_shard_pairs
from biomedclip.evaluate.linear_probe import evaluate_linear_probe, fit_probe, fraction_indices, kshot_indices
from biomedclip.evaluate.retrieval import evaluate_retrieval, retrieval_metrics
from biomedclip.evaluate.taskfile import load_task
from biomedclip.evaluate.zeroshot import evaluate_zeroshot
from biomedclip.models.factory import load_model
from biomedclip.models.runtime import as_runner


@pytest.fixture(scope="module")
def modality_set(learn_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CSV dataset (path,label,split) of single-panel shard images labelled by modality, plus a task file."""
    import webdataset as wds

    root = tmp_path_factory.mktemp("modality")
    labels = {}
    for line in (learn_data["corpus"] / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        labels[row["key"]] = row
    rows = []
    for split in ("train", "val", "test"):
        shards = sorted(str(p) for p in (learn_data["shards"] / split).glob("*.tar"))
        for sample in wds.WebDataset(shards, shardshuffle=False):
            info = labels.get(sample["__key__"])
            if info is None or info["compound"]:
                continue
            target = root / split / f"{sample['__key__']}.jpg"
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(sample["jpg"])
            rows.append([f"{split}/{target.name}", info["modality"], split])
    with (root / "data.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    modality = json.loads((learn_data["corpus"] / "classes.json").read_text())["modality"]
    (root / "task.json").write_text(json.dumps({"name": "modality", "classes": modality["classes"],
                                                "templates": modality["templates"]}))
    return {"csv": root / "data.csv", "task": root / "task.json", "root": root}


@pytest.fixture(scope="module")
def models(trained_run: tuple[Path, dict]) -> dict[str, object]:
    run, _ = trained_run
    return {"trained": load_model(run / "bundle"), "untrained": load_model(run / "init_bundle")}


def _in_unit_interval(result) -> None:
    for name, value in result.metrics.items():
        if "median_rank" in name:
            continue
        assert 0.0 <= value <= 1.0, (name, value)
        lo, hi = result.ci[name]
        assert lo <= value <= hi, (name, lo, value, hi)


def test_zeroshot_trained_beats_untrained(modality_set, models) -> None:
    data = load_classification(modality_set["csv"])
    task = load_task(modality_set["task"])
    trained = evaluate_zeroshot(models["trained"], data, task, n_bootstrap=200)
    untrained = evaluate_zeroshot(models["untrained"], data, task, n_bootstrap=200)
    _in_unit_interval(trained)
    n = len(data.split("test"))
    assert trained.data["evaluated"] == n and np.array(trained.details["confusion_matrix"]).sum() == n
    assert trained.metrics["accuracy"] > 0.5, trained.metrics  # 8 classes: chance is ~0.125
    assert trained.metrics["accuracy"] > untrained.metrics["accuracy"] + 0.25
    assert trained.metrics["macro_auroc"] > 0.85
    assert len(trained.details["per_class_recall"]) == len(task.classes)
    # the probabilities reproduce the reported accuracy
    scores, labels = trained.arrays["scores"], trained.arrays["labels"]
    assert np.allclose(scores.sum(axis=1), 1.0)
    assert (scores.argmax(axis=1) == labels).mean() == pytest.approx(trained.metrics["accuracy"])


def test_linear_probe_chooses_C_on_validation_only(modality_set, models) -> None:
    data = load_classification(modality_set["csv"])
    task = load_task(modality_set["task"])
    kwargs = {"task": task, "shots": (1, 4), "seeds": 2, "fractions": (0.1, 1.0), "n_bootstrap": 200}
    result = evaluate_linear_probe(models["trained"], data, **kwargs)
    _in_unit_interval(result)
    assert result.metrics["accuracy"] > 0.8
    assert result.metrics["accuracy"] > result.details["majority_accuracy"] + 0.3
    kshot = result.details["kshot"]
    assert [r["k"] for r in kshot["summary"]] == [1, 4] and all(r["runs"] == 2 for r in kshot["summary"])
    assert kshot["runs"][0]["train_items"] == len(task.classes)  # 1 per class
    fractions = {r["fraction"]: r for r in result.details["fractions"]["summary"]}
    assert set(fractions) == {0.1, 1.0} and fractions[1.0]["accuracy_mean"] == pytest.approx(result.metrics["accuracy"])
    # scrambling the *test* labels changes the test scores but none of the choices made on validation
    test = data.splits["test"]
    rng = np.random.default_rng(0)
    scrambled = replace(data, splits={**data.splits, "test": LabeledSplit(test.images, rng.permutation(test.labels))})
    again = evaluate_linear_probe(models["trained"], scrambled, **kwargs)
    assert again.details["chosen_C"] == result.details["chosen_C"]
    assert again.details["val_scores"] == result.details["val_scores"]
    assert [r["C"] for r in again.details["kshot"]["runs"]] == [r["C"] for r in kshot["runs"]]
    assert again.metrics["accuracy"] < result.metrics["accuracy"]


def test_fit_probe_and_subsets_on_fixed_features() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    y = (x[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int)
    fit = fit_probe(x[:200], y[:200], x[200:], y[200:], n_classes=2, cs=(1e-4, 1.0))
    assert fit.C == 1.0 and fit.val_scores[1.0] > fit.val_scores[1e-4]  # heavy regularisation predicts one class
    labels = np.array([0] * 10 + [1] * 3 + [2] * 50)
    shots = kshot_indices(labels, 4, seed=3)
    assert np.bincount(labels[shots]).tolist() == [4, 3, 4]
    assert np.array_equal(shots, kshot_indices(labels, 4, seed=3))
    assert not np.array_equal(shots, kshot_indices(labels, 4, seed=4))
    part = fraction_indices(labels, 0.1, seed=0)
    assert np.bincount(labels[part]).tolist() == [1, 1, 5]
    with pytest.raises(ValueError, match="at least two classes"):
        fit_probe(x[:5], np.zeros(5, int), x[:5], np.zeros(5, int), n_classes=2)


def test_retrieval_matches_direct_computation(learn_data, models) -> None:
    data = load_retrieval(learn_data["shards"], "test")
    result = evaluate_retrieval(models["trained"], data, n_bootstrap=200)
    _in_unit_interval(result)
    pairs = read_shard_pairs(learn_data["shards"], "test")
    trained = as_runner(models["trained"])
    direct = retrieval_metrics(trained.encode_images([p.image for p in pairs]),
                               trained.encode_texts([p.caption for p in pairs]), list(range(len(pairs))))
    for key, value in direct.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-9), key
    untrained = evaluate_retrieval(models["untrained"], data, n_bootstrap=50)
    assert result.metrics["image_to_text_R@10"] > untrained.metrics["image_to_text_R@10"] + 0.2


def test_feature_cache_hits_and_keys(modality_set, models, tmp_path: Path) -> None:
    data = load_classification(modality_set["csv"])
    task = load_task(modality_set["task"])
    cache = FeatureCache(tmp_path / "cache")
    first = evaluate_zeroshot(models["trained"], data, task, cache=cache, n_bootstrap=50)
    second = evaluate_zeroshot(models["trained"], data, task, cache=cache, n_bootstrap=50)
    assert not first.details["cache_hit"] and second.details["cache_hit"]
    assert np.array_equal(first.arrays["scores"], second.arrays["scores"])
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1
    # a different model (same architecture, other weights) must not reuse the features
    other = evaluate_zeroshot(models["untrained"], data, task, cache=cache, n_bootstrap=50)
    assert not other.details["cache_hit"]
    # weights changed in place → new key
    model = load_model(models["trained"].name)
    before = model_fingerprint(model)
    with __import__("torch").no_grad():
        next(model.model.visual.parameters()).add_(0.01)
    assert model_fingerprint(model) != before
    # data changed (one image rewritten) → new key; unchanged data → hit
    rows = [r for r in list(csv.reader(modality_set["csv"].open()))[1:] if r[2] == "test"][:10]
    for path, _, _ in rows:
        (tmp_path / Path(path).name).write_bytes((modality_set["root"] / path).read_bytes())
    with (tmp_path / "small.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label"], *[[Path(p).name, label] for p, label, _ in rows]])
    small = evaluate_zeroshot(models["trained"], load_classification(tmp_path / "small.csv"), task, cache=cache,
                              n_bootstrap=50)
    assert not small.details["cache_hit"]
    (tmp_path / Path(rows[0][0]).name).write_bytes((modality_set["root"] / rows[1][0]).read_bytes())
    changed = evaluate_zeroshot(models["trained"], load_classification(tmp_path / "small.csv"), task, cache=cache,
                                n_bootstrap=50)
    assert not changed.details["cache_hit"]
    assert changed.arrays["scores"][0] == pytest.approx(changed.arrays["scores"][1])  # now the same picture
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 4


def test_unreadable_images_are_counted_and_skipped(modality_set, models, tmp_path: Path) -> None:
    rows = list(csv.reader(modality_set["csv"].open()))[1:]
    test_rows = [r for r in rows if r[2] == "test"][:20]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with (tmp_path / "data.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows([[str(modality_set["root"] / r[0]), r[1]] for r in test_rows])
        writer.writerow(["broken.jpg", test_rows[0][1]])
        writer.writerow(["missing.png", test_rows[0][1]])
    result = evaluate_zeroshot(models["trained"], load_classification(tmp_path / "data.csv"),
                               load_task(modality_set["task"]), n_bootstrap=50)
    assert result.data["evaluated"] == 20 and result.data["skipped"] == 2
    items = {Path(s["item"]).name: s["error"] for s in result.details["skipped_items"]}
    assert "corrupt or truncated" in items["broken.jpg"] and "file not found" in items["missing.png"]


def test_multilabel_zeroshot(modality_set, models, tmp_path: Path) -> None:
    rows = [r for r in list(csv.reader(modality_set["csv"].open()))[1:] if r[2] == "test"][:30]
    with (tmp_path / "multi.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        for i, (path, label, _) in enumerate(rows):
            writer.writerow([str(modality_set["root"] / path), label if i else f"{label}|chart"])
    data = load_classification(tmp_path / "multi.csv")
    task = load_task(modality_set["task"])
    assert data.multilabel
    result = evaluate_zeroshot(models["trained"], data, task, n_bootstrap=50)
    _in_unit_interval(result)
    assert result.arrays["scores"].shape == (30, len(task.classes))
    assert "exact_match" in result.metrics
