"""One output folder per evaluation run: results.json, report.md and PNG plots.

* ``results.json`` — every number (metrics, confidence intervals, per-class tables, confusion
  matrices, k-shot runs, chosen regularisation, skipped items) with the model (name and weight
  fingerprint), data (path, split, fingerprint), task file, seed and package versions;
* ``report.md`` — the tables a person reads, the paper's number beside ours where the task file
  has one, links to the plots;
* ``<task>_<kind>_confusion.png``, ``…_roc.png``, ``…_kshot.png``, ``…_fractions.png``,
  ``…_recall.png`` — whichever apply;
* ``<task>_<kind>_predictions.csv`` — per-item label, prediction and class scores (classification).

Nothing is written outside the folder; names are derived from task names with unsafe characters
replaced.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.errors import BiomedclipError

__all__ = ["ReportError", "TaskResult", "package_versions", "check_out_dir", "write_report"]

PACKAGES = ("biomedclip", "torch", "open_clip_torch", "transformers", "timm", "scikit-learn", "numpy", "pillow",
            "pydicom", "nibabel", "matplotlib")


class ReportError(BiomedclipError, RuntimeError):
    """The output folder cannot be used (exists and holds a report, or is a file)."""


@dataclass
class TaskResult:
    """Everything one evaluation task produced.

    ``metrics`` are the headline scalars, ``ci`` their bootstrap intervals, ``details`` any
    JSON-serialisable extras (per-class tables, k-shot runs, …) and ``arrays`` plot inputs that are
    not written to JSON (labels, scores, curves).
    """

    kind: str  # zeroshot | retrieval | linear_probe
    name: str
    data: dict[str, Any]
    metrics: dict[str, float]
    task: dict[str, Any] | None = None
    ci: dict[str, list[float]] = field(default_factory=dict)
    bootstrap: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    arrays: dict[str, Any] = field(default_factory=dict, repr=False)
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _clean({"kind": self.kind, "name": self.name, "data": self.data, "task": self.task,
                       "metrics": self.metrics, "ci": self.ci, "bootstrap": self.bootstrap, "details": self.details,
                       "notes": self.notes, "seconds": round(self.seconds, 3), "files": self.files})


def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine the numbers, plus Python and the platform."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def slug(name: str) -> str:
    """A file-name-safe version of a task name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "task"


