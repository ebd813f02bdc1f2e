"""`biomedclip demo`: the pipeline on the embedded synthetic corpus, one step after another.

Each step is the library call behind a CLI command, so the demo doubles as a worked example of
repeating every step on real PMC data (the commands are printed as it goes).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule


def run_demo(out: Path, *, articles: int = 2000, workers: int = 0, console: Console | None = None) -> dict:
    """Synthesise a corpus, build shards with all cores, print and plot the stats.

    Returns wall times per step (seconds). The output folder is replaced if it exists, so the demo
    can be rerun.
    """
    from biomedclip.data.executors import default_workers
    from biomedclip.data.pipeline import BuildConfig, build
    from biomedclip.data.summary import caption_lengths, plot_caption_histogram, print_summary
    from biomedclip.data.synthetic import synthesize
    from biomedclip.ui import build_progress, count_progress

    console = console or Console()
    workers = workers or default_workers()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    corpus, shards = out / "corpus", out / "shards"
    times: dict[str, float] = {}

    console.print(Rule(f"1. synthesise {articles} PMC-style articles"))
    console.print(f"[dim]$ biomedclip data synth {corpus} --articles {articles} --workers {workers}[/dim]")
    t0 = time.monotonic()
    with count_progress("synthesising", articles, console) as progress:
        summary = synthesize(corpus, articles, seed=0, workers=workers, progress=progress)
    times["synth"] = time.monotonic() - t0
    console.print(f"{summary.articles} articles ({summary.packages} .tar.gz packages), "
                  f"{summary.figures} figures in {times['synth']:.1f} s")

    console.print(Rule("2. build WebDataset shards"))
    sources = [str(corpus / "folders"), str(corpus / "packages")]
    splits = {"train": 0.8, "val": 0.1, "test": 0.1}
    console.print(f"[dim]$ biomedclip data build {' '.join(sources)} --out {shards} "
                  f"--splits train=0.8,val=0.1,test=0.1 --workers {workers}[/dim]")
    t0 = time.monotonic()
    with build_progress(console) as show:
        stats = build(BuildConfig(sources=sources, out=shards, splits=splits, workers=workers, shard_size=500),
                      progress=show)
    times["build"] = time.monotonic() - t0

    console.print(Rule("3. dataset statistics"))
    console.print(f"[dim]$ biomedclip data stats {shards}[/dim]")
    lengths = caption_lengths(shards)
    print_summary(stats, console, lengths)
    plot = plot_caption_histogram(lengths, shards / "caption_lengths.png")
    console.print(f"caption-length histogram: {plot}")
    console.print(Rule("done"))
    for step, seconds in times.items():
        console.print(f"{step:>8}: {seconds:6.1f} s")
    return times
