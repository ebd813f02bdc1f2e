"""Mapping a dataset's labels onto a task's classes (task files themselves: :mod:`biomedclip.models.prompts`).

Without ``labels`` in the task file a dataset label matches a class by its name (case-insensitive,
``_`` = space) or, for numeric labels (.npz), by position. A label that matches nothing is an
error that lists what was expected — silently dropping a class would change every metric.
"""

from __future__ import annotations

import numpy as np

from biomedclip.evaluate.datasets import ClassificationData, DatasetError
from biomedclip.models.prompts import (
    DEFAULT_NEGATIVE_TEMPLATES,
    DEFAULT_TEMPLATES,
    TaskError,
    TaskSpec,
    builtin_tasks,
    load_task,
)

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
