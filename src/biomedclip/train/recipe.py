"""The BiomedCLIP pretraining recipe as settings, and their translation to ``open_clip_train`` flags.

Defaults follow the paper (Zhang et al., "BiomedCLIP", arXiv:2303.00915): AdamW with
β = (0.9, 0.98), ε = 1e-6, weight decay 0.2, peak learning rate 5e-4 with a cosine schedule and
2,000 warm-up steps, RandomResizedCrop scale (0.9, 1.0). Short runs cap the warm-up at 10% of
all steps, otherwise a few-hundred-step run would spend its whole life warming up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from biomedclip.models.runtime import train_precision

if TYPE_CHECKING:
    import torch

PAPER_WARMUP_STEPS = 2000
WARMUP_CAP_FRACTION = 0.1
MIN_STEPS_PER_EPOCH = 200


@dataclass
class Recipe:
    """Optimisation and augmentation settings of one training run."""

    epochs: int = 1
    steps: int | None = None  # when set, overrides epochs: train this many optimizer steps
    batch_size: int = 64
    lr: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    weight_decay: float = 0.2
    warmup: int = PAPER_WARMUP_STEPS
    crop_scale: tuple[float, float] = (0.9, 1.0)
    precision: str = "auto"  # auto → the runtime's rule: amp_bf16 / amp on GPUs, amp_bf16 on bf16 CPUs, else fp32
    workers: int = 1
    grad_checkpointing: bool = False
    patch_dropout: float = 0.0
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0
    seed: int = 0
    save_frequency: int = 1
    log_every_n_steps: int = 10
    extra_args: list[str] = field(default_factory=list)

    def resolved_precision(self, device: torch.device) -> str:
        """open_clip_train's ``--precision`` for this run on ``device`` (see ``runtime.train_precision``)."""
        return train_precision(device, self.precision)


@dataclass(frozen=True)
class Schedule:
    """Epochs, samples per epoch and warm-up actually used (what the paper's numbers become here)."""

    epochs: int
    samples_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup: int


def plan_schedule(recipe: Recipe, train_samples: int, world_size: int = 1) -> Schedule:
    """Turn (epochs | steps, batch size, data size) into open_clip's epochs × samples-per-epoch.

    open_clip_train counts epochs over ``--train-num-samples``; a step budget is expressed as
    equal epochs adding up to ``steps`` batches, so the cosine schedule ends where the user asked.
    With resampled shards an "epoch" may be longer than the data; epochs of a budget are at least
    ``MIN_STEPS_PER_EPOCH`` steps, because every epoch costs a validation pass and a checkpoint.
    """
    if train_samples < 1:
        raise ValueError("the training split is empty: build shards with a non-zero train share")
    global_batch = recipe.batch_size * world_size
    if recipe.steps is not None:
        data_steps = max(1, math.ceil(train_samples / global_batch))
        steps_per_epoch = max(data_steps, min(recipe.steps, MIN_STEPS_PER_EPOCH))
        epochs = max(1, math.ceil(recipe.steps / steps_per_epoch))
        steps_per_epoch = math.ceil(recipe.steps / epochs)
        samples_per_epoch = steps_per_epoch * global_batch
    else:
        epochs = recipe.epochs
        samples_per_epoch = train_samples
        steps_per_epoch = max(1, math.ceil(train_samples / global_batch))
    total = epochs * steps_per_epoch
    warmup = min(recipe.warmup, max(1, int(WARMUP_CAP_FRACTION * total)))
    return Schedule(epochs, samples_per_epoch, steps_per_epoch, total, warmup)


def open_clip_args(
    recipe: Recipe,
    schedule: Schedule,
    *,
    model: str,
    train_data: str,
    logs: Path,
    name: str,
    val_data: str | None = None,
    val_samples: int = 0,
    resampled: bool = False,
    world_size: int = 1,
    resume: str | None = None,
    device: torch.device | None = None,
) -> list[str]:
    """The ``open_clip_train.main`` argument list for this run.

    ``device``: CPU → ``--device cpu`` with gloo; CUDA → ``--device cuda`` with NCCL, and with
    several processes open_clip_train puts each rank on ``cuda:LOCAL_RANK`` (one GPU per process);
    a single process keeps the GPU index asked for (``cuda:1``).
    """
    import torch

    device = device if device is not None else torch.device("cpu")
    if device.type == "cuda":
        device_arg = "cuda" if world_size > 1 or device.index is None else f"cuda:{device.index}"
        backend = "nccl"
    else:
        device_arg, backend = device.type, "gloo"
    args = [
        "--model", model,
        "--train-data", train_data,
        "--train-num-samples", str(schedule.samples_per_epoch),
        "--dataset-type", "webdataset",
        "--batch-size", str(recipe.batch_size),
        "--epochs", str(schedule.epochs),
        "--lr", str(recipe.lr),
        "--beta1", str(recipe.beta1),
        "--beta2", str(recipe.beta2),
        "--eps", str(recipe.eps),
        "--wd", str(recipe.weight_decay),
        "--warmup", str(schedule.warmup),
        "--lr-scheduler", "cosine",
        "--precision", recipe.resolved_precision(device),
        "--workers", str(recipe.workers),
        "--device", device_arg,
        "--dist-backend", backend,
        "--logs", str(logs),
        "--name", name,
        "--aug-cfg", f"scale=({recipe.crop_scale[0]}, {recipe.crop_scale[1]})",
        "--report-to", "tensorboard",
        "--save-frequency", str(recipe.save_frequency),
        "--save-most-recent",
        "--log-every-n-steps", str(recipe.log_every_n_steps),
        "--seed", str(recipe.seed),
    ]
    if val_data and val_samples:
        args += ["--val-data", val_data, "--val-num-samples", str(val_samples), "--val-frequency", "1"]
    if resampled:
        args.append("--dataset-resampled")
    if world_size > 1:
        # Each rank computes the loss on its own batch against all gathered features, with
        # gradients flowing through the gather: the memory-efficient exact CLIP loss.
        args += ["--local-loss", "--gather-with-grad"]
    if recipe.grad_checkpointing:
        args.append("--grad-checkpointing")
    if recipe.patch_dropout:
        args += ["--force-patch-dropout", str(recipe.patch_dropout)]
    if recipe.lock_image:
        args += ["--lock-image", "--lock-image-unlocked-groups", str(recipe.lock_image_unlocked_groups)]
    if recipe.lock_text:
        args += ["--lock-text", "--lock-text-unlocked-layers", str(recipe.lock_text_unlocked_layers)]
    if resume:
        args += ["--resume", resume]
    return args + list(recipe.extra_args)
