"""`biomedclip eval …` and `biomedclip data overlap` end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from biomedclip.cli import app

runner = CliRunner()


def _invoke(*args: str):
    """Run the CLI on a wide virtual terminal, so messages are not wrapped mid-sentence."""
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "250"})


@pytest.mark.parametrize("command", [["eval", "--help"], ["eval", "zeroshot", "--help"],
                                     ["eval", "retrieval", "--help"], ["eval", "linear-probe", "--help"],
                                     ["eval", "suite", "--help"], ["data", "overlap", "--help"]])
def test_help(command: list[str]) -> None:
    result = _invoke(*command)
    assert result.exit_code == 0 and "Usage" in result.output


def test_tasks_lists_the_paper_benchmarks() -> None:
    result = _invoke("eval", "tasks")
    assert result.exit_code == 0
    for name, value in (("pcam", "73.41"), ("lc25000_lung", "65.23"), ("lc25000_colon", "92.98"),
                        ("tcga_til", "67.04"), ("rsna_pneumonia", "78.95")):
        assert name in result.output and value in result.output


def test_zeroshot_then_refuses_to_mix_runs(realdata: Path, trained_run, tmp_path: Path) -> None:
    run, _ = trained_run
    data = realdata / "labeled" / "pneumoniamnist.npz"
    out = tmp_path / "zs"
    args = ["eval", "zeroshot", "--model", run / "bundle", "--data", data, "--task", "pneumoniamnist", "--limit", 120,
            "--bootstrap", 100, "--out", out, "--cache-dir", tmp_path / "cache"]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "report" in result.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["tasks"][0]["kind"] == "zeroshot" and doc["tasks"][0]["data"]["evaluated"] == 120
    assert (out / "pneumoniamnist_zeroshot_confusion.png").is_file()
    again = _invoke(*args)
    assert again.exit_code == 2 and "already holds a report" in again.output


def test_retrieval_and_linear_probe(learn_data, realdata: Path, trained_run, tmp_path: Path) -> None:
    run, _ = trained_run
    result = _invoke("eval", "retrieval", "-m", run / "bundle", "-d", learn_data["shards"], "--split", "test",
                     "--k", "1,5", "--bootstrap", 50, "-o", tmp_path / "ret", "--no-cache")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "ret" / "results.json").read_text())
    assert set(doc["tasks"][0]["metrics"]) == {"image_to_text_R@1", "image_to_text_R@5", "image_to_text_median_rank",
                                               "text_to_image_R@1", "text_to_image_R@5", "text_to_image_median_rank"}
    assert any(p.name.endswith("_recall.png") for p in (tmp_path / "ret").iterdir())
    result = _invoke("eval", "linear-probe", "-m", run / "bundle", "-d", realdata / "labeled" / "pneumoniamnist.npz",
                     "--task", "pneumoniamnist", "--limit", 150, "--shots", "2,4", "--seeds", 2, "--fractions",
                     "0.1,1", "--cs", "0.1,10,1000", "--bootstrap", 50, "-o", tmp_path / "lp", "--no-cache")
    assert result.exit_code == 0, result.output
    task = json.loads((tmp_path / "lp" / "results.json").read_text())["tasks"][0]
    assert task["details"]["chosen_C"] in (0.1, 10, 1000)
    assert [r["k"] for r in task["details"]["kshot"]["summary"]] == [2, 4]
    bad = _invoke("eval", "linear-probe", "-m", run / "bundle", "-d", learn_data["shards"], "--fractions", "0,2",
                  "-o", tmp_path / "x")
    assert bad.exit_code != 0 and "fractions must be in (0, 1]" in bad.output


def test_suite_records_failed_tasks_and_continues(realdata: Path, trained_run, tmp_path: Path) -> None:
    run, _ = trained_run
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(run / "bundle"), "out": "report", "bootstrap": 50, "cache": False,
        "tasks": [{"kind": "zeroshot", "data": str(realdata / "labeled" / "pneumoniamnist.npz"),
                   "task": "pneumoniamnist", "limit": 80, "name": "pneumonia-zs"},
                  {"kind": "zeroshot", "data": "missing.npz", "task": "pneumoniamnist", "name": "missing"}],
    }))
    result = _invoke("eval", "suite", config)
    assert result.exit_code == 1, result.output
    assert "task failed missing" in result.output
    doc = json.loads((tmp_path / "report" / "results.json").read_text())
    assert [t["name"] for t in doc["tasks"]] == ["pneumonia-zs"]
    assert doc["errors"][0]["task"] == "missing" and "missing.npz: not found" in doc["errors"][0]["error"]
    assert "Tasks that failed" in (tmp_path / "report" / "report.md").read_text()
    # nothing but the report folder (and the config) was written next to the config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "suite.yaml"]


def test_bad_configs_and_models_fail_clearly(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model: biomedclip-tiny\ntasks:\n  - kind: zero-shot\n    data: x.npz\n")
    result = _invoke("eval", "suite", config, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "tasks[0].kind must be one of" in result.output
    config.write_text("model: biomedclip-tiny\ntasks: []\n")
    assert "non-empty tasks" in _invoke("eval", "suite", config, "--out", tmp_path / "o").output
    result = _invoke("eval", "zeroshot", "-m", "no-such-model", "-d", tmp_path, "-o", tmp_path / "o2")
    assert result.exit_code == 2 and "unknown model 'no-such-model'" in result.output
    assert not (tmp_path / "o2").exists()


def test_single_failing_task_writes_nothing(trained_run, tmp_path: Path) -> None:
    run, _ = trained_run
    (tmp_path / "data.csv").write_text("path,label\n")
    result = _invoke("eval", "zeroshot", "-m", run / "bundle", "-d", tmp_path / "data.csv", "-o", tmp_path / "out",
                     "--no-cache")
    assert result.exit_code == 2 and "data.csv: no usable rows" in result.output
    assert "no report written" in result.output
    assert not (tmp_path / "out").exists()


def test_overlap_command(learn_data, tmp_path: Path) -> None:
    out = tmp_path / "overlap"
    result = _invoke("data", "overlap", learn_data["shards"], learn_data["shards"], "--split", "all",
                     "--eval-split", "test", "-o", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "overlap.json").read_text())
    n_test = doc["counts"]["eval_images"]
    assert n_test > 0 and doc["counts"]["exact_image_items"] == n_test  # test ⊂ all splits
    assert doc["counts"]["identical_text_items"] == n_test
    assert (out / "overlap.md").read_text().startswith("# Overlap")
    missing = _invoke("data", "overlap", tmp_path / "nope", learn_data["shards"], "-o", tmp_path / "o")
    assert missing.exit_code == 2 and "not a folder" in missing.output
