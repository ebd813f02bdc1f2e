"""Task files: which classes a dataset has, what to call them in prompts, and how its labels map.

JSON (the built-in benchmark files in ``evaluate/tasks/`` are examples)::

    {"name": "lc25000_lung",
     "classes":   ["lung adenocarcinomas", "normal lung tissue", "lung squamous cell carcinomas"],
     "labels":    [["lung_aca"], ["lung_n"], ["lung_scc"]],      # optional: dataset label values per class
     "templates": ["this is an image of {}", "{} presented in image"],
     "metric": "accuracy",                                          # headline metric of the report
     "negative_templates": ["no {}"],                               # multi-label zero-shot only
     "paper": {"metric": "accuracy", "value": 65.23, "source": "..."}}

TXT: one class name per line; lines containing ``{}`` are templates; ``raw, other = class name``
maps dataset label values to a class; ``#`` starts a comment.

Without ``labels`` a dataset label matches a class by its name (case-insensitive, ``_`` = space)
or, for numeric labels (.npz), by position. A label that matches nothing is an error that lists
what was expected — silently dropping a class would change every metric.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.evaluate.datasets import ClassificationData, DatasetError

__all__ = [
    "DEFAULT_NEGATIVE_TEMPLATES",
    "DEFAULT_TEMPLATES",
    "TaskError",
    "TaskSpec",
    "align_labels",
    "builtin_tasks",
    "default_task",
    "load_task",
]

DEFAULT_TEMPLATES: tuple[str, ...] = ("this is an image of {}", "{} presented in image")
"""BiomedCLIP's generic prompt pair, used when a task file gives none."""
DEFAULT_NEGATIVE_TEMPLATES: tuple[str, ...] = ("no {}",)
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc")


class TaskError(ValueError):
    """A task file that cannot be used; the message names the file and the problem."""


@dataclass
class TaskSpec:
    """Class names and prompts for one evaluation task."""

    name: str
    classes: list[str]
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    labels: list[list[str]] | None = None
    multilabel: bool = False
    negative_templates: list[str] = field(default_factory=lambda: list(DEFAULT_NEGATIVE_TEMPLATES))
    metric: str = "accuracy"
    paper: dict[str, Any] | None = None
    description: str = ""
    source: str = "default"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "classes": self.classes, "templates": self.templates,
                "labels": self.labels, "multilabel": self.multilabel, "metric": self.metric, "paper": self.paper,
                **({"negative_templates": self.negative_templates} if self.multilabel else {})}


def builtin_tasks() -> dict[str, Path]:
    """Built-in task names → their JSON files (the paper's benchmarks and PneumoniaMNIST)."""
    folder = resources.files("biomedclip.evaluate") / "tasks"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".json")}


def load_task(spec: str | Path) -> TaskSpec:
    """A task from a built-in name (``pcam``, ``rsna_pneumonia`` …) or a .json / .txt file."""
    builtins = builtin_tasks()
    if str(spec) in builtins:
        task = _from_json(builtins[str(spec)])
        task.source = f"built-in:{spec}"
        return task
    path = Path(spec)
    if not path.is_file():
        raise TaskError(f"{spec}: no such task file and not a built-in task ({', '.join(sorted(builtins))})")
    if path.suffix.lower() == ".json":
        return _from_json(path)
    return _from_txt(path)


def _check_templates(templates: list[str], where: str) -> list[str]:
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise TaskError(f"{where}: every template needs exactly one '{{}}' for the class name; fix {bad}")
    return templates


