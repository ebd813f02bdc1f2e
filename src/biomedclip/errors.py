"""The one base class of the project's *expected* failures.

A missing file, a bad option value, an unavailable device or a model that cannot be found are
the user's to fix, not bugs: every such error subclasses :class:`BiomedclipError`, and the CLI's
single handler (:func:`biomedclip.ui.run_guarded`) prints its message in one line and exits 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BiomedclipError(Exception):
    """An expected failure whose message tells the user what went wrong and what to do.

    The CLI prints ``error: <message>`` and exits with :attr:`exit_code` (2 = usage/input error).
    """

    exit_code: int = 2


class OutputExistsError(BiomedclipError, FileExistsError):
    """An output folder already holds something the command will not replace without being told.

    Still a :class:`FileExistsError`, so library callers that caught that keep working.
    """
