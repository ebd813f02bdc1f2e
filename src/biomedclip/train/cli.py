"""CLI for the training stage: ``biomedclip train``.

Registered by the top-level ``biomedclip.cli`` (``app.command("train")(train_command)``). The
live progress bar and the summary table live in :mod:`biomedclip.train.display`, which the demo
uses too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from biomedclip.models.names import check_model_option
from biomedclip.train.display import print_train_summary, run_training_with_progress
from biomedclip.train.recipe import Recipe
from biomedclip.ui import resumable


def _check_precision(value: str) -> str:
    """``--precision`` is checked while options are parsed: a typo fails before a run folder is made.

    open_clip_train would reject it too, but only after the model and data are prepared, and its
    argparse message would land in RUN/trainer.log.
    """
    from biomedclip.models.runtime import OPEN_CLIP_PRECISIONS, PRECISIONS, PrecisionError

    names = tuple(dict.fromkeys((*PRECISIONS, *OPEN_CLIP_PRECISIONS)))
    if value.strip().lower() not in names:
        raise PrecisionError(f"--precision {value!r}: choose one of {', '.join(names)}")
    return value


@resumable()


def train_command(
    data: Annotated[Path, typer.Option(help="Shard build folder (output of `data build`): train/ and val/ splits.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (logs, checkpoints, bundle, metrics.csv).")],
    model: Annotated[str, typer.Option(help="Built-in name (biomedclip-tiny, biomedclip-small, "
                                            "biomedclip-vit-b16-bert256), or a model to continue from: "
                                            "local-dir:BUNDLE, a run folder (RUN/bundle, else its newest "
                                            "checkpoint) or an epoch_N.pt checkpoint.",
                                       callback=check_model_option)]
    = "biomedclip-tiny",
    tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer folder for a built-in model "
                                                        "(from `biomedclip tokenizer train`).")] = None,
    text_init: Annotated[Path | None, typer.Option(help="Local HF BERT folder to initialise the text tower "
                                                        "(e.g. PubMedBERT), as in the paper.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training split.")] = Recipe.epochs,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps instead of --epochs.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Per-process batch size.")] = Recipe.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (the paper's).")] = Recipe.lr,
    warmup: Annotated[int, typer.Option(help="Warm-up steps (the paper's; capped at 10% of the run).")]
    = Recipe.warmup,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (the paper's).")] = Recipe.weight_decay,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto (CUDA if present, else CPU), cpu, cuda or "
                                                             "cuda:N; with --nproc N on CUDA, one GPU per process "
                                                             "(NCCL), on CPU gloo.")] = "auto",
    precision: Annotated[str, typer.Option(metavar="PRECISION", help="auto (GPU: bf16 autocast where supported, "
                                                                   "else fp16; CPU: bf16 where the CPU has native "
                                                                   "bf16, else fp32), fp32, bf16, fp16, or open_clip's "
                                                                   "amp, amp_bf16, pure_bf16 …",
                                           callback=_check_precision)] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="Data-loader workers per process.")] = Recipe.workers,
    grad_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory.")] = False,
    patch_dropout: Annotated[float, typer.Option(min=0.0, max=0.95, help="Drop this share of image patches.")] = 0.0,
    lock_image: Annotated[bool, typer.Option(help="Freeze the image tower (LiT).")] = False,
    lock_text: Annotated[bool, typer.Option(help="Freeze the text tower.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = Recipe.seed,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its latest checkpoint (written "
                                              "at the end of each epoch; before the first, it starts again).")]
    = False,
    allow_tiny_data: Annotated[bool, typer.Option("--allow-tiny-data", help="Train even when the train split "
                                                  "holds fewer pairs than one batch (refused otherwise).")]
    = False,
    nproc: Annotated[int, typer.Option(min=1, help="Processes (torchrun, gloo on CPU / nccl on GPU).")] = 1,
    torchrun_arg: Annotated[list[str], typer.Option(
        help="Passed to torchrun, repeatable: --torchrun-arg=--nnodes=2 --torchrun-arg=--node-rank=0 "
             "--torchrun-arg=--master-addr=HOST.")] = [],  # noqa: B006
) -> None:
    """Pretrain with the BiomedCLIP recipe (open_clip_train on our shards); export RUN/bundle."""
    from biomedclip.train.launch import TrainConfig

    recipe = Recipe(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup,
                    weight_decay=weight_decay, precision=precision, workers=workers,
                    grad_checkpointing=grad_checkpointing, patch_dropout=patch_dropout, lock_image=lock_image,
                    lock_text=lock_text, seed=seed)
    config = TrainConfig(data=data, out=out, model=model, recipe=recipe, tokenizer=tokenizer, text_init=text_init,
                         nproc=nproc, torchrun_args=list(torchrun_arg), resume=resume, device=device,
                         allow_tiny_data=allow_tiny_data)
    print_train_summary(run_training_with_progress(config))
