"""`biomedclip demo --small`, end to end through the real CLI: every artefact exists and loads, and
the trained model beats the untrained one by a wide margin on retrieval and zero-shot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

BIN = shutil.which("biomedclip", path=str(Path(sys.executable).parent)) or "biomedclip"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    result = subprocess.run([BIN, "demo", "--small", "--out", str(out)], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "160"}, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def test_trained_beats_untrained(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    ev = json.loads((out / "summary.json").read_text())["evaluation"]
    trained, untrained = ev["trained"], ev["untrained"]
    print(json.dumps({m: {t: v["metrics"] for t, v in ev[m].items()} for m in ev}, indent=1))
    r5 = "image_to_text_R@5"
    assert trained["retrieval-test"]["metrics"][r5] >= untrained["retrieval-test"]["metrics"][r5] + 0.2
    assert trained["retrieval-test"]["metrics"]["text_to_image_R@5"] >= (
        untrained["retrieval-test"]["metrics"]["text_to_image_R@5"] + 0.2)
    zs = trained["synthetic-modality"]["metrics"]["accuracy"]
    assert zs >= untrained["synthetic-modality"]["metrics"]["accuracy"] + 0.3 and zs >= 0.5
    low, high = trained["synthetic-modality"]["ci"]["accuracy"]
    assert low <= zs <= high
    assert "synthetic-finding" in trained and trained["synthetic-finding"]["n"] > 0


def test_every_artefact_exists_and_loads(demo_run: tuple[Path, str]) -> None:
    out, stdout = demo_run
    from biomedclip.models.factory import load_model
    from biomedclip.search.query import Searcher

    stats = json.loads((out / "shards" / "stats.json").read_text())
    manifest = pq.read_table(out / "shards" / "manifest.parquet")
    assert manifest.num_rows == stats["figures"]["kept"] > 300
    assert stats["errors"] and sum(stats["errors"].values()) > 0  # the corpus's broken items were counted
    assert all(list((out / "shards" / s).glob("*.tar")) for s in ("train", "val", "test"))
    assert (out / "tokenizer" / "vocab.txt").read_text().splitlines()[0] == "[PAD]"
    loaded = load_model(out / "bundle")
    hits = Searcher(out / "index", model=loaded).search_text("chest X-ray", k=5)
    assert len(hits) == 5 and all(h.caption for h in hits)
    assert list((out / "run" / "logs" / "train" / "tensorboard").glob("events.out.tfevents.*"))
    for png in ("run/loss.png", "shards/caption_lengths.png", "tokenizer/token_lengths.png"):
        assert (out / png).stat().st_size > 1000, png
    report = (out / "report.md").read_text()
    for needle in ("## Evaluation on the test split", "## Search", "## Repeat each step", "biomedclip train",
                   "local-dir:", "biomedclip serve --model"):
        assert needle in report, needle
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 5 and all((out / image).is_file() for image in images), images
    assert (out / "eval" / "trained" / "results.json").exists()
    assert list((out / "eval" / "trained").glob("*confusion.png")) and list((out / "eval" / "trained").glob(
        "*recall.png"))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["seconds"]) >= {"synth", "build", "tokenizer", "train", "evaluate", "search", "total"}
    # the printed walk-through: every step with its command, the comparison table, search hits
    for needle in ("biomedclip data synth", "biomedclip data build", "biomedclip tokenizer train",
                   "trained vs untrained", "Wall time per step"):
        assert needle in stdout, needle
    assert "INFO:root" not in stdout


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    result = subprocess.run([BIN, "demo", "--small", "--out", str(tmp_path)], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "160"}, timeout=120)
    assert result.returncode == 2 and "not a demo output folder" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_demo_folder_is_marked_for_safe_reruns(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    assert (out / ".biomedclip-demo").is_file()
