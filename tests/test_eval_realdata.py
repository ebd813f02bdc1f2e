"""The suite on real images: PneumoniaMNIST (MedMNIST v2 chest X-rays) with the session's tiny model.

A subset (a few hundred images per split) keeps it fast. Requirements from the issue: the linear
probe on the tiny model's features beats the majority-class baseline, every metric is in [0, 1],
and every confidence interval contains its point estimate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from biomedclip.evaluate.suite import SuiteConfig, TaskConfig, run_suite

LIMIT = 300


@pytest.fixture(scope="module")
def pneumonia(realdata: Path) -> Path:
    path = realdata / "labeled" / "pneumoniamnist.npz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_pneumoniamnist_zeroshot_and_linear_probe(pneumonia: Path, trained_run, tmp_path: Path) -> None:
    run, _ = trained_run
    tasks = [TaskConfig(kind="zeroshot", data=pneumonia, task="pneumoniamnist", limit=LIMIT),
             TaskConfig(kind="linear-probe", data=pneumonia, task="pneumoniamnist", limit=LIMIT, shots=(2, 8),
                        seeds=2, fractions=(0.1, 1.0))]
    config = SuiteConfig(model=str(run / "bundle"), tasks=tasks, seed=3, bootstrap=300, cache_dir=tmp_path / "cache")
    outcome = run_suite(config, tmp_path / "report")
    assert not outcome.errors
    zeroshot, probe = outcome.results
    assert zeroshot.data["evaluated"] == LIMIT and probe.details["split_sizes"] == {"train": LIMIT, "val": LIMIT,
                                                                                    "test": LIMIT}
    # the probe learns something from real chest X-ray features
    assert probe.metrics["accuracy"] > probe.details["majority_accuracy"] + 0.03, (probe.metrics, probe.details)
    assert probe.metrics["macro_auroc"] > 0.6
    for result in outcome.results:
        for name, value in result.metrics.items():
            assert 0.0 <= value <= 1.0, (result.kind, name, value)
            lo, hi = result.ci[name]
            assert 0.0 <= lo <= value <= hi <= 1.0, (result.kind, name, lo, value, hi)
        assert all(0.0 <= r <= 1.0 for r in result.details["per_class_recall"])
    for row in probe.details["kshot"]["summary"] + probe.details["fractions"]["summary"]:
        assert 0.0 <= row["accuracy_mean"] <= 1.0 and row["accuracy_sd"] >= 0.0

    doc = json.loads((tmp_path / "report" / "results.json").read_text())
    assert doc["seed"] == 3 and doc["model"]["fingerprint"] == zeroshot.details["model_fingerprint"]
    assert doc["packages"]["scikit-learn"] != "not installed" and doc["packages"]["torch"]
    first = doc["tasks"][0]
    assert first["data"]["path"] == str(pneumonia) and first["task"]["source"] == "built-in:pneumoniamnist"
    assert first["task"]["templates"] == ["a photo of {}", "{} presented in image"]
    assert first["bootstrap"]["n_resamples"] == 300 and first["bootstrap"]["seed"] == 3
    files = {p.name for p in (tmp_path / "report").iterdir()}
    for name in ("report.md", "results.json", "pneumoniamnist_zeroshot_confusion.png",
                 "pneumoniamnist_zeroshot_roc.png", "pneumoniamnist_linear_probe_kshot.png",
                 "pneumoniamnist_linear_probe_fractions.png", "pneumoniamnist_linear_probe_confusion.png"):
        assert name in files, name
    png = (tmp_path / "report" / "pneumoniamnist_zeroshot_confusion.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Majority-class baseline" in report and "k-shot" in report

    # a second run reuses every cached split and gives identical numbers
    again = run_suite(config, tmp_path / "report2")
    assert again.results[0].details["cache_hit"] is True
    assert all(again.results[1].details["cache_hit"].values())
    assert again.results[1].metrics == probe.metrics
    assert np.array_equal(again.results[0].arrays["scores"], zeroshot.arrays["scores"])