def _from_json(path: Path) -> TaskSpec:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaskError(f"{path}: not a readable JSON task file ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), list) or not doc["classes"]:
        raise TaskError(f"{path}: needs a non-empty \"classes\" list of class names")
    known = {"name", "classes", "templates", "labels", "multilabel", "negative_templates", "metric", "paper",
             "description", "note"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise TaskError(f"{path}: unknown keys {unknown}; allowed: {sorted(known)}")
    classes = [str(c) for c in doc["classes"]]
    labels = doc.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or len(labels) != len(classes):
            raise TaskError(f"{path}: \"labels\" needs one entry per class ({len(classes)})")
        labels = [[str(v) for v in (entry if isinstance(entry, list) else [entry])] for entry in labels]
    metric = str(doc.get("metric", "accuracy"))
    if metric not in METRICS:
        raise TaskError(f"{path}: metric {metric!r} unknown; use one of {METRICS}")
    return TaskSpec(
        name=str(doc.get("name") or path.stem), classes=classes,
        templates=_check_templates([str(t) for t in doc.get("templates") or DEFAULT_TEMPLATES], str(path)),
        labels=labels, multilabel=bool(doc.get("multilabel", False)),
        negative_templates=_check_templates([str(t) for t in doc.get("negative_templates")
                                             or DEFAULT_NEGATIVE_TEMPLATES], str(path)),
        metric=metric, paper=doc.get("paper"), description=str(doc.get("description", "")), source=str(path),
    )


def _from_txt(path: Path) -> TaskSpec:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: cannot read the task file ({exc})") from exc
    classes: list[str] = []
    labels: list[list[str]] = []
    templates: list[str] = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "{}" in line:
            templates.append(line)
        elif " = " in line:
            values, name = line.split(" = ", 1)
            classes.append(name.strip())
            labels.append([v.strip() for v in values.split(",") if v.strip()])
        else:
            classes.append(line)
            labels.append([])
    if not classes:
        raise TaskError(f"{path}: no class names (one per line; lines with {{}} are templates)")
    mapped = [entry or [name] for entry, name in zip(labels, classes, strict=True)] if any(labels) else None
    return TaskSpec(name=path.stem, classes=classes,
                    templates=_check_templates(templates or list(DEFAULT_TEMPLATES), str(path)),
                    labels=mapped, source=str(path))


def default_task(data: ClassificationData, name: str | None = None) -> TaskSpec:
    """A task from the dataset's own label names (folder/CSV), with the default templates."""
    if data.kind == "npz":
        raise TaskError(f"{data.path}: .npz labels are numbers; pass --task with class names (e.g. a built-in "
                        "task or a .txt file with one class name per line)")
    return TaskSpec(name=name or data.path.stem, classes=[n.replace("_", " ") for n in data.label_names],
                    labels=[[n] for n in data.label_names], multilabel=data.multilabel, source="dataset label names")


def _norm(value: str) -> str:
    return " ".join(value.replace("_", " ").lower().split())


def align_labels(data: ClassificationData, task: TaskSpec) -> ClassificationData:
    """``data`` with labels renumbered to ``task.classes`` order (see the module docstring)."""
    lookup: dict[str, int] = {}
    if task.labels is not None:
        for i, values in enumerate(task.labels):
            for v in values:
                lookup[_norm(v)] = i
    else:
        for i, name in enumerate(task.classes):
            lookup[_norm(name)] = i
        if all(n.isdigit() for n in data.label_names):  # numeric labels: by position
            lookup.update({str(i): i for i in range(len(task.classes))})
    mapping = np.full(len(data.label_names), -1, dtype=np.int64)
    for i, raw in enumerate(data.label_names):
        mapping[i] = lookup.get(_norm(raw), -1)
    missing = [raw for raw, m in zip(data.label_names, mapping, strict=True) if m < 0]
    used = _used_labels(data)
    missing = [m for m in missing if data.label_names.index(m) in used]
    if missing:
        expected = [v for values in task.labels for v in values] if task.labels else task.classes
        raise DatasetError(
            f"{data.path}: dataset labels {missing} do not match any class of task {task.name!r} "
            f"({task.source}); expected one of {expected}. Add a \"labels\" list to the task file that maps "
            "the dataset's label values to its classes")
    mapping[mapping < 0] = 0  # unused label names only (never referenced by an item)
    return data.with_labels(list(task.classes), mapping)


def _used_labels(data: ClassificationData) -> set[int]:
    used: set[int] = set()
    for part in data.splits.values():
        if data.multilabel:
            used |= set(np.flatnonzero(part.labels.any(axis=0)).tolist())
        else:
            used |= set(np.unique(part.labels).tolist())
    return used
