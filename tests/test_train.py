"""Pretraining: recipe flags, log parsing, and — the point — a tiny model that really learns.

The learning tests train biomedclip-tiny from scratch on the synthetic corpus for a couple of
minutes of CPU and check held-out retrieval and zero-shot modality classification far above
chance and far above the same architecture untrained. They fail if learning breaks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from biomedclip.evaluate.features import read_shard_pairs
from biomedclip.evaluate.retrieval import retrieval_metrics
from biomedclip.evaluate.zeroshot import accuracy
from biomedclip.models.factory import load_model
from biomedclip.models.runtime import as_runner
from biomedclip.train.launch import TrainConfig, TrainError, train
from biomedclip.train.monitor import StepRecord, parse_line, read_log
from biomedclip.train.recipe import Recipe, open_clip_args, plan_schedule

TRAIN_LINE = ("2026-11-25,17:41:49 | INFO | Train Epoch: 3 [ 128/1280 (10%)] Data (t): 0.011 Batch (t): 2.256, "
              "214.186/s, 214.186/s/gpu LR: 0.000495 Logit Scale: 14.271 Contrastive_loss: 3.9966 (4.2443) "
              "Loss: 3.9966 (4.2443)")
EVAL_LINE = ("2026-11-25,17:42:36 | INFO | Eval Epoch: 1 image_to_text_mean_rank: 17.6944\timage_to_text_median_rank: "
             "18.0000\timage_to_text_R@1: 0.0556\timage_to_text_R@5: 0.1389\tclip_val_loss: 3.3200\tepoch: 1.0000")


def test_paper_recipe_defaults_become_open_clip_flags(tmp_path: Path) -> None:
    recipe = Recipe()
    schedule = plan_schedule(recipe, train_samples=10_000_000 // 1000)
    args = open_clip_args(recipe, schedule, model="local-dir:B", train_data="a.tar::b.tar", logs=tmp_path, name="r")
    flags = dict(zip(args[::2], args[1::2], strict=False))
    assert flags["--beta1"] == "0.9" and flags["--beta2"] == "0.98" and flags["--eps"] == "1e-06"
    assert flags["--wd"] == "0.2" and flags["--lr"] == "0.0005" and flags["--lr-scheduler"] == "cosine"
    assert flags["--aug-cfg"] == "scale=(0.9, 1.0)"
    assert "--local-loss" not in args
    # 157 steps: the paper's 2000 warm-up steps are capped at 10% of the run
    assert schedule.total_steps == 157 and schedule.warmup == 15
    big = plan_schedule(Recipe(epochs=40), train_samples=15_000_000, world_size=16)
    assert big.warmup == 2000


def test_steps_budget_and_distributed_flags(tmp_path: Path) -> None:
    recipe = Recipe(steps=250, batch_size=32, lock_image=True, patch_dropout=0.5, grad_checkpointing=True)
    schedule = plan_schedule(recipe, train_samples=1000, world_size=2)
    assert schedule.epochs * schedule.steps_per_epoch >= 250
    assert schedule.total_steps - 250 < schedule.epochs
    args = open_clip_args(recipe, schedule, model="m", train_data="t", logs=tmp_path, name="r", world_size=2,
                          resume="latest", resampled=True)
    for flag in ("--local-loss", "--gather-with-grad", "--lock-image", "--grad-checkpointing",
                 "--dataset-resampled", "--force-patch-dropout"):
        assert flag in args
    assert args[args.index("--resume") + 1] == "latest"
    with pytest.raises(ValueError, match="empty"):
        plan_schedule(recipe, train_samples=0)


def test_log_lines_parse() -> None:
    step = parse_line(TRAIN_LINE)
    assert isinstance(step, StepRecord)
    assert (step.epoch, step.samples_in_epoch, step.samples_per_epoch) == (3, 128, 1280)
    assert step.loss == pytest.approx(3.9966) and step.samples_per_s == pytest.approx(214.186)
    metrics = parse_line(EVAL_LINE)
    assert metrics["image_to_text_R@5"] == pytest.approx(0.1389)
    assert parse_line("2026 | INFO | Start epoch 2") is None


# ---------------------------------------------------------------------------------------------- learning


def _evaluate(bundle: Path, learn_data: dict[str, Path]) -> dict[str, float]:
    loaded = load_model(bundle)
    classes = json.loads((learn_data["corpus"] / "classes.json").read_text())["modality"]
    labels = {}
    for line in (learn_data["corpus"] / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        labels[row["key"]] = row
    # held-out articles only (val + test, never trained on): ~430 single figures, so one sampling
    # error moves accuracy by ~0.2 points rather than ~0.9
    held_out = [(split, p) for split in ("val", "test") for p in read_shard_pairs(learn_data["shards"], split)
                if not labels[p.key]["compound"]]
    pairs = [p for _, p in held_out]
    runner = as_runner(loaded)
    images = runner.encode_images([p.image for p in pairs])
    # retrieval over the test split alone (~220 candidates per query, as the issue asks)
    test = [i for i, (split, _) in enumerate(held_out) if split == "test"]
    texts = runner.encode_texts([pairs[i].caption for i in test])
    metrics = retrieval_metrics(images[test], texts, list(range(len(test))))
    metrics["n_retrieval"] = len(test)
    truth = [classes["classes"].index(labels[p.key]["modality"]) for p in pairs]
    probs = runner.probabilities(images, runner.class_embeddings(classes["classes"], classes["templates"]))
    metrics["zero_shot_modality_accuracy"] = accuracy(probs, truth)
    metrics["n"] = len(pairs)
    metrics["chance_modality"] = 1 / len(classes["classes"])
    return metrics


def test_tiny_model_learns(trained_run: tuple[Path, dict], learn_data: dict[str, Path]) -> None:
    out, summary = trained_run
    assert summary["final_loss"] < summary["first_loss"] - 1.0
    trained = _evaluate(out / "bundle", learn_data)
    untrained = _evaluate(out / "init_bundle", learn_data)
    print({"trained": trained, "untrained": untrained})
    assert trained["n"] >= 300
    assert trained["chance_modality"] <= 0.2
    # Zero-shot modality (prompt ensemble from classes.json): the bar, ≥ 0.8 with chance ≤ 0.2,
    # and far above the same model untrained. Measured 0.897 and 0.894 (seeds 0, 1) at this budget.
    assert trained["zero_shot_modality_accuracy"] >= 0.8
    assert trained["zero_shot_modality_accuracy"] >= untrained["zero_shot_modality_accuracy"] + 0.4
    chance_r5 = 5 / trained["n_retrieval"]
    assert trained["image_to_text_R@5"] >= max(10 * chance_r5, untrained["image_to_text_R@5"] + 0.15)
    assert trained["image_to_text_median_rank"] <= trained["n_retrieval"] / 10
    # artefacts a user needs: CSV of steps, TensorBoard events, summary with validation metrics
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch") and len(rows) > 20
    assert summary["loss_plot"] == str(out / "loss.png") and (out / "loss.png").stat().st_size > 10_000
    assert list((out / "logs" / "train" / "tensorboard").glob("events.out.tfevents.*"))
    assert summary["val"]["image_to_text_R@5"] > 0


def test_refuses_to_overwrite_a_run(trained_run: tuple[Path, dict], learn_data: dict[str, Path]) -> None:
    out, _ = trained_run
    with pytest.raises(TrainError, match="--resume"):
        train(TrainConfig(data=learn_data["shards"], out=out, tokenizer=learn_data["tokenizer"]))
    with pytest.raises(TrainError, match="not a finished build folder"):
        train(TrainConfig(data=learn_data["corpus"], out=learn_data["root"] / "other"))


def test_resume_continues_from_saved_epoch(learn_data: dict[str, Path], tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "biomedclip.cli", "train", "--data", str(learn_data["shards"]),
           "--out", str(tmp_path / "run"), "--tokenizer", str(learn_data["tokenizer"]), "--batch-size", "32"]
    first = subprocess.run([*cmd, "--epochs", "1"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "Training run" in first.stdout
    second = subprocess.run([*cmd, "--epochs", "2", "--resume"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    log = (tmp_path / "run" / "logs" / "train" / "out.log").read_text()
    resumed = log[log.index("Found latest resume checkpoint"):]
    assert "Start epoch 1" in resumed and "Start epoch 0" not in resumed
    epochs = [step.epoch for step in read_log(tmp_path / "run" / "logs" / "train" / "out.log").steps]
    assert epochs.count(0) > 0 and epochs.count(1) > 0 and epochs == sorted(epochs)
    assert (tmp_path / "run" / "bundle" / "open_clip_model.safetensors").exists()


def test_ddp_two_processes_on_cpu(learn_data: dict[str, Path], tmp_path: Path) -> None:
    """torchrun, 2 CPU processes (gloo): both ranks join, gradients are averaged, the loss falls."""
    out = tmp_path / "ddp"
    summary = train(TrainConfig(data=learn_data["shards"], out=out, tokenizer=learn_data["tokenizer"], nproc=2,
                                recipe=Recipe(steps=80, batch_size=32, lr=5e-4, log_every_n_steps=5)))
    console_log = (out / "trainer.log").read_text()
    for rank in (0, 1):  # every rank announces itself (rank 0 in the run log, rank 1 on the console)
        assert f"Process (global: {rank}, local {rank}), total 2" in console_log + (
            out / "logs" / "train" / "out.log").read_text()
    plan = json.loads((out / "plan.json").read_text())
    assert plan["nproc"] == 2 and "--local-loss" in plan["argv"] and "--gather-with-grad" in plan["argv"]
    steps = read_log(out / "logs" / "train" / "out.log").steps
    # the global batch is 2 × 32: each logged step advances the epoch counter by 64 samples
    assert steps[1].samples_in_epoch - steps[0].samples_in_epoch == 64 * 5
    assert summary["final_loss"] < summary["first_loss"] - 0.5, (summary["first_loss"], summary["final_loss"])
    assert (out / "bundle" / "open_clip_model.safetensors").exists()


def test_train_help() -> None:
    result = subprocess.run([sys.executable, "-m", "biomedclip.cli", "train", "--help"], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0 and "--nproc" in result.stdout and "--resume" in result.stdout
