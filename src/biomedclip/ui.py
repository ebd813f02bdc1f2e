"""Terminal output shared by the CLI and the demo: one console, one progress-bar style."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console()


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
