"""Human-readable view of a finished build: Rich tables and a caption-length histogram.

Reads only the build's documented outputs (stats.json, manifest.parquet), so it works on any
build folder, including one copied from another machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from biomedclip.data.build_folder import BuildFolder, NotABuildError

__all__ = ["NotABuildError", "caption_lengths", "load_stats", "plot_caption_histogram", "print_summary"]


def load_stats(folder: Path) -> dict[str, Any]:
    """stats.json of a build folder, with a clear error when it is not one."""
    return BuildFolder(folder, finished=True).stats()


def caption_lengths(folder: Path) -> np.ndarray:
    """Caption lengths in words, one per kept pair."""
    table = BuildFolder(folder, finished=True).manifest(columns=["caption"])
    return np.array([len(c.split()) for c in table.column("caption").to_pylist()], dtype=np.int64)


def plot_caption_histogram(lengths: np.ndarray, target: Path, title: str = "Caption length") -> Path:
    """Write a PNG histogram of caption lengths (words) with the median marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if lengths.size:
        bins = min(60, max(10, int(np.sqrt(lengths.size))))
        ax.hist(lengths, bins=bins, color="#3b7dd8", edgecolor="white")
        median = float(np.median(lengths))
        ax.axvline(median, color="#d8453b", linestyle="--", label=f"median {median:.0f} words")
        ax.legend()
    ax.set_xlabel("caption length (words)")
    ax.set_ylabel("figure–caption pairs")
    ax.set_title(f"{title} (n = {lengths.size})")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target


def _counts_table(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("reason")
    table.add_column("count", justify="right")
    for reason, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(reason, f"{count:,}")
    if not counts:
        table.add_row("—", "0")
    return table


def print_summary(stats: dict[str, Any], console: Console, lengths: np.ndarray | None = None,
                  max_errors: int = 10) -> None:
    """Print the build's counts, splits, drop/error reasons and a few error items."""
    arts, figs = stats["articles"], stats["figures"]
    overview = Table(title="Build", title_justify="left")
    overview.add_column("what")
    overview.add_column("count", justify="right")
    overview.add_row("articles seen", f"{arts['seen']:,}")
    overview.add_row("articles failed", f"{arts['failed']:,}")
    overview.add_row("articles without figures", f"{arts['without_figures']:,}")
    overview.add_row("figures found", f"{figs['found']:,}")
    overview.add_row("figure–caption pairs kept", f"[bold]{figs['kept']:,}[/bold]")
    overview.add_row("figures dropped by filters", f"{figs['dropped']:,}")
    overview.add_row("errors (items)", f"{stats['error_count']:,}")
    if lengths is not None and lengths.size:
        p = np.percentile(lengths, [50, 90, 99])
        overview.add_row("caption words p50 / p90 / p99", f"{p[0]:.0f} / {p[1]:.0f} / {p[2]:.0f}")
    overview.add_row("elapsed", f"{stats['elapsed_s']:.1f} s")
    console.print(overview)

    splits = Table(title="Splits (by article)", title_justify="left")
    for col in ("split", "articles", "pairs", "shards"):
        splits.add_column(col, justify="right" if col != "split" else "left")
    for name, info in stats["splits"].items():
        splits.add_row(name, f"{info['articles']:,}", f"{info['samples']:,}", str(len(info["shards"])))
    console.print(splits)
    console.print(_counts_table("Dropped by filters", stats["dropped"]))
    console.print(_counts_table("Errors", stats["errors"]))
    items = stats.get("error_items", [])
    if items:
        console.print(f"[bold]First {min(max_errors, len(items))} of {stats['error_count']:,} errors[/bold] "
                      "(all in errors.jsonl):")
        for item in items[:max_errors]:
            console.print(f"  [red]{item['reason']}[/red] {item['source']}: {item['detail']}", soft_wrap=True)
