"""Where a trained model is inside a folder: a bundle, a run folder, or open_clip_train checkpoints.

``--model`` accepts a folder, and users pass whichever folder they have at hand:

* a **bundle** (``open_clip_config.json`` + weights), e.g. ``RUN/bundle`` or an ``export``;
* a **run folder** of ``biomedclip train`` (``RUN/bundle/`` once the run finished,
  ``RUN/logs/<name>/checkpoints/epoch_N.pt`` while it runs or after it was stopped);
* an ``open_clip_train`` log folder (``logs/<name>/``) or its ``checkpoints/`` folder.

:func:`resolve_model_folder` turns any of them into one bundle or one checkpoint, the same way
for every command (the model factory, ``train --model``), and :func:`latest_checkpoint` is the
one rule for "the checkpoint a run would resume from". Nothing here imports torch, so the CLI
can resolve a folder before the model code loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from biomedclip.models.names import BUNDLE_CONFIG, ModelLoadError

__all__ = ["RUN_BUNDLE", "latest_checkpoint", "resolve_model_folder", "run_checkpoints"]

RUN_BUNDLE = "bundle"
"""The trained model's bundle inside a ``biomedclip train`` run folder."""


def _epoch(path: Path) -> int | None:
    number = path.stem.partition("_")[2]
    return int(number) if number.isdigit() else None


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint open_clip_train resumes from in ``folder`` (a log folder or its ``checkpoints/``).

    ``epoch_latest.pt`` when it exists (written with ``--save-most-recent``), else the highest
    ``epoch_N.pt``; ``None`` when there is none.
    """
    folder = Path(folder)
    for candidate in (folder / "checkpoints", folder):
        if (candidate / "epoch_latest.pt").is_file():
            return candidate / "epoch_latest.pt"
        numbered = [(n, p) for p in candidate.glob("epoch_*.pt") if (n := _epoch(p)) is not None]
        if numbered:
            return max(numbered)[1]
    return None


def run_checkpoints(run: str | Path) -> Path | None:
    """The newest checkpoint of any training in a run folder (``RUN/logs/*/checkpoints``).

    A run folder normally holds one log folder (``logs/train``); when there are several, the
    most recently written checkpoint wins.
    """
    logs = Path(run) / "logs"
    if not logs.is_dir():
        return None
    found = [ckpt for sub in sorted(logs.iterdir()) if sub.is_dir() and (ckpt := latest_checkpoint(sub)) is not None]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def resolve_model_folder(folder: str | Path) -> tuple[Literal["bundle", "checkpoint"], Path]:
    """(``"bundle"``, bundle folder) or (``"checkpoint"``, checkpoint file) for a ``--model`` folder.

    Order: the folder is a bundle; a run folder's ``bundle/``; the folder's own checkpoints (a
    log folder or ``checkpoints/``); the newest checkpoint under ``logs/*/checkpoints``.
    """
    folder = Path(folder)
    if (folder / BUNDLE_CONFIG).is_file():
        return "bundle", folder
    if (folder / RUN_BUNDLE / BUNDLE_CONFIG).is_file():
        return "bundle", folder / RUN_BUNDLE
    checkpoint = latest_checkpoint(folder) or run_checkpoints(folder)
    if checkpoint is not None:
        return "checkpoint", checkpoint
    raise ModelLoadError(
        f"{folder} holds no model: not a bundle ({BUNDLE_CONFIG}), not a run folder ({RUN_BUNDLE}/ or "
        "logs/*/checkpoints/epoch_N.pt) and no epoch_N.pt checkpoints; pass RUN/bundle, a folder from "
        "`biomedclip export`, or a checkpoint file"
    )
