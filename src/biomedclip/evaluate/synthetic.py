"""Zero-shot tasks over shards built from a synthetic corpus (``biomedclip data synth``).

The synthetic corpus records the truth behind every figure in ``labels.jsonl`` (modality and
findings) and the class names and prompts in ``classes.json``. Joined with the shards by key, that
gives labelled evaluation data the ordinary evaluation code runs on — the demo and the learning
tests use it to show a trained model classifies what captions only ever described.

Compound (multi-panel) and broken figures are left out: they have no single true class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from biomedclip.data.shards import iter_jsonl
from biomedclip.errors import BiomedclipError
from biomedclip.evaluate.datasets import ClassificationData, LabeledSplit, MemoryImages
from biomedclip.evaluate.taskfile import TaskSpec

__all__ = ["SyntheticTaskError", "export_task_folder", "synthetic_task"]


class SyntheticTaskError(BiomedclipError, ValueError):
    """The corpus or the shards lack what the task needs; the message says what."""


def _shard_images(shards: Path, split: str) -> list[tuple[str, bytes]]:
    """(key, JPEG bytes) of every sample in one split, in shard order."""
    from biomedclip.data.build_folder import BuildFolder, NotABuildError

    try:
        build = BuildFolder(shards)
    except NotABuildError as exc:
        raise SyntheticTaskError(str(exc)) from exc
    if not build.shards(split):
        raise SyntheticTaskError(build.missing_split(split))
    return [(sample.key, sample.jpg) for sample in build.iter_samples(split) if sample.jpg is not None]


def synthetic_task(corpus: Path, shards: Path, *, split: str = "test", attribute: str = "modality",
                   modality: str | None = None) -> tuple[ClassificationData, TaskSpec]:
    """Labelled images of ``split`` and the zero-shot task for one label of the synthetic corpus.

    Args:
        corpus: the ``data synth`` output folder (``labels.jsonl``, ``classes.json``).
        shards: the ``data build`` output folder made from it.
        attribute: ``modality`` or an attribute of ``classes.json`` (``finding``, ``position`` …).
        modality: keep only figures of this modality; for ``finding`` the classes become that
            modality's findings (e.g. brain MRI: normal / mass).
    """
    corpus, shards = Path(corpus), Path(shards)
    for need in ("labels.jsonl", "classes.json"):
        if not (corpus / need).is_file():
            raise SyntheticTaskError(f"{corpus / need} not found: pass the folder written by `biomedclip data synth`")
    spec = json.loads((corpus / "classes.json").read_text())
    if attribute == "modality":
        entry = spec["modality"]
        classes = list(entry["classes"])
    elif attribute in spec["attributes"]:
        entry = spec["attributes"][attribute]
        classes = list(entry["classes"])
        if modality and attribute == "finding":
            classes = list(entry["by_modality"].get(modality, []))
    else:
        known = ", ".join(["modality", *spec["attributes"]])
        raise SyntheticTaskError(f"unknown attribute {attribute!r}; {corpus / 'classes.json'} has: {known}")
    truth = {}
    for row in iter_jsonl(corpus / "labels.jsonl"):
        if row.get("compound") or row.get("broken") or row.get(attribute) in (None, ""):
            continue
        if modality and row["modality"] != modality:
            continue
        value = str(row[attribute])
        if value in classes:
            truth[row["key"]] = classes.index(value)
    kept = [(key, data) for key, data in _shard_images(shards, split) if key in truth]
    if len({truth[k] for k, _ in kept}) < 2:
        raise SyntheticTaskError(f"{shards}/{split}: fewer than two {attribute} classes among the labelled "
                                 "figures; use a larger corpus or another split")
    name = f"synthetic-{attribute}" + (f"-{modality.replace(' ', '_')}" if modality else "")
    data = ClassificationData(
        path=shards, kind="shards", label_names=classes,
        splits={split: LabeledSplit(MemoryImages([(f"{k}.jpg", d) for k, d in kept]),
                                    np.array([truth[k] for k, _ in kept], dtype=np.int64))},
        notes=[f"labels from {corpus / 'labels.jsonl'}; compound and broken figures left out"],
    )
    task = TaskSpec(name=name, classes=classes, templates=list(entry["templates"]), source=str(corpus / "classes.json"),
                    description=f"{attribute} of synthetic figures" + (f" ({modality})" if modality else ""))
    return data, task


def export_task_folder(data: ClassificationData, task: TaskSpec, out: Path, split: str = "test") -> tuple[Path, Path]:
    """Write a synthetic task as the layouts any user has: an image folder and a task file.

    ``out/<task>/<class>/<key>.jpg`` (one sub-folder per class, spaces as ``_``) and
    ``out/<task>.json`` with the class names and templates, so the same evaluation runs through
    ``biomedclip eval zeroshot --data out/<task> --task out/<task>.json`` like on any dataset.
    """
    out = Path(out)
    folder = out / task.name
    part = data.split(split)
    for (name, payload), label in zip(part.images.items, part.labels, strict=True):
        target = folder / task.classes[int(label)].replace(" ", "_").replace("/", "-") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)
    task_file = out / f"{task.name}.json"
    task_file.write_text(json.dumps({"name": task.name, "classes": task.classes, "templates": task.templates,
                                     "metric": "accuracy", "description": task.description}, indent=2) + "\n")
    return folder, task_file
