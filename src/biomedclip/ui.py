"""Terminal output shared by the CLI and the demo: one console, one progress-bar style, one error handler.

Errors follow one convention (see docs/cli.md): an expected failure
(:class:`~biomedclip.errors.BiomedclipError`) is one ``error: <message>`` line on stderr and exit
status 2; Ctrl-C is one ``interrupted: …`` line and 130; anything else is a bug: one line naming
the exception and status 1, with the traceback only under ``--debug``. :func:`run_guarded` is
that handler and :class:`GuardedGroup` applies it to every command of the ``biomedclip`` app.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup
from typer.exceptions import TyperException

from biomedclip.errors import BiomedclipError

console = Console()
err_console = Console(stderr=True)
"""Errors and the interrupt notice: stderr, so ``--json`` output on stdout stays parseable, and
never silenced by ``--quiet``."""

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
DEBUG_ENV = "BIOMEDCLIP_DEBUG"


def progress_bar(target: Console | None = None, transient: bool = False) -> Progress:
    """A Rich progress bar with a free-text ``info`` field (counts, rates)."""
    return Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=target or console, transient=transient,
    )


@contextmanager
def build_progress(target: Console | None = None) -> Iterator[Callable]:
    """A progress callback for :func:`biomedclip.data.pipeline.build` that draws a live bar."""
    with progress_bar(target) as bar:
        task = bar.add_task("building", total=None, info="")

        def show(p) -> None:
            bar.update(task, completed=p.articles,
                       info=f"kept {p.kept:,} · dropped {p.dropped:,} · errors {p.errors:,}")

        yield show


@contextmanager
def count_progress(description: str, total: int, target: Console | None = None) -> Iterator[Callable[[int], None]]:
    """A ``progress(done)`` callback drawing a bar to ``total``."""
    with progress_bar(target) as bar:
        task = bar.add_task(description, total=total, info="")
        yield lambda done: bar.update(task, completed=done)


# -- one error handler for every command ------------------------------------------------------------

@dataclass
class CliSettings:
    """The global ``--debug`` / ``--quiet`` flags of the current invocation."""

    debug: bool = False
    quiet: bool = False


settings = CliSettings()


def configure(*, debug: bool = False, quiet: bool = False) -> None:
    """Apply the global flags; called by the app's callback at the start of every invocation.

    ``quiet`` silences the shared console (progress bars, tables, summaries); errors still reach
    stderr and ``--json`` output, written to stdout directly, is unaffected.
    """
    settings.debug = debug or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    settings.quiet = quiet
    console.quiet = quiet


def print_error(message: str, prefix: str = "error") -> None:
    """``prefix: message`` as one unwrapped line on stderr (the message is never read as markup)."""
    err_console.print(f"[bold red]{prefix}:[/bold red] {escape(message)}", soft_wrap=True, highlight=False)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C in a command that continues where it stopped when re-run; ``hint`` says how."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


RESUME_HINT = "re-run the same command with --resume to continue"
RERUN_HINT = "re-run the same command to continue where it stopped"


def resumable(hint: str = RESUME_HINT) -> Callable[[F], F]:
    """Mark a command whose interrupted run can be continued: Ctrl-C then prints ``hint``.

    Put it under the ``@app.command(...)`` decorator; the signature Typer reads is the command's own.
    """

    def mark(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except Interrupted:
                raise
            except KeyboardInterrupt as exc:
                raise Interrupted(hint) from exc

        return wrapper  # type: ignore[return-value]

    return mark


def run_guarded(call: Callable[[], T]) -> T:
    """Run ``call`` (a command) and turn what it raises into the CLI's one-line messages and exit codes.

    * :class:`BiomedclipError` → ``error: <message>``, exit :attr:`~BiomedclipError.exit_code` (2);
    * ``KeyboardInterrupt`` → ``interrupted`` (plus how to continue, for :func:`resumable` commands), 130;
    * Typer's own exceptions (usage errors, ``typer.Exit``) pass through to Typer, which prints them;
    * anything else is a bug → one line naming it and the ``--debug`` hint, exit 1; with ``--debug``
      (or ``BIOMEDCLIP_DEBUG=1``) it propagates with its full traceback.
    """
    try:
        return call()
    except (TyperException, typer.Exit, typer.Abort):  # usage errors and explicit exits: Typer prints them
        raise
    except BiomedclipError as exc:
        if settings.debug:
            raise
        print_error(str(exc) or type(exc).__name__)
        raise typer.Exit(exc.exit_code) from exc
    except KeyboardInterrupt as exc:
        if settings.debug:
            raise
        hint = exc.hint if isinstance(exc, Interrupted) else ""
        print_error(hint or "stopped by Ctrl-C", prefix="interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from exc
    except Exception as exc:
        if settings.debug:
            raise
        detail = " ".join(str(exc).split()) or "(no message)"
        print_error(f"unexpected {type(exc).__name__}: {detail} (a bug; re-run with --debug for the traceback)")
        raise typer.Exit(EXIT_BUG) from exc


class GuardedGroup(TyperGroup):
    """The top-level command group: every sub-command runs under :func:`run_guarded`.

    Guarding the group's ``invoke`` (not the console-script function) covers the installed
    ``biomedclip`` script, ``python -m biomedclip.cli`` and ``typer.testing.CliRunner`` alike, and
    includes option parsing of the sub-commands (their parameter callbacks may raise too). Typer
    (0.29) carries its own copy of click, so only its exception classes count here.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        return run_guarded(lambda: super(GuardedGroup, self).invoke(ctx))
