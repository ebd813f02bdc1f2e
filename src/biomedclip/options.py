"""CLI options shared by every command that runs a model, written once.

``--device`` and ``--precision`` mean the same everywhere (the rules are
:mod:`biomedclip.models.runtime`'s); commands resolve them with :func:`runtime_from_options`
*before* loading a model, so ``--device cuda`` on a machine without a GPU fails at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from biomedclip.models.runtime import DEVICE_HELP, PRECISION_HELP

if TYPE_CHECKING:
    from biomedclip.models.runtime import Runtime

DeviceOpt = Annotated[str, typer.Option("--device", metavar="DEVICE", help=DEVICE_HELP)]
PrecisionOpt = Annotated[str, typer.Option("--precision", metavar="PRECISION", help=PRECISION_HELP)]
Fp32Opt = Annotated[bool, typer.Option("--fp32", hidden=True, help="Same as --precision fp32 (kept for scripts).")]


def runtime_from_options(device: str, precision: str, fp32: bool = False) -> Runtime:
    """The checked runtime for a command's ``--device``/``--precision`` (``--fp32`` wins)."""
    from biomedclip.models.runtime import Runtime

    return Runtime.resolve(device, "fp32" if fp32 else precision)
