"""The training loss plot and summary: raw steps plus one moving average that runs across epochs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biomedclip.train.display import number, print_train_summary
from biomedclip.train.monitor import RunLog, StepRecord, plot_loss, smoothed, write_csv
from biomedclip.ui import console


def _log(epochs: int = 3, per_epoch: int = 10) -> RunLog:
    """Loss falling steadily over the run; ``loss_avg`` is open_clip's running mean, restarting each epoch."""
    log = RunLog()
    for epoch in range(epochs):
        seen: list[float] = []
        for i in range(per_epoch):
            loss = 5.0 - 0.1 * (epoch * per_epoch + i)
            seen.append(loss)
            log.steps.append(StepRecord(epoch, (i + 1) * 64, per_epoch * 64, loss, float(np.mean(seen)), 1e-4,
                                        14.3, 100.0))
    return log


def test_smoothing_is_one_bias_corrected_ema_over_the_run() -> None:
    values = [float(v) for v in np.random.default_rng(0).normal(3.0, 0.5, 200)]
    expected = pd.Series(values).ewm(span=9, adjust=True).mean().tolist()
    assert smoothed(values, 9) == pytest.approx(expected)
    assert smoothed([4.0, 4.0, 4.0], 50) == pytest.approx([4.0, 4.0, 4.0])  # no pull towards zero at the start


def test_smoothed_line_does_not_restart_at_epoch_boundaries(tmp_path: Path) -> None:
    log = _log()
    write_csv(log, tmp_path / "metrics.csv")
    loss = [s.loss for s in log.steps]
    trend = smoothed(loss, 4)
    # at the first step of epoch 1 the running mean restarts at the raw loss; the EMA keeps lagging above it
    first_of_epoch_1 = 10
    assert log.steps[first_of_epoch_1].loss_avg == log.steps[first_of_epoch_1].loss
    assert trend[first_of_epoch_1] > loss[first_of_epoch_1] + 0.1
    assert all(b < a for a, b in zip(trend, trend[1:], strict=False))  # falls smoothly, no jump back up
    png = plot_loss(tmp_path / "metrics.csv", tmp_path / "loss.png")
    assert png == tmp_path / "loss.png" and Image.open(png).size == (720, 420)


def test_empty_run_draws_nothing(tmp_path: Path) -> None:
    write_csv(RunLog(), tmp_path / "metrics.csv")
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert list(csv.DictReader(f)) == []
    assert plot_loss(tmp_path / "metrics.csv", tmp_path / "loss.png") is None
    assert not (tmp_path / "loss.png").exists()


def test_train_summary_prints_numbers_not_reprs() -> None:
    summary = {"total_steps": 1280, "samples_per_s": 123.456, "first_loss": 4.158883, "final_loss": 1.2345678,
               "wall_seconds": 3725.04, "val": {"image_to_text_R@5": 0.41666666}, "bundle": "RUN/bundle",
               "metrics_csv": "RUN/metrics.csv", "loss_plot": "RUN/loss.png", "tensorboard": "RUN/tb"}
    with console.capture() as captured:
        print_train_summary(summary)
    text = captured.get()
    assert "4.159 → 1.235" in text and "123.5" in text and "3,725.0 s" in text and "0.417" in text
    assert "loss plot: RUN/loss.png" in text
    with console.capture() as captured:
        print_train_summary({**summary, "samples_per_s": None, "first_loss": None, "final_loss": None,
                             "loss_plot": None})
    text = captured.get()
    assert "None" not in text and "– → –" in text and "loss plot" not in text
    assert number(float("nan"), ".3f") == "–" and number(2, ",d") == "2"
