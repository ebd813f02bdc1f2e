"""One way to get a BiomedCLIP model, whatever it comes from, and one way to ship it.

:func:`load_model` accepts

* a built-in name (``biomedclip-vit-b16-bert256``, ``biomedclip-small``, ``biomedclip-tiny``):
  random init, optionally with the text tower initialised from a local HF BERT folder
  (``text_init``, the paper starts from PubMedBERT);
* ``local-dir:PATH`` (or just the folder path): an open_clip bundle, e.g. one we exported;
* ``hf-hub:ORG/NAME``: the hub, where the network and the user allow it — otherwise it fails at
  once with a message saying how to pass a local bundle instead;
* an ``open_clip_train`` checkpoint (``epoch_N.pt``, DDP ``module.`` prefixes welcome), whose
  architecture comes from ``base`` or from the run's bundle / ``params.txt``;
* a ``biomedclip train`` run folder: ``RUN/bundle`` once the run finished, else the newest
  checkpoint under ``RUN/logs/*/checkpoints`` (:func:`biomedclip.models.checkpoints.resolve_model_folder`).

and :func:`export_bundle` writes the open_clip ``local-dir:`` bundle that is this project's model
format (see DESIGN.md): ``open_clip_config.json`` + ``open_clip_model.safetensors`` + the BERT
``config.json`` + tokenizer files, loadable by plain ``open_clip.create_model_from_pretrained``.

All model construction goes through open_clip's own ``create_model_and_transforms``; this module
only decides *where the text tower's HF config comes from*. open_clip's ``HFTextEncoder`` always
calls ``AutoConfig.from_pretrained(text_cfg["hf_model_name"])`` — there is no way to embed the
config in ``model_cfg`` — so a hub id there means a download. We therefore point
``hf_model_name`` at a local folder holding ``config.json``: the bundle folder itself, or a
temporary folder with a ``BertConfig`` derived from the architecture fields (``width``,
``layers``, ``heads``, ``mlp_ratio``, ``vocab_size``) that our configs carry in ``text_cfg``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from biomedclip.models.checkpoints import resolve_model_folder
from biomedclip.models.names import (
    ALLOW_DOWNLOAD_ENV,
    BUILTIN_MODELS,
    BUNDLE_CONFIG,
    HubUnavailableError,
    ModelLoadError,
    check_hub_access,
    download_opt_in,
    hub_downloads_allowed,
    hub_error,
    unknown_model_error,
)
from biomedclip.models.tokenizer import (
    check_tokenizer_folder,
    save_tokenizer,
    write_placeholder_tokenizer,
)

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("configs")

BUNDLE_WEIGHTS = "open_clip_model.safetensors"
TEXT_CONFIG = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")  # what open_clip's local-dir loader picks up

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS = {"mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic", "resize_mode": "shortest"}
"""BiomedCLIP's preprocessing: OpenAI CLIP mean/std, bicubic, shortest side resize + center crop."""

PRECISION_ALIASES: Mapping[str, str] = {"bf16": "pure_bf16", "fp16": "pure_fp16"}
"""open_clip's "bf16"/"fp16" cast only the Linear/attention weights of native towers, which leaves
an HF BERT with fp32 LayerNorms/embeddings and bf16 Linears — a dtype clash at the first matmul.
Casting the whole model is what works for every tower we build."""

ARCH_KEYS = ("width", "heads", "layers")
KNOWN_TEXT_TOWERS: Mapping[str, str] = {
    "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract": "biomedclip-vit-b16-bert256",
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract": "biomedclip-vit-b16-bert256",
}
"""Hub text towers whose architecture we know, so bundles naming them load offline (e.g. a
downloaded copy of the official BiomedCLIP repository)."""


@dataclass
class LoadedModel:
    """A ready model (in eval mode) with everything needed to feed it."""

    model: torch.nn.Module
    preprocess_train: Callable[[Any], torch.Tensor]
    preprocess_val: Callable[[Any], torch.Tensor]
    tokenizer: Any  # open_clip.tokenizer.HFTokenizer: texts -> LongTensor[batch, context_length]
    name: str
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]

    @property
    def context_length(self) -> int:
        """Tokens per text the model was configured for."""
        return int(self.model_cfg["text_cfg"]["context_length"])


# -- built-in configs ---------------------------------------------------------------------------

def register_builtin_configs() -> None:
    """Make our config folder known to open_clip (idempotent), so ``open_clip_train`` sees the names."""
    import open_clip

    if not set(BUILTIN_MODELS) <= set(open_clip.list_models()):
        open_clip.add_model_config(CONFIG_DIR)


