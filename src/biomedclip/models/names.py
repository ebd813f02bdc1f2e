"""Model names, checked without loading anything: the fast half of :mod:`biomedclip.models.factory`.

A ``--model`` value is a built-in name, ``local-dir:PATH`` (or a bundle / run folder / checkpoint
path) or ``hf-hub:ORG/NAME``. Whether such a name *can* work is decidable in milliseconds — a typo,
a missing folder, a hub model while downloads are off — but the factory imports torch and
open_clip (seconds) before it looks. This module imports neither, so the CLI checks the name
while parsing options (:func:`check_model_option`) and a wrong one fails in well under a second.
The factory uses the same functions, so its errors read the same.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from biomedclip.errors import BiomedclipError

BUILTIN_MODELS: tuple[str, ...] = ("biomedclip-vit-b16-bert256", "biomedclip-small", "biomedclip-tiny")
PREFIXES: tuple[str, ...] = ("local-dir:", "hf-hub:")
BUNDLE_CONFIG = "open_clip_config.json"
ALLOW_DOWNLOAD_ENV = "BIOMEDCLIP_ALLOW_DOWNLOAD"


class ModelLoadError(BiomedclipError, RuntimeError):
    """A model could not be created or loaded; the message says why and what to pass instead."""


class HubUnavailableError(ModelLoadError):
    """A model hub download was needed but is not possible or not allowed."""


# -- hub access -------------------------------------------------------------------------------------

def download_opt_in() -> bool:
    """Whether the user allowed model-hub downloads (``BIOMEDCLIP_ALLOW_DOWNLOAD=1``)."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def hub_downloads_allowed() -> bool:
    """True if the user opted in (``BIOMEDCLIP_ALLOW_DOWNLOAD=1``) or turned offline mode off."""
    import huggingface_hub.constants as hub_constants

    return download_opt_in() or not hub_constants.HF_HUB_OFFLINE


def hub_error(repo: str, reason: str) -> HubUnavailableError:
    """The error for a hub model that cannot be had here, saying how to pass a local copy instead."""
    return HubUnavailableError(
        f"cannot load 'hf-hub:{repo}': {reason}. The weights cannot be downloaded here. Download the "
        f"repository where the network allows (e.g. `hf download {repo} --local-dir DIR`), copy it over, "
        f"and pass 'local-dir:DIR' instead; or set {ALLOW_DOWNLOAD_ENV}=1 on a machine with hub access."
    )


def check_hub_access(repo: str) -> None:
    """Raise :class:`HubUnavailableError` unless ``repo`` can be downloaded or is in the local hub cache."""
    if not repo.strip():
        raise ModelLoadError("'hf-hub:' needs a repository, e.g. hf-hub:ORG/NAME")
    if hub_downloads_allowed():
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(repo, BUNDLE_CONFIG), str)
    except ValueError:  # not a valid repo id
        cached = False
    if not cached:
        raise hub_error(repo, "model-hub downloads are disabled (HF_HUB_OFFLINE=1) and it is not cached locally")


# -- names ------------------------------------------------------------------------------------------

def unknown_model_error(text: str) -> ModelLoadError:
    """The error for a name that is no model, with the closest valid spelling when there is one."""
    prefix, sep, rest = text.partition(":")
    suggestion = None
    if sep and len(prefix) > 1:  # "hf_hub:ORG/NAME", "local_dir:PATH"
        close = difflib.get_close_matches(prefix + ":", PREFIXES, n=1, cutoff=0.6)
        suggestion = close[0] + rest if close else None
    if suggestion is None:
        close = difflib.get_close_matches(text, BUILTIN_MODELS, n=1, cutoff=0.6)
        suggestion = close[0] if close else None
    hint = f"did you mean {suggestion!r}? " if suggestion else ""
    return ModelLoadError(
        f"unknown model {text!r}: {hint}use a built-in name ({', '.join(BUILTIN_MODELS)}), local-dir:PATH, "
        "hf-hub:ORG/NAME, or a checkpoint file / run folder"
    )


def check_model_name(name: str | Path) -> str:
    """Fail fast on a model name that cannot work here; return it unchanged otherwise.

    Checks only what needs no model code: built-in names, that a ``local-dir:`` folder or a path
    exists, and that an ``hf-hub:`` model is downloadable or cached. What a folder holds is left to
    the factory, which reads it anyway.
    """
    text = str(name)
    if text.startswith("hf-hub:"):
        check_hub_access(text.removeprefix("hf-hub:"))
    elif text.startswith("local-dir:"):
        folder = Path(text.removeprefix("local-dir:"))
        if not folder.is_dir():
            raise ModelLoadError(f"{text}: no such folder (a model bundle, e.g. RUN/bundle or one from "
                                 "`biomedclip export`)")
    elif text not in BUILTIN_MODELS and not Path(text).exists():
        raise unknown_model_error(text)
    return text


def check_model_option(value: str | None) -> str | None:
    """Typer callback for ``--model`` options: checks the name while options are parsed.

    The command body, which imports torch and the model code, is then never reached with a
    name that cannot work.
    """
    return None if value is None else check_model_name(value)
