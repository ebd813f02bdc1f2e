"""The CLI face of how user files are read: --window, --slice, --axis and the --*-col flags, written once.

Every command that reads user images (``embed``, ``search --image``, ``classify``, ``eval zeroshot``,
``eval linear-probe``) takes the same three flags with the same help and turns them into one
:class:`ReadOptions` with :func:`read_options`; the libraries take that object, never the trio.
Commands that read CSV tables take ``--path-col``/``--label-col``/``--caption-col``/``--split-col``
(those that apply) and pass one :class:`~biomedclip.io.columns.CsvColumns`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from biomedclip.io.columns import CsvColumns
from biomedclip.io.medical import ReadOptions, parse_window

__all__ = ["AxisOpt", "CaptionColOpt", "LabelColOpt", "PathColOpt", "SliceOpt", "SplitColOpt", "WindowOpt",
           "csv_columns", "read_options"]

WindowOpt = Annotated[str | None, typer.Option(
    "--window", help="DICOM/NIfTI/16-bit display window CENTER,WIDTH in the image's units (e.g. 40,400 for CT "
                     "soft tissue); default: the file's own window, else min-max.")]
SliceOpt = Annotated[int | None, typer.Option(
    "--slice", help="Frame of a multi-frame DICOM/TIFF or slice of a NIfTI volume (default: the middle slice; "
                    "a TIFF's first frame).")]
AxisOpt = Annotated[int, typer.Option(
    "--axis", help="NIfTI slicing axis in RAS orientation: 2 (or -1) axial, 1 coronal, 0 sagittal.")]


def read_options(window: str | None, slice_index: int | None = None, axis: int = -1) -> ReadOptions:
    """The :class:`ReadOptions` for a command's flags; a malformed ``--window`` is a usage error."""
    try:
        parsed = parse_window(window)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--window") from exc
    return ReadOptions(window=parsed, slice_index=slice_index, axis=axis)


# -- CSV column mapping (eval datasets, embed file lists) ------------------------------------------------

PathColOpt = Annotated[str | None, typer.Option(
    "--path-col", metavar="COLUMN", help="CSV column with the image paths (default: path, image, file or "
                                         "filename).")]
LabelColOpt = Annotated[str | None, typer.Option(
    "--label-col", metavar="COLUMN", help="CSV column with the labels (default: label, labels or class).")]
CaptionColOpt = Annotated[str | None, typer.Option(
    "--caption-col", metavar="COLUMN", help="CSV column with the captions (default: caption, text or report).")]
SplitColOpt = Annotated[str | None, typer.Option(
    "--split-col", metavar="COLUMN", help="CSV column naming each row's split, train/val/test (default: split, "
                                          "if present).")]


def csv_columns(path: str | None = None, label: str | None = None, caption: str | None = None,
                split: str | None = None) -> CsvColumns:
    """The :class:`~biomedclip.io.columns.CsvColumns` for a command's ``--*-col`` flags."""
    return CsvColumns(path=path, label=label, caption=caption, split=split)