def list_builtin_models() -> list[str]:
    """Names accepted by :func:`load_model` for a randomly initialised model."""
    return list(BUILTIN_MODELS)


def builtin_config(name: str) -> dict[str, Any]:
    """The open_clip model config of a built-in model (a fresh copy)."""
    if name not in BUILTIN_MODELS:
        raise ModelLoadError(f"unknown built-in model {name!r}; choose one of {', '.join(BUILTIN_MODELS)}")
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


# -- text tower config --------------------------------------------------------------------------

def bert_config(text_cfg: Mapping[str, Any]) -> Any:
    """A ``transformers.BertConfig`` from our ``text_cfg`` architecture fields.

    Positions are ``max(512, context_length)`` — BERT's 512 like PubMedBERT, so a 256-token model
    keeps the official checkpoint's position table.
    """
    from transformers import BertConfig

    missing = [k for k in ARCH_KEYS if k not in text_cfg]
    if missing:
        raise ModelLoadError(f"text_cfg lacks architecture fields {missing}; cannot build the text tower offline")
    width = int(text_cfg["width"])
    return BertConfig(
        vocab_size=int(text_cfg.get("vocab_size", 30522)),
        hidden_size=width,
        num_hidden_layers=int(text_cfg["layers"]),
        num_attention_heads=int(text_cfg["heads"]),
        intermediate_size=round(width * float(text_cfg.get("mlp_ratio", 4.0))),
        max_position_embeddings=max(512, int(text_cfg.get("context_length", 0))),
        pad_token_id=0,
    )


def _arch_fields(config: Any) -> dict[str, Any]:
    """Our ``text_cfg`` architecture fields, read back from a loaded HF config."""
    return {
        "vocab_size": int(config.vocab_size),
        "width": int(config.hidden_size),
        "heads": int(config.num_attention_heads),
        "layers": int(config.num_hidden_layers),
        "mlp_ratio": float(config.intermediate_size) / float(config.hidden_size),
    }


def _local_text_cfg(text_cfg: Mapping[str, Any], *, bundle_dir: Path | None, workdir: Path) -> dict[str, Any]:
    """Copy of ``text_cfg`` whose ``hf_model_name`` names a local folder with ``config.json``.

    Order: the bundle's own ``config.json``; an existing local folder; a config derived from the
    architecture fields (ours) or from a known hub tower; the hub itself if downloads are allowed.
    """
    tc = dict(text_cfg)
    if bundle_dir is not None and (bundle_dir / TEXT_CONFIG).is_file():
        tc["hf_model_name"] = str(bundle_dir.resolve())
        return tc
    name = str(tc.get("hf_model_name") or "")
    if name and (Path(name) / TEXT_CONFIG).is_file():
        return tc
    arch: dict[str, Any] | None = None
    if all(k in tc for k in ARCH_KEYS):
        arch = tc
    elif name in KNOWN_TEXT_TOWERS:
        known = builtin_config(KNOWN_TEXT_TOWERS[name])["text_cfg"]
        arch = {k: known[k] for k in (*ARCH_KEYS, "mlp_ratio", "vocab_size")}
        tc.update(arch)
    if arch is not None:
        bert_config(arch | {"context_length": tc.get("context_length", 0)}).save_pretrained(workdir)
        tc["hf_model_name"] = str(workdir)
        return tc
    if hub_downloads_allowed():
        return tc
    raise HubUnavailableError(
        f"the text tower config {name!r} would have to come from the model hub, and downloads are disabled. "
        f"Put its config.json in the bundle folder, or set {ALLOW_DOWNLOAD_ENV}=1 where the network allows."
    )


# -- hub access ---------------------------------------------------------------------------------

# The name checks and hub-access rules live in biomedclip.models.names (no torch import there).


@contextmanager
def _hub_access() -> Iterator[None]:
    """Lift HF offline mode for the duration — only when the user opted in.

    ``biomedclip/__init__`` sets ``HF_HUB_OFFLINE=1`` before huggingface_hub reads it, so the
    opt-in has to flip huggingface_hub's constant too (transformers asks the same constant).
    """
    if not download_opt_in():
        yield
        return
    import huggingface_hub.constants as hub_constants

    saved_env, saved_flag = os.environ.get("HF_HUB_OFFLINE"), hub_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "0"
    hub_constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_flag
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


