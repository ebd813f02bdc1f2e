"""Hand-offs between stages, as a new user meets them (issue 20's defects 1, 2, 5, 6, 8 and 10).

Each test drives the command a user would type (``typer``'s runner, in process, so torch is
imported once) on small real inputs: a 24-article synthetic build, fresh ``biomedclip-tiny``
bundles, run folders laid out as ``biomedclip train`` writes them, and broken image files.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from biomedclip.cli import app
from biomedclip.models.factory import export_bundle, load_model

runner = CliRunner()


def _out(result) -> str:
    """stdout and stderr of a CliRunner result (click ≥ 8.2 interleaves both), Rich's line wrapping undone."""
    return " ".join(result.output.split())


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished build with train and test splits but no val split (27 train / 10 test pairs)."""
    from biomedclip.data.pipeline import BuildConfig, build
    from biomedclip.synth import synthesize

    root = tmp_path_factory.mktemp("handoffs")
    synthesize(root / "corpus", 24, seed=3, workers=1)
    build(BuildConfig(sources=[str(root / "corpus" / "folders"), str(root / "corpus" / "packages")],
                      out=root / "shards", splits={"train": 0.7, "test": 0.3}, workers=1))
    return root / "shards"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two fresh biomedclip-tiny bundles of the same width and different weights (seeds 0 and 1)."""
    root = tmp_path_factory.mktemp("bundles")
    return {name: export_bundle(load_model("biomedclip-tiny", seed=seed), root / name) for name, seed in
            (("a", 0), ("b", 1))}


def _weights(bundle: Path) -> dict[str, torch.Tensor]:
    return load_file(str(bundle / "open_clip_model.safetensors"))


def _same_weights(model: torch.nn.Module, bundle: Path) -> bool:
    expected = _weights(bundle)
    return all(torch.equal(v.float(), expected[k].float()) for k, v in model.state_dict().items())


def _finished_run(root: Path, bundle: Path) -> Path:
    """A run folder after `biomedclip train` finished: RUN/bundle, RUN/init_bundle, logs/…/checkpoints."""
    run = root / "finished_run"
    shutil.copytree(bundle, run / "bundle")
    shutil.copytree(bundle, run / "init_bundle")
    return run


def _stopped_run(root: Path, init: Path, trained: Path) -> Path:
    """A run folder stopped before its bundle was written: only open_clip_train's log folder.

    epoch_1.pt holds ``init``'s weights and epoch_2.pt (the newest) ``trained``'s, DDP-prefixed as
    open_clip_train saves them; params.txt names the bundle the run started from.
    """
    run = root / "stopped_run"
    shutil.copytree(init, run / "init_bundle")
    logs = run / "logs" / "train"
    (logs / "checkpoints").mkdir(parents=True)
    (logs / "params.txt").write_text(f"batch_size: 8\nmodel: local-dir:{run / 'init_bundle'}\n")
    for epoch, source in ((1, init), (2, trained)):
        state = {f"module.{k}": v for k, v in _weights(source).items()}
        torch.save({"epoch": epoch, "name": "train", "state_dict": state}, logs / "checkpoints" / f"epoch_{epoch}.pt")
    return run


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path)
    return path


def _broken(path: Path, payload: bytes = b"this is not an image") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


# -- 1. a run folder is a model --------------------------------------------------------------------

def test_a_run_folder_is_a_model_for_every_command(bundles: dict[str, Path], tmp_path: Path) -> None:
    finished = _finished_run(tmp_path, bundles["a"])
    stopped = _stopped_run(tmp_path, bundles["a"], bundles["b"])
    loaded = load_model(finished)
    assert loaded.name == f"local-dir:{finished / 'bundle'}" and _same_weights(loaded.model, bundles["a"])
    from_checkpoint = load_model(stopped)  # no bundle: the newest checkpoint, architecture from params.txt
    assert from_checkpoint.name.endswith("epoch_2.pt") and _same_weights(from_checkpoint.model, bundles["b"])

    exported = invoke("export", stopped, "--out", tmp_path / "exported")
    assert exported.exit_code == 0, _out(exported)
    assert all(torch.equal(v, _weights(bundles["b"])[k]) for k, v in _weights(tmp_path / "exported").items())
    image = _png(tmp_path / "grey.png", 128)
    classified = invoke("classify", image, "--model", finished, "--labels", "x-ray", "MRI", "--json")
    assert classified.exit_code == 0, _out(classified)
    assert "grey.png" in classified.stdout and json.loads(classified.stdout)
    empty = tmp_path / "empty_run"
    (empty / "logs" / "train").mkdir(parents=True)
    refused = invoke("export", empty, "--out", tmp_path / "nothing")
    assert refused.exit_code == 2 and "holds no model" in _out(refused) and "Traceback" not in _out(refused)


