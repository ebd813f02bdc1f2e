"""The installed `biomedclip` command: help texts and the data commands chained as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

BIN = shutil.which("biomedclip", path=str(Path(sys.executable).parent)) or "biomedclip"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([BIN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize("args", [[], ["data"], ["data", "build"], ["data", "synth"], ["data", "stats"], ["demo"]])
def test_help_everywhere(args: list[str]) -> None:
    result = run(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_synth_build_stats_chain(tmp_path: Path) -> None:
    corpus, shards = tmp_path / "corpus", tmp_path / "shards"
    result = run("data", "synth", str(corpus), "--articles", "30", "--seed", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "30 articles" in result.stdout
    again = run("data", "synth", str(corpus), "--articles", "30")
    assert again.returncode == 2 and "not empty" in again.stderr

    result = run("data", "build", str(corpus / "folders"), str(corpus / "packages"), "--out", str(shards),
                 "--splits", "train=0.6,val=0.2,test=0.2", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    stats = json.loads((shards / "stats.json").read_text())
    assert stats["articles"]["seen"] == 30
    assert f"{stats['figures']['kept']:,}" in result.stdout

    result = run("data", "stats", str(shards))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Splits" in result.stdout and "caption words p50" in result.stdout
    with Image.open(shards / "caption_lengths.png") as im:
        assert im.size[0] > 300

    bad = run("data", "stats", str(tmp_path))
    assert bad.returncode == 2 and "not a finished build folder" in bad.stderr


def test_bad_option_values_are_explained(tmp_path: Path) -> None:
    result = run("data", "build", str(tmp_path), "--out", str(tmp_path / "o"), "--splits", "train=0.5,test=0.2")
    assert result.returncode == 2
    assert "--splits" in result.stdout + result.stderr
    result = run("data", "build", str(tmp_path), "--out", str(tmp_path / "o"), "--executor", "spark")
    assert result.returncode == 2
    assert "local" in result.stdout + result.stderr