# -- state dicts --------------------------------------------------------------------------------

def load_state_dict_compat(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load a state dict that may carry DDP ``module.`` prefixes or recomputed buffers.

    Older transformers saved BERT's ``embeddings.position_ids`` buffer (the official BiomedCLIP
    file has ``text.transformer.embeddings.position_ids``); current ones recompute it, so keys
    naming a non-persistent buffer of ``model`` are dropped. Everything else must match exactly.
    """
    clean = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    expected = set(model.state_dict())
    recomputed = {name for name, _ in model.named_buffers()} - expected
    clean = {k: v for k, v in clean.items() if k not in recomputed}
    if "logit_scale" in clean and "logit_scale" in expected:
        clean["logit_scale"] = clean["logit_scale"].reshape(model.state_dict()["logit_scale"].shape)
    missing, unexpected = sorted(expected - set(clean)), sorted(set(clean) - expected)
    if missing or unexpected:
        raise ModelLoadError(
            f"weights do not fit the architecture: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); pass the config they were trained with"
        )
    try:
        model.load_state_dict(clean, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise ModelLoadError(f"weights do not fit the architecture: {exc}") from exc


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """State dict of a weights file or an ``open_clip_train`` checkpoint (its ``state_dict`` entry)."""
    from open_clip.factory import load_state_dict

    try:
        return load_state_dict(str(path), device="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for a bad file
        raise ModelLoadError(f"cannot read weights from {path}: {exc}") from exc


# -- sources ------------------------------------------------------------------------------------

def _classify(name_or_path: str | Path) -> tuple[str, str]:
    """(kind, identifier) with kind in builtin | local-dir | hf-hub | checkpoint."""
    text = str(name_or_path)
    if text.startswith("hf-hub:"):
        return "hf-hub", text[len("hf-hub:"):]
    if text.startswith("local-dir:"):
        return "local-dir", text[len("local-dir:"):]
    if text in BUILTIN_MODELS:
        return "builtin", text
    path = Path(text)
    if path.is_file():
        return "checkpoint", text
    if path.is_dir():  # a bundle, a run folder (RUN/bundle, else its newest checkpoint) or checkpoints
        kind, found = resolve_model_folder(path)
        return ("local-dir" if kind == "bundle" else "checkpoint"), str(found)
    raise unknown_model_error(text)


def _checkpoint_base(checkpoint: Path) -> str:
    """Architecture source of a checkpoint: a bundle beside it, else the run's ``params.txt`` model."""
    folders = (checkpoint.parent, checkpoint.parent.parent)
    for folder in folders:
        if (folder / BUNDLE_CONFIG).is_file():
            return f"local-dir:{folder}"
    for folder in folders:
        params = folder / "params.txt"
        if params.is_file():
            for line in params.read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition(": ")
                if key.strip() == "model" and value.strip():
                    return value.strip()
    raise ModelLoadError(
        f"cannot tell which architecture {checkpoint} belongs to (no {BUNDLE_CONFIG} or params.txt beside it): "
        "pass base='local-dir:BUNDLE' (the bundle training started from) or a built-in name"
    )


def _tokenizer(folder: str | Path, context_length: int, vocab_size: int) -> Any:
    """open_clip ``HFTokenizer`` for a tokenizer folder, checked against the embedding table size."""
    from open_clip.tokenizer import HFTokenizer

    tok = HFTokenizer(str(check_tokenizer_folder(folder)), context_length=context_length)
    if len(tok.tokenizer) > vocab_size:
        raise ModelLoadError(f"tokenizer {folder} has {len(tok.tokenizer)} tokens but the text tower embeds only "
                             f"{vocab_size}; use the tokenizer the model was built with")
    return tok


def _vocab_len(folder: Path) -> int:
    with (check_tokenizer_folder(folder) / "vocab.txt").open(encoding="utf-8") as fh:
        return sum(1 for _ in fh)


def _finish(model: torch.nn.Module, train: Any, val: Any, tokenizer: Any, name: str,
            model_cfg: dict[str, Any]) -> LoadedModel:
    """Record the text tower's real architecture in ``model_cfg`` and bundle everything up.

    The model is returned in eval mode (open_clip leaves it in train mode, where BERT's dropout
    makes embeddings random); training code calls ``.train()`` itself.
    """
    model.eval()
    cfg = copy.deepcopy(model_cfg)
    cfg["text_cfg"].pop("hf_model_pretrained", None)
    text_config = getattr(getattr(model, "text", None), "config", None)
    if text_config is not None and getattr(text_config, "model_type", "") == "bert":
        cfg["text_cfg"].update(_arch_fields(text_config))
    preprocess_cfg = dict(getattr(model.visual, "preprocess_cfg", {}))
    return LoadedModel(model, train, val, tokenizer, name, cfg, preprocess_cfg)


