"""Task files and prompt templates: which classes to choose between and how to phrase them.

Used by every stage that classifies by prompts — ``classify``, the server, zero-shot evaluation —
so it lives beside the model runtime, not in the evaluation package. Mapping a *dataset's* labels
onto a task's classes is evaluation's business (:mod:`biomedclip.evaluate.taskfile`).

JSON (the built-in benchmark files in ``models/tasks/`` are examples)::

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
or, for numeric labels (.npz), by position (see :func:`biomedclip.evaluate.taskfile.align_labels`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from biomedclip.errors import BiomedclipError

__all__ = ["DEFAULT_NEGATIVE_TEMPLATES", "DEFAULT_TEMPLATES", "TaskError", "TaskSpec", "builtin_tasks", "load_task"]

DEFAULT_TEMPLATES: tuple[str, ...] = ("this is an image of {}", "{} presented in image")
"""BiomedCLIP's generic prompt pair, used when a task file gives none."""
DEFAULT_NEGATIVE_TEMPLATES: tuple[str, ...] = ("no {}",)
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc")


class TaskError(BiomedclipError, ValueError):
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
    folder = resources.files("biomedclip.models") / "tasks"
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
