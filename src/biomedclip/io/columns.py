"""Which CSV column holds what: one mapping for every stage that reads a user's table.

Evaluation datasets (``path,label[,split]``, ``path,caption``) and embed file lists
(``path[,caption]``) come as CSV files whose headers are whatever the user's hospital or lab
exported (``filename,diagnosis,fold``). :class:`CsvColumns` names the columns to use; a role left
unset falls back to the usual names (``path``/``image``/``file``/``filename``, ``label``/``labels``/
``class``, ``caption``/``text``/``report``, ``split``), so the defaults read the files they always
read. :func:`find_column` resolves one role against a header and, when it is missing, fails with a
message that names the CSV, the columns it does have and the flag that picks another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from biomedclip.errors import BiomedclipError

__all__ = ["DEFAULT_COLUMNS", "ColumnError", "CsvColumns", "find_column"]

DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "path": ("path", "image", "file", "filename"),
    "label": ("label", "labels", "class"),
    "caption": ("caption", "text", "report"),
    "split": ("split",),
}
_WHAT = {"path": "image path", "label": "label", "caption": "caption", "split": "split"}


class ColumnError(BiomedclipError, ValueError):
    """A CSV lacks a column it needs; the message names the file, its columns and the flag to use."""


@dataclass(frozen=True)
class CsvColumns:
    """Column names for each role (``None``: the usual names in :data:`DEFAULT_COLUMNS`)."""

    path: str | None = None
    label: str | None = None
    caption: str | None = None
    split: str | None = None

    def is_default(self) -> bool:
        return not any(asdict(self).values())

    def to_dict(self) -> dict[str, str]:
        """The roles that were set, as ``{"path_col": …}`` (suite-file keys and recorded settings)."""
        return {f"{role}_col": name for role, name in asdict(self).items() if name}

    def flags(self) -> list[str]:
        """The CLI flags that were set, e.g. ``["--label-col"]`` (for "only applies to CSV" messages)."""
        return [f"--{role}-col" for role, name in asdict(self).items() if name]


def find_column(header: Sequence[str], role: str, columns: CsvColumns | None, source: str | Path, *,
                required: bool = True, error: type[Exception] = ColumnError,
                candidates: Sequence[str] | None = None, kind: str = "CSV") -> str | None:
    """The header entry that plays ``role`` (path, label, caption or split), or None if optional and absent.

    A chosen name must be in the header (exactly, else ignoring case and surrounding spaces); without
    one the usual names (``candidates``, default :data:`DEFAULT_COLUMNS`) are tried in order.
    ``error`` is the exception raised when a required (or explicitly chosen) column is missing, so
    each stage keeps its own error type; ``kind`` names the table in the message (CSV, table).
    """
    chosen = getattr(columns, role) if columns is not None else None
    lowered = {str(h).strip().lower(): str(h) for h in header}
    has = ", ".join(repr(str(h)) for h in header) or "none"
    flag = f"--{role}-col"
    if chosen:
        if chosen in header:
            return chosen
        if chosen.strip().lower() in lowered:
            return lowered[chosen.strip().lower()]
        raise error(f"{source}: no column {chosen!r} ({flag}); the {kind} has columns {has}")
    names = tuple(candidates) if candidates is not None else DEFAULT_COLUMNS[role]
    for name in names:
        if name in lowered:
            return lowered[name]
    if not required:
        return None
    raise error(f"{source}: no {_WHAT[role]} column (looked for {', '.join(names)}); the {kind} has columns {has}: "
                f"name the one to use with {flag} COLUMN")
