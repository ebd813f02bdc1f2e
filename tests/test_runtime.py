"""The model runtime: device and precision rules, the encoders, one temperature, and the plumbing
that takes ``--device``/``--precision`` from every command to the runtime (CPU machine; the GPU
side is tests/gpu/)."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from biomedclip.errors import BiomedclipError
from biomedclip.models.factory import load_model
from biomedclip.models.runtime import (
    MAX_TEMPERATURE,
    DeviceUnavailableError,
    ModelRunner,
    PrecisionError,
    Runtime,
    as_runner,
    cpu_has_native_bf16,
    load_runner,
    resolve_device,
    resolve_precision,
    train_precision,
)
from biomedclip.train.recipe import Recipe, open_clip_args, plan_schedule

SRC = Path(__file__).resolve().parents[1] / "src" / "biomedclip"
BIOMEDCLIP = [sys.executable, "-m", "biomedclip.cli"]
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny() -> ModelRunner:
    return load_runner("biomedclip-tiny", device="cpu", precision="fp32", seed=0)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (120 + 7 * i, 140, 3), dtype=np.uint8)) for i in range(5)]


# -- device and precision rules ------------------------------------------------------------------------

def test_auto_device_is_cuda_when_present_else_cpu() -> None:
    assert resolve_device("auto") == (torch.device("cuda:0") if HAS_CUDA else torch.device("cpu"))
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_missing_cuda_is_a_clear_error(spec: str) -> None:
    with pytest.raises(DeviceUnavailableError, match=r"--device cuda.*use --device cpu"):
        resolve_device(spec)
    assert issubclass(DeviceUnavailableError, BiomedclipError)


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu0"])
def test_unknown_device_names_are_refused(spec: str) -> None:
    with pytest.raises(DeviceUnavailableError):
        resolve_device(spec)


@pytest.mark.skipif(sys.platform == "darwin", reason="MPS may exist on macOS")
def test_mps_off_macos_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailableError, match="macOS"):
        resolve_device("mps")


def test_precision_rule_per_device() -> None:
    cpu = torch.device("cpu")
    # CPU: bf16 only where the CPU executes it natively (else it is slower than fp32)
    assert resolve_precision(cpu, "auto") == ("bf16" if cpu_has_native_bf16() else "fp32")
    for name in ("fp32", "bf16", "fp16"):
        assert resolve_precision(cpu, name) == name
    assert resolve_precision(torch.device("mps"), "auto") == "fp16"
    with pytest.raises(PrecisionError, match="bf17"):
        resolve_precision(cpu, "bf17")
    if HAS_CUDA:
        expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        assert resolve_precision(torch.device("cuda:0"), "auto") == expected


def test_training_precision_names() -> None:
    cpu = torch.device("cpu")
    assert train_precision(cpu, "fp32") == "fp32"
    assert train_precision(cpu, "bf16") == "amp_bf16"
    assert train_precision(cpu, "fp16") == "amp"
    assert train_precision(cpu, "auto") == ("amp_bf16" if cpu_has_native_bf16() else "fp32")
    assert train_precision(cpu, "pure_bf16") == "pure_bf16"  # open_clip's own names pass through
    with pytest.raises(PrecisionError):
        train_precision(cpu, "bf17")
    assert Recipe(precision="bf16").resolved_precision(cpu) == "amp_bf16"


def test_autocast_regions() -> None:
    assert Runtime(torch.device("cpu"), "fp32").autocast().__class__.__name__ == "nullcontext"
    with Runtime(torch.device("cpu"), "bf16").autocast():
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16
    runtime = Runtime.resolve("cpu", "fp32")
    assert (runtime.batch_size("image"), runtime.batch_size("text"), runtime.pin_memory) == (64, 256, False)
    assert Runtime(torch.device("cuda:0"), "bf16").batch_size("image") == 256
    assert Runtime(torch.device("cuda:0"), "bf16").pin_memory
    assert runtime.tag == "cpu-fp32"


def test_open_clip_flags_follow_the_device(tmp_path: Path) -> None:
    recipe = Recipe(precision="auto")
    schedule = plan_schedule(recipe, train_samples=1000)

    def flags(device: str, world: int) -> dict[str, str]:
        args = open_clip_args(recipe, schedule, model="m", train_data="t", logs=tmp_path, name="r",
                              world_size=world, device=torch.device(device))
        return dict(zip(args[::2], args[1::2], strict=False))

    cpu = flags("cpu", 2)
    assert (cpu["--device"], cpu["--dist-backend"]) == ("cpu", "gloo")
    gpus = flags("cuda:0", 8)  # one process per GPU: open_clip_train puts rank r on cuda:LOCAL_RANK
    assert (gpus["--device"], gpus["--dist-backend"]) == ("cuda", "nccl")
    one = flags("cuda:1", 1)  # a single process keeps the GPU asked for
    assert one["--device"] == "cuda:1"
    assert gpus["--precision"] in ("amp_bf16", "amp")  # decided for the GPU, not for this CPU


# -- the runner ----------------------------------------------------------------------------------------

def test_encoders_are_batched_normalised_and_batch_independent(tiny: ModelRunner, images) -> None:
    feats = tiny.encode_images(images)
    assert feats.shape == (len(images), tiny.embed_dim) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(tiny.encode_images(images, batch_size=2), feats, atol=1e-5)
    texts = tiny.encode_texts(["a chest x-ray", "brain MRI", "h&e stain"], batch_size=1)
    np.testing.assert_allclose(texts, tiny.encode_texts(["a chest x-ray", "brain MRI", "h&e stain"]), atol=1e-5)
    assert tiny.encode_texts([]).shape == (0, tiny.embed_dim)


def test_bf16_autocast_matches_fp32(tiny: ModelRunner, images) -> None:
    bf16 = as_runner(tiny, precision="bf16")
    assert bf16.precision == "bf16" and bf16.model is tiny.model  # same weights, other autocast
    cos = (bf16.encode_images(images) * tiny.encode_images(images)).sum(axis=1)
    assert cos.min() >= 0.998


def test_one_temperature_open_clip_convention(tiny: ModelRunner) -> None:
    raw = float(tiny.model.logit_scale.detach().exp())
    assert tiny.temperature == pytest.approx(raw)  # 1/0.07 at init
    with torch.no_grad():
        tiny.model.logit_scale.fill_(7.0)  # exp(7) ≈ 1097: beyond what open_clip_train ever allows
    try:
        assert tiny.temperature == MAX_TEMPERATURE
    finally:
        with torch.no_grad():
            tiny.model.logit_scale.fill_(float(np.log(raw)))


def test_prompt_ensemble_and_probabilities(tiny: ModelRunner, images) -> None:
    classes, templates = ["chest x-ray", "brain mri"], ["{}", "a photo of {}"]
    emb = tiny.class_embeddings(classes, templates)
    prompts = tiny.encode_texts([t.format(c) for c in classes for t in templates]).reshape(2, 2, -1).mean(axis=1)
    np.testing.assert_allclose(emb, prompts / np.linalg.norm(prompts, axis=1, keepdims=True), atol=1e-5)
    probs = tiny.probabilities(tiny.encode_images(images), emb)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    logits = tiny.temperature * tiny.encode_images(images[:1]) @ emb.T
    np.testing.assert_allclose(probs[0], np.exp(logits[0]) / np.exp(logits[0]).sum(), atol=1e-5)


def test_as_runner_keeps_a_loaded_models_device_and_hash_follows_weights() -> None:
    loaded = load_model("biomedclip-tiny", seed=1)
    runner = as_runner(loaded)
    assert runner.device == torch.device("cpu") and runner.loaded is loaded
    assert as_runner(runner) is runner
    before = runner.weights_sha256()
    assert as_runner(loaded).weights_sha256() == before  # memoised on the model, not the runner
    with torch.no_grad():
        next(loaded.model.visual.parameters()).add_(0.01)
    assert runner.weights_sha256() != before


# -- every command takes --device/--precision, and checks them before loading anything -----------------

@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize("argv", [
    ["classify", "x.png", "--model", "biomedclip-tiny", "--labels", "a", "b", "--device", "cuda"],
    ["embed", ".", "--model", "biomedclip-tiny", "--out", "OUT", "--device", "cuda:1"],
    ["search", "INDEX", "query", "--device", "cuda"],
    ["serve", "--model", "biomedclip-tiny", "--device", "cuda"],
    ["eval", "zeroshot", "--model", "biomedclip-tiny", "--data", ".", "--out", "OUT", "--device", "cuda"],
    ["train", "--data", "DATA", "--out", "OUT", "--device", "cuda"],
    ["demo", "--out", "OUT", "--device", "cuda"],
])
def test_cuda_without_a_gpu_fails_fast_before_the_model(argv: list[str], tmp_path: Path) -> None:
    argv = [str(tmp_path / a) if a in ("OUT", "DATA", "INDEX") else a for a in argv]
    started = time.perf_counter()
    done = subprocess.run([*BIOMEDCLIP, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "--device cuda" in output and "use --device cpu" in output, output
    assert "biomedclip-tiny" not in output  # the device was checked first
    assert "Traceback" not in output
    assert not (tmp_path / "OUT").exists()
    assert seconds < 10  # includes the interpreter start; the check itself does not import torch


@pytest.mark.parametrize("argv", [
    ["classify", "x.png", "--model", "biomedclip-tiny", "--labels", "a", "b", "--precision", "bf17"],
    ["train", "--data", "DATA", "--out", "OUT", "--precision", "bf17"],
])
def test_bad_precision_is_refused_before_work(argv: list[str], tmp_path: Path) -> None:
    argv = [str(tmp_path / a) if a in ("OUT", "DATA") else a for a in argv]
    done = subprocess.run([*BIOMEDCLIP, *argv, "--device", "cpu"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 2 and "bf17" in done.stdout + done.stderr
    assert not (tmp_path / "OUT").exists()


def test_product_packages_never_import_the_evaluation_package() -> None:
    offenders = []
    for package in ("search", "serve", "models", "data", "io"):
        for path in (SRC / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.relative_to(SRC)}: {n}" for n in names if n.startswith("biomedclip.evaluate")]
    assert offenders == []


def test_only_the_runtime_enters_autocast() -> None:
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "torch.autocast(" in p.read_text())
    assert users == ["models/runtime.py"]


@pytest.fixture(scope="module")
def tiny_bundle_and_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from biomedclip.models.factory import export_bundle

    root = tmp_path_factory.mktemp("plumbing")
    bundle = export_bundle(load_model("biomedclip-tiny", seed=0), root / "bundle")
    rng = np.random.default_rng(1)
    for label in ("xray", "mri"):
        (root / "images" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / label / f"{i}.png")
    return bundle, root / "images"


def test_each_command_records_the_runtime_it_resolved(tiny_bundle_and_images, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from biomedclip.cli import app

    bundle, images = tiny_bundle_and_images
    model = f"local-dir:{bundle}"
    cli = CliRunner()
    done = cli.invoke(app, ["embed", str(images), "--model", model, "--out", str(tmp_path / "emb"), "--workers", "0",
                            "--device", "cpu", "--precision", "bf16"])
    assert done.exit_code == 0, done.output
    info = json.loads((tmp_path / "emb" / "embeddings.json").read_text())
    assert (info["device"], info["precision"]) == ("cpu", "bf16") and len(info["weights_sha256"]) == 64
    done = cli.invoke(app, ["classify", str(images / "xray" / "0.png"), "--model", model, "--labels", "x", "y",
                            "--device", "cpu", "--fp32", "--json"])
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert (payload["device"], payload["precision"]) == ("cpu", "fp32")
    done = cli.invoke(app, ["eval", "zeroshot", "--model", model, "--data", str(images),
                            "--out", str(tmp_path / "zs"), "--no-cache", "--bootstrap", "10", "--device", "cpu",
                            "--precision", "fp32"])
    results = json.loads((tmp_path / "zs" / "results.json").read_text())
    assert done.exit_code in (0, 1), done.output
    assert (results["model"]["device"], results["model"]["precision"]) == ("cpu", "fp32")
    auto = Runtime.resolve("auto", "auto")
    done = cli.invoke(app, ["classify", str(images / "mri" / "1.png"), "--model", model, "--labels", "x", "y",
                            "--json"])
    payload = json.loads(done.stdout)
    assert (payload["device"], payload["precision"]) == (str(auto.device), auto.precision)