# -- creation paths -----------------------------------------------------------------------------

class _DropRandomInitWarning(logging.Filter):
    """Hide open_clip's "initialized randomly" warning while a checkpoint is about to be loaded."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


def _create(name: str, text_cfg: dict[str, Any], *, device: str | torch.device, precision: str,
            load_weights: bool = True, pretrained_text: bool = False, **kwargs: Any) -> tuple[Any, Any, Any]:
    """``open_clip.create_model_and_transforms`` with our resolved text config; errors made readable."""
    import open_clip

    register_builtin_configs()
    # open_clip warns "initialized randomly" whenever no pretrained tag is given: here either weights
    # follow at once (bundles, checkpoints) or random init is the documented meaning of a built-in name.
    quiet = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        return open_clip.create_model_and_transforms(
            name, load_weights=load_weights, precision=precision, device=device,
            pretrained_text=pretrained_text, text_cfg=text_cfg, **kwargs,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        if isinstance(exc, ModelLoadError):
            raise
        raise ModelLoadError(f"could not create {name!r}: {exc}") from exc
    finally:
        root.removeFilter(quiet)


def _load_builtin(name: str, *, device: str | torch.device, precision: str, tokenizer_dir: Path | None,
                  text_init: Path | None) -> LoadedModel:
    cfg = builtin_config(name)
    tc = dict(cfg["text_cfg"])
    with tempfile.TemporaryDirectory(prefix="biomedclip-") as tmp:
        if text_init is not None:
            from transformers import AutoConfig

            if not (text_init / TEXT_CONFIG).is_file():
                raise ModelLoadError(f"text_init {text_init} is not an HF model folder ({TEXT_CONFIG} missing)")
            init_config = AutoConfig.from_pretrained(str(text_init), local_files_only=True)
            if init_config.model_type != "bert" or getattr(init_config, "pad_token_id", 0) != 0:
                raise ModelLoadError(f"text_init {text_init}: need a BERT checkpoint with pad_token_id 0 (open_clip "
                                     f"masks padding by that id), got {init_config.model_type}")
            tc.update(_arch_fields(init_config), hf_model_name=str(text_init.resolve()), hf_model_pretrained=True)
            if tokenizer_dir is None and (text_init / "vocab.txt").is_file():
                tokenizer_dir = text_init
        else:
            if tokenizer_dir is not None:
                tc["vocab_size"] = _vocab_len(tokenizer_dir)
            else:
                tokenizer_dir = write_placeholder_tokenizer(Path(tmp) / "tokenizer", int(tc["vocab_size"]))
                log.warning("%s: no tokenizer_dir given, using a character-level placeholder vocab; train a "
                            "domain vocab with `biomedclip tokenizer train` for real use", name)
            bert_config(tc).save_pretrained(Path(tmp) / "text")
            tc.update(hf_model_name=str(Path(tmp) / "text"), hf_model_pretrained=False)
        if tokenizer_dir is None:
            raise ModelLoadError(f"text_init {text_init} has no vocab.txt: pass tokenizer_dir")
        model, train, val = _create(
            name, tc, device=device, precision=precision, pretrained_text=text_init is not None,
            image_mean=PREPROCESS["mean"], image_std=PREPROCESS["std"],
            image_interpolation=PREPROCESS["interpolation"], image_resize_mode=PREPROCESS["resize_mode"],
        )
        tokenizer = _tokenizer(tokenizer_dir, int(tc["context_length"]), int(model.text.config.vocab_size))
    label = str(text_init.resolve()) if text_init is not None else cfg["text_cfg"]["hf_model_name"]
    cfg["text_cfg"] = tc | {"hf_model_name": label}
    return _finish(model, train, val, tokenizer, name, cfg)


def _load_bundle(folder: Path, *, device: str | torch.device, precision: str, tokenizer_dir: Path | None,
                 load_weights: bool = True) -> LoadedModel:
    if not (folder / BUNDLE_CONFIG).is_file():
        raise ModelLoadError(f"{folder} is not a model bundle: {BUNDLE_CONFIG} missing")
    weights = sorted(p.name for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if len(weights) > 1:
        log.warning("%s holds several weight files %s; open_clip picks by a fixed preference order", folder, weights)
    if load_weights and not weights:
        raise ModelLoadError(f"{folder} has {BUNDLE_CONFIG} but no weights ({BUNDLE_WEIGHTS})")
    model_cfg = json.loads((folder / BUNDLE_CONFIG).read_text())["model_cfg"]
    with tempfile.TemporaryDirectory(prefix="biomedclip-") as tmp:
        tc = _local_text_cfg(model_cfg["text_cfg"], bundle_dir=folder, workdir=Path(tmp))
        tc["hf_model_pretrained"] = False
        with _hub_access():
            model, train, val = _create(f"local-dir:{folder}", tc, device=device, precision=precision,
                                        load_weights=load_weights)
    try:
        tokenizer = _tokenizer(tokenizer_dir or folder, int(tc["context_length"]), int(model.text.config.vocab_size))
    except (FileNotFoundError, ValueError) as exc:
        raise ModelLoadError(f"bundle {folder}: {exc}; pass tokenizer_dir=") from exc
    cfg = copy.deepcopy(model_cfg)
    cfg["text_cfg"].update({k: tc[k] for k in (*ARCH_KEYS, "mlp_ratio", "vocab_size") if k in tc})
    return _finish(model, train, val, tokenizer, f"local-dir:{folder}", cfg)


def _load_hub(repo: str, *, device: str | torch.device, precision: str, tokenizer_dir: Path | None) -> LoadedModel:
    import open_clip

    check_hub_access(repo)
    name = f"hf-hub:{repo}"
    with tempfile.TemporaryDirectory(prefix="biomedclip-") as tmp, _hub_access():
        try:
            model_cfg = open_clip.get_model_config(name)
            tc = _local_text_cfg(model_cfg["text_cfg"], bundle_dir=None, workdir=Path(tmp))
            tc["hf_model_pretrained"] = False
            model, train, val = _create(name, tc, device=device, precision=precision)
            if tokenizer_dir is not None:
                tokenizer = _tokenizer(tokenizer_dir, int(tc["context_length"]), int(model.text.config.vocab_size))
            else:
                tokenizer = open_clip.get_tokenizer(name)
        except HubUnavailableError:
            raise
        except Exception as exc:  # hub/network errors come in many types
            raise hub_error(repo, f"{type(exc).__name__}: {exc}") from exc
    return _finish(model, train, val, tokenizer, name, model_cfg)


def load_model(
    name_or_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    tokenizer_dir: str | Path | None = None,
    text_init: str | Path | None = None,
    base: str | Path | None = None,
    seed: int | None = None,
) -> LoadedModel:
    """Create or load a model with its tokenizer and train/val image transforms.

    Args:
        name_or_path: built-in name, ``local-dir:PATH`` / bundle folder, ``hf-hub:ORG/NAME``,
            checkpoint file (``epoch_N.pt``, ``.safetensors``, ``.bin``) or run folder.
        device, precision: as in open_clip: ``fp32`` (default: weights stay fp32, and
            :mod:`biomedclip.models.runtime` runs them under autocast — use
            :func:`~biomedclip.models.runtime.load_runner` to get a model ready to run),
            ``bf16``/``fp16`` (mean the whole model cast, see :data:`PRECISION_ALIASES`), ``pure_bf16``, ...
        tokenizer_dir: tokenizer folder to use instead of the source's own. For a built-in model
            it also sets the text vocab size; without it a built-in model gets a placeholder
            character vocab (warned about) so it still runs.
        text_init: built-in models only — a local HF BERT folder (config.json + weights +
            vocab.txt) whose weights, architecture and tokenizer the text tower takes over.
        base: checkpoints only — architecture source (bundle or built-in name) when the run
            folder does not say it.
        seed: seed torch before random init, for reproducible fresh models.
    """
    if seed is not None:
        torch.manual_seed(seed)
    precision = PRECISION_ALIASES.get(precision, precision)
    kind, ident = _classify(name_or_path)
    tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else None
    if text_init is not None and kind != "builtin":
        raise ModelLoadError("text_init only applies to built-in (randomly initialised) models")
    if kind == "builtin":
        return _load_builtin(ident, device=device, precision=precision, tokenizer_dir=tok_dir,
                             text_init=Path(text_init) if text_init is not None else None)
    if kind == "local-dir":
        return _load_bundle(Path(ident), device=device, precision=precision, tokenizer_dir=tok_dir)
    if kind == "hf-hub":
        return _load_hub(ident, device=device, precision=precision, tokenizer_dir=tok_dir)
    return _load_checkpoint(Path(ident), device=device, precision=precision, tokenizer_dir=tok_dir, base=base)


def _load_checkpoint(path: Path, *, device: str | torch.device, precision: str, tokenizer_dir: Path | None,
                     base: str | Path | None) -> LoadedModel:
    source = str(base) if base is not None else _checkpoint_base(path)
    kind, ident = _classify(source)
    if kind == "checkpoint":
        raise ModelLoadError(f"base {source!r} must be a bundle or built-in name, not another checkpoint")
    if kind == "local-dir":
        loaded = _load_bundle(Path(ident), device=device, precision=precision, tokenizer_dir=tokenizer_dir,
                              load_weights=False)
    elif kind == "builtin":
        loaded = _load_builtin(ident, device=device, precision=precision, tokenizer_dir=tokenizer_dir, text_init=None)
    else:
        loaded = _load_hub(ident, device=device, precision=precision, tokenizer_dir=tokenizer_dir)
    load_state_dict_compat(loaded.model, _read_weights(path))
    loaded.name = str(path)
    return loaded


# -- bundles ------------------------------------------------------------------------------------

def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ModelLoadError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    stale = [p for p in out.iterdir() if p.suffix in WEIGHT_SUFFIXES or p.name == BUNDLE_CONFIG]
    if stale and not overwrite:
        raise ModelLoadError(f"{out} already holds a model ({', '.join(sorted(p.name for p in stale))}); "
                             "pass overwrite=True / --overwrite to replace it")
    # open_clip loads whichever weight file it prefers, so no foreign weights may stay behind
    for p in stale:
        p.unlink()


def export_bundle(
    source: LoadedModel | str | Path,
    out_dir: str | Path,
    *,
    base: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
    hf_model_name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an open_clip ``local-dir:`` bundle that plain open_clip loads without biomedclip.

    Files: ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``),
    ``open_clip_model.safetensors`` (fp32), ``config.json`` (the BERT config of the text tower),
    ``vocab.txt`` + ``tokenizer_config.json`` + ``special_tokens_map.json``.

    ``text_cfg.hf_model_name`` is set to the bundle's absolute path, because plain open_clip reads
    the text tower's config from wherever that names (a hub id would mean a download). biomedclip
    ignores it and uses the folder's own ``config.json``, so a moved bundle still loads through
    :func:`load_model`; plain open_clip needs a re-export (or ``hf_model_name``) after a move.
    Pass ``hf_model_name`` (e.g. a hub id) to publish the bundle with a portable name instead.
    """
    from safetensors.torch import save_file

    loaded = source if isinstance(source, LoadedModel) else load_model(source, base=base, tokenizer_dir=tokenizer_dir)
    out = Path(out_dir).resolve()
    _prepare_out_dir(out, overwrite)
    model_cfg = copy.deepcopy(loaded.model_cfg)
    text_cfg = model_cfg["text_cfg"]
    origin = text_cfg.get("hf_model_name")
    text_cfg["hf_model_name"] = text_cfg["hf_tokenizer_name"] = hf_model_name or str(out)
    text_cfg.pop("hf_model_pretrained", None)
    preprocess_cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in loaded.preprocess_cfg.items()}
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg,
              "biomedclip": {"source": loaded.name, "text_tower_origin": origin}}
    state = {k: (v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()).contiguous()
             for k, v in loaded.model.state_dict().items()}
    save_file(state, str(out / BUNDLE_WEIGHTS), metadata={"format": "pt"})
    loaded.model.text.config.save_pretrained(str(out))
    save_tokenizer(loaded.tokenizer, out, model_max_length=int(text_cfg["context_length"]))
    (out / BUNDLE_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def create_bundle(
    out_dir: str | Path,
    model: str = "biomedclip-tiny",
    *,
    tokenizer_dir: str | Path | None = None,
    text_init: str | Path | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a fresh bundle — the starting point ``open_clip_train --model local-dir:OUT`` trains from.

    ``model`` is a built-in name (random init, reproducible by ``seed``); ``text_init`` puts a
    pretrained local HF BERT (e.g. PubMedBERT) in the text tower, ``tokenizer_dir`` a domain vocab.
    """
    loaded = load_model(model, tokenizer_dir=tokenizer_dir, text_init=text_init, seed=seed)
    return export_bundle(loaded, out_dir, overwrite=overwrite)
