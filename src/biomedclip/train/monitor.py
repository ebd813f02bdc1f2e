"""Follow an ``open_clip_train`` run through its log: progress, a CSV of every step, the loss plot.

open_clip_train writes one ``Train Epoch`` line per logged step and one ``Eval Epoch`` line per
validation to ``<logs>/<name>/out.log`` (rank 0 only, whatever the launcher). Reading that file
works the same for an in-process run and for torchrun workers, and leaves the trainer untouched.
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TRAIN = re.compile(
    r"Train Epoch: (?P<epoch>\d+) \[\s*(?P<seen>\d+)/(?P<total>\d+) .*?"
    r"Batch \(t\): (?P<batch_t>[\d.]+), (?P<sps>[\d.e+-]+)/s.*?LR: (?P<lr>[\d.e+-]+) "
    r"Logit Scale: (?P<scale>[\d.]+) .*?Loss: (?P<loss>[\d.]+) \((?P<loss_avg>[\d.]+)\)\s*$"
)
_EVAL = re.compile(r"Eval Epoch: (?P<epoch>\d+) (?P<metrics>\w+: .*)$")

CSV_FIELDS = ["epoch", "samples_in_epoch", "samples_per_epoch", "loss", "loss_avg", "lr", "logit_scale",
              "samples_per_s"]


@dataclass
class StepRecord:
    """One logged training step."""

    epoch: int
    samples_in_epoch: int
    samples_per_epoch: int
    loss: float
    loss_avg: float
    lr: float
    logit_scale: float
    samples_per_s: float


@dataclass
class RunLog:
    """Everything read from a run's log so far."""

    steps: list[StepRecord] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)


def parse_line(line: str) -> StepRecord | dict[str, float] | None:
    """A StepRecord for a training line, a metrics dict for an evaluation line, else None."""
    if match := _TRAIN.search(line):
        g = match.groupdict()
        return StepRecord(int(g["epoch"]), int(g["seen"]), int(g["total"]), float(g["loss"]),
                          float(g["loss_avg"]), float(g["lr"]), float(g["scale"]), float(g["sps"]))
    if (match := _EVAL.search(line)) and "R@" in line:
        metrics: dict[str, float] = {}
        for part in match.group("metrics").split("\t"):
            key, _, value = part.partition(":")
            try:
                metrics[key.strip()] = float(value)
            except ValueError:
                continue
        return metrics
    return None


def read_log(path: Path) -> RunLog:
    """Parse a whole log file."""
    log = RunLog()
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            _add(log, parse_line(line))
    return log


def _add(log: RunLog, item: StepRecord | dict[str, float] | None) -> None:
    if isinstance(item, StepRecord):
        log.steps.append(item)
    elif isinstance(item, dict):
        log.evals.append(item)


def write_csv(log: RunLog, path: Path) -> Path:
    """Every logged step as one CSV row (loss curve, learning rate, throughput)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", *CSV_FIELDS])
        writer.writeheader()
        for i, step in enumerate(log.steps):
            writer.writerow({"step": i, **{k: getattr(step, k) for k in CSV_FIELDS}})
    return path


class LogFollower:
    """Tails a log file in a thread and reports each new step to a callback."""

    def __init__(self, path: Path, on_step: Callable[[StepRecord], None], poll_s: float = 0.5):
        self.path = path
        self.on_step = on_step
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._offset = 0

    def __enter__(self) -> LogFollower:
        if self.path.exists():  # a resumed run appends: report only what is new
            self._offset = self.path.stat().st_size
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._drain()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._drain()

    def _drain(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1  # an unfinished last line waits for the next poll
        self._offset += cut
        for line in chunk[:cut].decode("utf-8", errors="replace").splitlines():
            item = parse_line(line)
            if isinstance(item, StepRecord):
                self.on_step(item)



# -- the loss plot ----------------------------------------------------------------------------------

def smoothed(values: list[float], span: int) -> list[float]:
    """Exponential moving average over the whole sequence, bias-corrected (as TensorBoard's smoothing).

    One average runs across epoch boundaries — unlike open_clip's ``loss_avg`` column, a running
    mean that restarts every epoch and so jumps back to the raw loss at each one. ``span`` is the
    usual EMA span (weight ``2 / (span + 1)`` on the newest value); the bias correction keeps the
    first points from being pulled towards zero.
    """
    alpha = 2.0 / (max(1, span) + 1.0)
    out: list[float] = []
    mean, weight = 0.0, 0.0
    for value in values:
        mean = (1 - alpha) * mean + alpha * value
        weight = (1 - alpha) * weight + alpha
        out.append(mean / weight)
    return out


def plot_loss(metrics_csv: Path, png: Path, *, span: int | None = None) -> Path | None:
    """RUN/loss.png from RUN/metrics.csv: every logged step's loss, and its smoothed trend.

    The x axis is training progress in epochs (epoch + share of its samples seen). ``span``
    defaults to an eighth of the logged steps, between 2 and 50. Returns None when the CSV has no
    steps (nothing to draw).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    x = [int(r["epoch"]) + int(r["samples_in_epoch"]) / max(1, int(r["samples_per_epoch"])) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    span = span or max(2, min(50, len(loss) // 8))
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(x, loss, label="loss (each logged step)", alpha=0.35, lw=1)
    ax.plot(x, smoothed(loss, span), label=f"smoothed (EMA, span {span} logged steps)", lw=2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("contrastive loss")
    ax.set_title("Pretraining loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png