def test_train_starts_from_a_run_folder(bundles: dict[str, Path], tmp_path: Path) -> None:
    from biomedclip.train.launch import TrainConfig, prepare_init_bundle

    finished = _finished_run(tmp_path, bundles["a"])
    stopped = _stopped_run(tmp_path, bundles["a"], bundles["b"])
    assert prepare_init_bundle(TrainConfig(data=tmp_path, out=tmp_path / "t1", model=str(finished))) == (
        finished / "bundle").resolve()
    init = prepare_init_bundle(TrainConfig(data=tmp_path, out=tmp_path / "t2", model=str(stopped)))
    assert init == tmp_path / "t2" / "init_bundle" and _same_weights(load_model(init).model, bundles["b"])
    file_init = prepare_init_bundle(TrainConfig(data=tmp_path, out=tmp_path / "t3",
                                                model=str(stopped / "logs" / "train" / "checkpoints" / "epoch_1.pt")))
    assert _same_weights(load_model(file_init).model, bundles["a"])


# -- 6 and 10. tiny data, no val split, resume before the first checkpoint ---------------------------

def test_train_refuses_fewer_pairs_than_a_batch(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    refused = invoke("train", "--data", shards, "--out", out, "--batch-size", "64")
    text = _out(refused)
    assert refused.exit_code == 2, text
    assert "27 pair(s), fewer than one batch of 64" in text and "--allow-tiny-data" in text
    assert not out.exists()  # refused before anything was written


def test_train_from_a_run_folder_warns_and_resumes_from_scratch(shards: Path, bundles: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """End to end: `train --model RUN` trains (no traceback), says there is no val split, and a
    `--resume` of a run stopped before its first checkpoint says it starts again from step 0."""
    finished = _finished_run(tmp_path, bundles["a"])
    out = tmp_path / "second"
    args = ["train", "--data", shards, "--out", out, "--model", finished, "--steps", "2", "--batch-size", "8",
            "--workers", "0", "--device", "cpu", "--precision", "fp32"]
    first = invoke(*args)
    assert first.exit_code == 0, _out(first)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["argv"][plan["argv"].index("--model") + 1] == f"local-dir:{(finished / 'bundle').resolve()}"
    assert any("no val split" in w for w in plan["warnings"]) and "no val split" in _out(first)
    shutil.rmtree(out / "logs" / "train" / "checkpoints")  # as if killed before the first epoch ended
    again = invoke(*args, "--resume")
    assert again.exit_code == 0, _out(again)
    assert "training starts again from step 0" in _out(again)
    assert json.loads((out / "summary.json").read_text())["warnings"][-1].endswith("starts again from step 0")


# -- 2. embeddings and indexes know their weights ----------------------------------------------------

def test_embeddings_refuse_other_weights_and_search_warns(shards: Path, bundles: dict[str, Path],
                                                          tmp_path: Path) -> None:
    model = shutil.copytree(bundles["a"], tmp_path / "model")  # one path, whose weights change below
    emb, index = tmp_path / "emb", tmp_path / "index"
    embed = ["embed", shards, "--split", "test", "--model", model, "--out", emb, "--workers", "0"]
    first = invoke(*embed)
    assert first.exit_code == 0, _out(first)
    assert invoke("index", emb, "--out", index).exit_code == 0
    same = invoke("search", index, "chest x-ray", "-k", "2", "--model", bundles["a"])  # same weights, other path
    assert same.exit_code == 0 and "warning" not in _out(same), _out(same)

    export_bundle(load_model(bundles["b"]), model, overwrite=True)  # the user retrains into the same folder
    again = invoke(*embed)
    text = _out(again)
    assert again.exit_code == 2, text
    assert "weights_sha256" in text and "--overwrite" in text
    info = json.loads((emb / "embeddings.json").read_text())
    assert info["weights_sha256"] and info["status"] == "complete"  # the old vectors are untouched

    other = invoke("search", index, "chest x-ray", "-k", "2", "--model", bundles["b"])
    assert other.exit_code == 0, _out(other)
    assert "warning" in _out(other) and "is not the model that made this index" in _out(other)
    as_json = invoke("search", index, "chest x-ray", "-k", "2", "--model", bundles["b"], "--json")
    assert as_json.exit_code == 0 and len(json.loads(as_json.stdout)["hits"]) == 2  # stdout stays JSON
    assert invoke(*embed, "--overwrite").exit_code == 0


# -- 5. embed with nothing embedded ----------------------------------------------------------------

def test_embed_fails_when_every_input_fails(bundles: dict[str, Path], tmp_path: Path) -> None:
    from biomedclip.search.embed import NothingEmbeddedError, embed_images

    folder = tmp_path / "bad"
    for i in range(7):
        _broken(folder / f"scan_{i}.png")
    result = invoke("embed", folder, "--model", bundles["a"], "--out", tmp_path / "emb", "--workers", "0")
    text = _out(result)
    assert result.exit_code == 2, text
    assert "nothing was embedded: all 7 input item(s) failed" in text
    assert set(re.findall(r"scan_\d", text)) == {f"scan_{i}" for i in range(5)}  # the first five, named
    cause = json.loads((tmp_path / "emb" / "errors.jsonl").read_text().splitlines()[0])["error"]
    assert cause.split("scan_0.png: ")[-1] in text and text.count(str(folder / "scan_0.png")) == 1  # path once, why
    assert "errors.jsonl" in text and "next: biomedclip index" not in text
    with pytest.raises(NothingEmbeddedError, match="all 7 input"):
        embed_images([folder], bundles["a"], tmp_path / "emb2", workers=0, device="cpu")


# -- 8. eval with every image failing ----------------------------------------------------------------

def test_eval_names_the_failures_when_no_image_reads(bundles: dict[str, Path], tmp_path: Path) -> None:
    from biomedclip.evaluate.datasets import load_classification, load_retrieval
    from biomedclip.evaluate.features import UnreadableImagesError
    from biomedclip.evaluate.retrieval import evaluate_retrieval
    from biomedclip.evaluate.taskfile import default_task
    from biomedclip.evaluate.zeroshot import evaluate_zeroshot
    from biomedclip.models.runtime import load_runner

    data = tmp_path / "data"
    for label in ("normal", "tumour"):
        for i in range(3):
            _broken(data / label / f"{label}_{i}.jpg")
    result = invoke("eval", "zeroshot", "--model", bundles["a"], "--data", data, "--out", tmp_path / "report",
                    "--no-cache", "--bootstrap", "10")
    text = _out(result)
    assert result.exit_code == 2, text
    assert "none of the 6 images could be read (first 5 of 6)" in text
    assert "normal_0.jpg" in text and "tumour_1.jpg" in text and "tumour_2.jpg" not in text
    assert text.count(str(data / "normal" / "normal_0.jpg")) == 1  # each failing path once, with its cause

    model = load_runner(bundles["a"], device="cpu")
    classification = load_classification(data)
    with pytest.raises(UnreadableImagesError, match=r"normal_0\.jpg: (?!/)\w"):
        evaluate_zeroshot(model, classification, default_task(classification), n_bootstrap=10)
    (tmp_path / "pairs.csv").write_text("path,caption\ndata/normal/normal_0.jpg,a normal scan\n")
    with pytest.raises(UnreadableImagesError, match="none of the 1 images"):
        evaluate_retrieval(model, load_retrieval(tmp_path / "pairs.csv"), n_bootstrap=10)
