"""Zero-shot tasks over synthetic-corpus shards: labels join the shards by key, exactly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from biomedclip.evaluate.synthetic import SyntheticTaskError, synthetic_task


def _labels(corpus: Path) -> dict[str, dict]:
    return {row["key"]: row for row in map(json.loads, (corpus / "labels.jsonl").read_text().splitlines())}


def test_modality_task_matches_labels(learn_data: dict[str, Path]) -> None:
    data, task = synthetic_task(learn_data["corpus"], learn_data["shards"], split="test")
    rows = _labels(learn_data["corpus"])
    spec = json.loads((learn_data["corpus"] / "classes.json").read_text())["modality"]
    assert task.classes == spec["classes"] and task.templates == spec["templates"]
    part = data.split("test")
    assert len(part) >= 80 and len(set(part.labels.tolist())) == len(task.classes)
    keys = [part.images.describe(i).removesuffix(".jpg") for i in range(len(part))]
    assert all(task.classes[label] == rows[key]["modality"] for key, label in zip(keys, part.labels, strict=True))
    # exactly the single (non-compound) figures the build put in the test split
    manifest = pq.read_table(learn_data["shards"] / "manifest.parquet", columns=["key", "split"]).to_pylist()
    expected = {r["key"] for r in manifest if r["split"] == "test" and not rows[r["key"]]["compound"]
                and not rows[r["key"]]["broken"]}
    assert set(keys) == expected and len(keys) == len(expected)
    assert Image.open(io.BytesIO(part.images.items[0][1])).size[0] > 0


def test_finding_within_one_modality(learn_data: dict[str, Path]) -> None:
    data, task = synthetic_task(learn_data["corpus"], learn_data["shards"], split="val", attribute="finding",
                                modality="chest X-ray")
    rows = _labels(learn_data["corpus"])
    assert task.classes == ["normal", "opacity", "nodule"]
    part = data.split("val")
    keys = [part.images.describe(i).removesuffix(".jpg") for i in range(len(part))]
    assert {rows[k]["modality"] for k in keys} == {"chest X-ray"}
    assert np.array_equal(part.labels, [task.classes.index(rows[k]["finding"]) for k in keys])


def test_clear_errors(learn_data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SyntheticTaskError, match="unknown attribute 'colour_of_sky'"):
        synthetic_task(learn_data["corpus"], learn_data["shards"], attribute="colour_of_sky")
    with pytest.raises(SyntheticTaskError, match="labels.jsonl not found"):
        synthetic_task(tmp_path, learn_data["shards"])
    with pytest.raises(SyntheticTaskError, match="no shards"):
        synthetic_task(learn_data["corpus"], tmp_path)
