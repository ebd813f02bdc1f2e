"""CLI of the demo: ``biomedclip demo`` (registered by the top-level ``biomedclip.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from biomedclip.demo.run import DemoConfig
from biomedclip.options import DeviceOpt, PrecisionOpt, runtime_from_options
from biomedclip.ui import console

_FULL, _SMALL = DemoConfig(), DemoConfig.small()


def demo_command(
    out: Annotated[Path, typer.Option(help="Output folder (an earlier demo output there is replaced).")]
    = Path("demo_out"),
    articles: Annotated[int | None, typer.Option(min=50, help=f"Synthetic articles (default {_FULL.articles}; "
                                                             f"--small: {_SMALL.articles}).")] = None,
    steps: Annotated[int | None, typer.Option(min=10, help=f"Training steps (default {_FULL.steps}; "
                                                          f"--small: {_SMALL.steps}).")] = None,
    small: Annotated[bool, typer.Option(help="A reduced run (~3 min) for tests and a first look.")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes (0 = all cores).")] = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """The whole system on a synthetic PMC-style corpus, in one command (≈10 min on 2 CPU cores).

    Synthesise articles → build shards → train the domain tokenizer → pretrain biomedclip-tiny →
    evaluate on the held-out test split against the untrained model → embed, index and search →
    OUT/report.md. Every step prints the CLI command that repeats it.
    """
    from dataclasses import replace

    from biomedclip.demo.run import run_demo

    runtime_from_options(device, precision)  # a missing GPU fails before the demo touches --out
    config = DemoConfig.small(workers) if small else DemoConfig(workers=workers)
    config = replace(config, device=device, precision=precision)
    if articles:
        config = replace(config, articles=articles)
    if steps:
        config = replace(config, steps=steps)
    run_demo(out, config, console=console)

