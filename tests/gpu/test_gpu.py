"""GPU end to end: run only where ``torch.cuda.is_available()``; everywhere else they skip cleanly.

What they prove: training on CUDA learns (loss falls over 20 steps, the run really used the GPU
and the runtime's precision), embeddings made on the GPU under bf16/fp16 autocast match CPU fp32
ones, the CLI puts `embed` on the GPU, and a 2-process NCCL run works where two GPUs exist.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
BIOMEDCLIP = [sys.executable, "-m", "biomedclip.cli"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from biomedclip.data.pipeline import BuildConfig, build
    from biomedclip.synth import synthesize

    work = tmp_path_factory.mktemp("gpu")
    synthesize(work / "corpus", 160, seed=0, workers=4)
    build(BuildConfig(sources=[str(work / "corpus" / "folders"), str(work / "corpus" / "packages")],
                      out=work / "shards", splits={"train": 0.9, "val": 0.1}, workers=4))
    return work / "shards"


def _train(shards: Path, out: Path, *extra: str) -> dict:
    done = subprocess.run([*BIOMEDCLIP, "train", "--data", str(shards), "--out", str(out), "--model",
                           "biomedclip-tiny", "--steps", "20", "--batch-size", "32", "--lr", "1e-3", *extra],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


def test_training_on_cuda_reduces_the_loss(shards: Path, tmp_path: Path) -> None:
    summary = _train(shards, tmp_path / "run", "--device", "cuda")
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["device"] == "cuda:0"
    assert plan["precision"] == ("amp_bf16" if torch.cuda.is_bf16_supported() else "amp")
    argv = plan["argv"]
    assert argv[argv.index("--device") + 1] == "cuda:0"
    assert summary["final_loss"] < summary["first_loss"] - 0.1, summary


def test_cuda_embeddings_match_cpu_fp32() -> None:
    from biomedclip.models.factory import load_model
    from biomedclip.models.runtime import ModelRunner, Runtime

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (224, 260, 3), dtype=np.uint8)) for _ in range(16)]
    texts = ["chest x-ray with pleural effusion", "h&e stained lymph node", "axial brain MRI"]
    loaded = load_model("biomedclip-vit-b16-bert256", seed=0)
    cpu = ModelRunner(loaded, Runtime.resolve("cpu", "fp32"))
    ref_images, ref_texts = cpu.encode_images(images), cpu.encode_texts(texts)
    gpu = ModelRunner(loaded, Runtime.resolve("cuda", "auto"))  # bf16 (or fp16) autocast on the GPU
    assert gpu.device.type == "cuda" and gpu.precision in ("bf16", "fp16")
    assert (gpu.encode_images(images) * ref_images).sum(axis=1).min() >= 0.998
    assert (gpu.encode_texts(texts) * ref_texts).sum(axis=1).min() >= 0.998


def test_embed_cli_runs_on_the_gpu(shards: Path, tmp_path: Path) -> None:
    done = subprocess.run([*BIOMEDCLIP, "embed", str(shards), "--model", "biomedclip-tiny", "--out",
                           str(tmp_path / "emb"), "--split", "val", "--device", "cuda"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    info = json.loads((tmp_path / "emb" / "embeddings.json").read_text())
    assert info["device"] == "cuda:0" and info["count"] > 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_process_nccl_training(shards: Path, tmp_path: Path) -> None:
    summary = _train(shards, tmp_path / "ddp", "--device", "cuda", "--nproc", "2")
    plan = json.loads((tmp_path / "ddp" / "plan.json").read_text())
    argv = plan["argv"]
    assert argv[argv.index("--dist-backend") + 1] == "nccl" and "--gather-with-grad" in argv
    log = (tmp_path / "ddp" / "logs" / "train" / "out.log").read_text()
    assert "total 2." in log  # open_clip_train: "Process (global: r, local r), total 2."
    assert summary["final_loss"] < summary["first_loss"]