def check_out_dir(out: Path, overwrite: bool = False) -> Path:
    """Fail early if the run folder cannot be used: two runs never mix in one folder unless ``overwrite``.

    Nothing is created here; :func:`write_report` creates the folder once there is something to write.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and (out / "results.json").exists() and not overwrite:
        raise ReportError(f"{out} already holds a report (results.json); choose a new --out or pass --overwrite")
    return out


# -- plots ------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """Counts in the cells, colour = share of the true class (rows), so rare classes stay visible."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(4.0, 0.7 * len(classes) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels=classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc(labels: np.ndarray, scores: np.ndarray, classes: list[str], path: Path, title: str,
             multilabel: bool = False) -> Path | None:
    """One-vs-rest ROC curve per class (only the positive class for binary single-label tasks)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    wanted = [1] if (len(classes) == 2 and not multilabel) else range(len(classes))
    drawn = 0
    for c in wanted:
        truth = labels[:, c] if multilabel else (labels == c)
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, scores[:, c])
        ax.plot(fpr, tpr, label=f"{classes[c]} (AUROC {roc_auc_score(truth, scores[:, c]):.3f})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curve(xs: list[float], means: list[float], sds: list[float], path: Path, title: str, xlabel: str,
               ylabel: str, reference: dict[str, float] | None = None, log_x: bool = False) -> Path:
    """Mean ± sd over seeds against shots or label fraction, with reference lines (full probe, zero-shot)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label="linear probe")
    for i, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{i + 1}", label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_xticks(xs, labels=[f"{x:g}" for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_recall(metrics: dict[str, float], ks: list[int], path: Path, title: str) -> Path:
    """Grouped bars: Recall@K image→text and text→image."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.38
    x = np.arange(len(ks))
    for i, direction in enumerate(("image_to_text", "text_to_image")):
        values = [metrics[f"{direction}_R@{k}"] for k in ks]
        bars = ax.bar(x + (i - 0.5) * width, values, width, label=direction.replace("_", " "))
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, labels=[f"R@{k}" for k in ks])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _write_predictions(result: TaskResult, path: Path) -> Path:
    labels, scores = result.arrays["labels"], result.arrays["scores"]
    items, classes = result.arrays["items"], result.arrays["classes"]
    multilabel = labels.ndim == 2
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item", "label", "prediction", *[f"score:{c}" for c in classes]])
        for item, label, row in zip(items, labels, scores, strict=True):
            if multilabel:
                truth = "|".join(classes[c] for c in np.flatnonzero(label))
                pred = "|".join(classes[c] for c in np.flatnonzero(row >= 0.5))
            else:
                truth, pred = classes[int(label)], classes[int(row.argmax())]
            writer.writerow([item, truth, pred, *[f"{v:.6f}" for v in row]])
    return path


def _plots(result: TaskResult, out: Path, base: str) -> list[Path]:
    """Draw whatever applies to a result (files named ``<base>_…``) and return the files written."""
    a = result.arrays
    written: list[Path] = []
    if "confusion_matrix" in result.details and "classes" in a:
        written.append(plot_confusion(np.array(result.details["confusion_matrix"]), a["classes"],
                                      out / f"{base}_confusion.png", f"{result.name}: confusion matrix"))
    if "labels" in a and "scores" in a:
        roc = plot_roc(a["labels"], a["scores"], a["classes"], out / f"{base}_roc.png", f"{result.name}: ROC",
                       multilabel=a["labels"].ndim == 2)
        if roc is not None:
            written.append(roc)
        written.append(_write_predictions(result, out / f"{base}_predictions.csv"))
    reference = {}
    if "accuracy" in result.metrics and result.kind == "linear_probe":
        reference["all labels"] = result.metrics["accuracy"]
    if "majority_accuracy" in result.details:
        reference["majority class"] = result.details["majority_accuracy"]
    # accuracy curves of the linear probe: (details key, x field, file suffix, title, x label)
    curves = (("kshot", "k", "kshot", "k-shot linear probe", "shots per class (k)"),
              ("fractions", "fraction", "fractions", "label fraction", "share of training labels"))
    for key, x_field, suffix, title, xlabel in curves:
        block = result.details.get(key)
        if block and block.get("summary"):
            rows = block["summary"]
            written.append(plot_curve([r[x_field] for r in rows], [r["accuracy_mean"] for r in rows],
                                      [r["accuracy_sd"] for r in rows], out / f"{base}_{suffix}.png",
                                      f"{result.name}: {title}", xlabel, "test accuracy", reference, log_x=True))
    if result.kind == "retrieval":
        ks = result.details.get("ks", [])
        written.append(plot_recall(result.metrics, ks, out / f"{base}_recall.png", f"{result.name}: Recall@K"))
    return written


# -- markdown ---------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def clip_benchmark_line(result: TaskResult) -> str | None:
    """CLIP_benchmark's names for the same numbers, in one line (None when the task has none).

    They are aliases (acc1 = accuracy, mean_per_class_recall = balanced accuracy) plus top-5
    accuracy, so the metric table does not repeat them; with ≤ 5 classes acc5 is 1.0 by
    construction and the line says so rather than letting it pass for a result.
    """
    from biomedclip.evaluate.metrics import CLIP_BENCHMARK_METRICS, TOP_K

    if not all(name in result.metrics for name in CLIP_BENCHMARK_METRICS):
        return None
    m = result.metrics
    n_classes = len(result.arrays.get("classes") or (result.task or {}).get("classes") or [])
    line = (f"CLIP_benchmark names: acc1 {_fmt(m['acc1'])} (= accuracy) · acc5 {_fmt(m['acc5'])} "
            f"(top-{TOP_K} accuracy) · mean_per_class_recall {_fmt(m['mean_per_class_recall'])} "
            "(= balanced_accuracy)")
    if 0 < n_classes <= TOP_K:
        line += (f". acc5 is 1.0 by construction with {n_classes} classes (≤ {TOP_K}: the top {TOP_K} hold every "
                 f"class; CLIP_benchmark leaves acc5 empty below {TOP_K} classes)")
    return line


def _metric_table(result: TaskResult) -> list[str]:
    from biomedclip.evaluate.metrics import CLIP_BENCHMARK_METRICS

    lines = ["| metric | value | 95% CI |", "|---|---:|---:|"]
    for name, value in result.metrics.items():
        if name in CLIP_BENCHMARK_METRICS:  # aliases, shown on their own line below the table
            continue
        ci = result.ci.get(name)
        ci_text = f"{_fmt(ci[0])} – {_fmt(ci[1])}" if ci else ""
        lines.append(f"| {name} | {_fmt(value)} | {ci_text} |")
    return lines


def _per_class_table(result: TaskResult) -> list[str]:
    d = result.details
    classes = result.arrays.get("classes") or (result.task or {}).get("classes") or []
    if "per_class_recall" not in d or not classes:
        return []
    lines = ["| class | support | recall | AUROC |", "|---|---:|---:|---:|"]
    for i, name in enumerate(classes):
        lines.append(f"| {name} | {d['per_class_support'][i]} | {_fmt(d['per_class_recall'][i])} | "
                     f"{_fmt(d['per_class_auroc'][i])} |")
    return lines


def _paper_line(result: TaskResult) -> list[str]:
    paper = (result.task or {}).get("paper")
    if not paper or result.kind != "zeroshot":
        return []
    metric = "macro_auroc" if str(paper.get("metric", "")).lower() == "auroc" else "accuracy"
    ours = result.metrics.get(metric)
    ours_text = _fmt(100 * ours if ours is not None else None)
    return [f"Paper ({paper.get('model', 'BiomedCLIP')}, {paper.get('source', '')}): "
            f"**{paper['value']}** {paper.get('metric')} — this run: **{ours_text}** (×100)", ""]


def _kshot_table(block: dict[str, Any], key: str, label: str) -> list[str]:
    lines = [f"| {label} | runs | train items | accuracy (mean ± sd) | balanced acc. | macro-F1 | macro AUROC |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in block["summary"]:
        lines.append(f"| {r[key]:g} | {r['runs']} | {r['train_items']} | {r['accuracy_mean']:.4f} ± "
                     f"{r['accuracy_sd']:.4f} | {_fmt(r['balanced_accuracy_mean'])} | {_fmt(r['macro_f1_mean'])} | "
                     f"{_fmt(r['macro_auroc_mean'])} |")
    return lines


def _section(result: TaskResult) -> list[str]:
    lines = [f"## {result.name} ({result.kind.replace('_', ' ')})", ""]
    data = result.data
    lines.append(f"Data: `{data.get('path')}` · split {data.get('split', '–')} · {data.get('items', '–')} items"
                 f" · {data.get('skipped', 0)} unreadable (skipped)")
    if result.task:
        lines.append(f"Task: `{result.task.get('source')}` · classes: {', '.join(result.task.get('classes', []))}")
        if result.kind == "zeroshot":
            lines.append(f"Templates: {', '.join(f'“{t}”' for t in result.task.get('templates', []))}")
    lines.append("")
    lines += _paper_line(result)
    lines += _metric_table(result) + [""]
    if (aliases := clip_benchmark_line(result)) is not None:
        lines += [aliases + ".", ""]
    lines += _per_class_table(result)
    if result.details.get("per_class_recall"):
        lines.append("")
    d = result.details
    if "majority_accuracy" in d:
        lines += [f"Majority-class baseline accuracy: {_fmt(d['majority_accuracy'])}", ""]
    if "chosen_C" in d:
        lines += [f"Regularisation chosen on the validation split: C = {d['chosen_C']:g} "
                  f"(validation {d.get('selection_metric', 'accuracy')} {_fmt(d.get('val_score'))})", ""]
    if d.get("kshot", {}).get("summary"):
        lines += ["### k-shot", ""] + _kshot_table(d["kshot"], "k", "k") + [""]
    if d.get("fractions", {}).get("summary"):
        lines += ["### Label fraction", ""] + _kshot_table(d["fractions"], "fraction", "fraction") + [""]
    for f in result.files:
        if f.endswith(".png"):
            lines += [f"![{f}]({f})", ""]
    skipped = d.get("skipped_items") or []
    if skipped:
        lines += [f"Unreadable items ({len(skipped)}; first {min(len(skipped), 10)}):", ""]
        lines += [f"- `{s['item']}`: {s['error']}" for s in skipped[:10]] + [""]
    for note in result.notes:
        lines.append(f"> {note}")
    if result.notes:
        lines.append("")
    return lines


def write_report(out: Path, results: list[TaskResult], *, model: dict[str, Any], seed: int,
                 settings: dict[str, Any] | None = None, errors: list[dict[str, str]] | None = None,
                 title: str = "BiomedCLIP evaluation") -> dict[str, Path]:
    """Write plots, ``results.json`` and ``report.md`` into ``out``; returns the main files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for result in results:
        base = stem = f"{slug(result.name)}_{result.kind}"
        n = 1
        while base in taken:  # two tasks of the same name and kind (e.g. two splits) keep apart
            n += 1
            base = f"{stem}_{n}"
        taken.add(base)
        result.files = [p.name for p in _plots(result, out, base)]
    doc = _clean({
        "title": title,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "seed": seed,
        "settings": settings or {},
        "packages": package_versions(),
        "tasks": [r.to_json() for r in results],
        "errors": errors or [],
    })
    (out / "results.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    fingerprint = f"`{str(model['fingerprint'])[:16]}…`" if model.get("fingerprint") else "–"
    lines = [f"# {title}", "", f"Model: `{model.get('name')}` (weights sha256 {fingerprint})",
             f"Seed {seed} · created {doc['created']} · biomedclip {doc['packages'].get('biomedclip')}", ""]
    if len(results) > 1:
        lines += ["| task | kind | headline | value | 95% CI |", "|---|---|---|---:|---:|"]
        for r in results:
            key = r.details.get("headline", next(iter(r.metrics), ""))
            ci = r.ci.get(key)
            lines.append(f"| {r.name} | {r.kind} | {key} | {_fmt(r.metrics.get(key))} | "
                         f"{f'{_fmt(ci[0])} – {_fmt(ci[1])}' if ci else ''} |")
        lines.append("")
    for r in results:
        lines += _section(r)
    if errors:
        lines += ["## Tasks that failed", ""] + [f"- **{e['task']}**: {e['error']}" for e in errors] + [""]
    lines += ["## Environment", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in doc["packages"].items()]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"results": out / "results.json", "report": out / "report.md"}
