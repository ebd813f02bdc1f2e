"""Training throughput of `biomedclip train` vs bare `python -m open_clip_train.main`.

Both train the same tiny bundle on the same shards with the same flags, in the same run,
alternating (A B A B …) so machine drift hits both equally. Reported: samples/s of each (median
of the logged steps after the first, which holds start-up), their ratio (target ≥ 0.95), and
peak RSS of each run's process tree. Results: bench/results/train.json.

Usage: python bench/train.py [--articles 600] [--steps 120] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from biomedclip.data.pipeline import BuildConfig, build
from biomedclip.models.factory import create_bundle
from biomedclip.models.runtime import resolve_device
from biomedclip.models.tokenizer import iter_captions, train_tokenizer
from biomedclip.synth import synthesize
from biomedclip.train.launch import shard_urls, split_shards
from biomedclip.train.monitor import read_log
from biomedclip.train.recipe import Recipe, open_clip_args, plan_schedule

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from measure import PeakRss  # noqa: E402


def run_measured(cmd: list[str]) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak summed RSS of its process tree)."""
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with PeakRss(proc) as rss:
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"{cmd[:4]} failed with {code}")
    return time.perf_counter() - start, rss.peak


def steady_rate(log: Path) -> float:
    rates = [s.samples_per_s for s in read_log(log).steps[1:]]
    return statistics.median(rates) if rates else float("nan")


def prepare(work: Path, articles: int) -> tuple[Path, Path]:
    """Synthetic corpus → shards → tokenizer → a fresh tiny bundle; returns (shards, bundle)."""
    synthesize(work / "corpus", articles, seed=0, workers=2)
    shards = work / "shards"
    build(BuildConfig(sources=[str(work / "corpus" / "folders"), str(work / "corpus" / "packages")],
                      out=shards, splits={"train": 0.9, "val": 0.05, "test": 0.05}, workers=2))
    train_tokenizer(iter_captions(shards, split="train"), 3000, work / "tok")
    return shards, create_bundle(work / "bundle", "biomedclip-tiny", tokenizer_dir=work / "tok")


def compare(work: Path, shards: Path, bundle: Path, *, steps: int, batch_size: int, repeats: int,
            device: str = "cpu") -> dict:
    """Alternate ``biomedclip train`` and bare ``open_clip_train`` runs with the same flags on ``device``."""
    resolved = resolve_device(device)
    recipe = Recipe(steps=steps, batch_size=batch_size, log_every_n_steps=5)
    train_files, n_train = split_shards(shards, "train")
    schedule = plan_schedule(recipe, n_train)
    ours, bare = [], []
    for r in range(repeats):
        run = work / f"ours{r}"
        cli = [sys.executable, "-m", "biomedclip.cli", "train", "--data", str(shards), "--out", str(run),
               "--model", f"local-dir:{bundle}", "--steps", str(steps), "--batch-size", str(batch_size),
               "--device", device]
        seconds, rss = run_measured(cli)
        ours.append({"seconds": seconds, "peak_rss_mb": rss / 2**20,
                     "samples_per_s": steady_rate(run / "logs" / "train" / "out.log")})
        flags = open_clip_args(recipe, schedule, model=f"local-dir:{bundle}", train_data=shard_urls(train_files),
                               logs=work / f"bare{r}", name="train", resampled=True, device=resolved)
        seconds, rss = run_measured([sys.executable, "-m", "open_clip_train.main", *flags])
        bare.append({"seconds": seconds, "peak_rss_mb": rss / 2**20,
                     "samples_per_s": steady_rate(work / f"bare{r}" / "train" / "out.log")})
    ours_rate = statistics.median(x["samples_per_s"] for x in ours)
    bare_rate = statistics.median(x["samples_per_s"] for x in bare)
    return {
        "model": "biomedclip-tiny", "train_samples": n_train, "steps": steps, "device": str(resolved),
        "batch_size": batch_size, "precision": recipe.resolved_precision(resolved),
        "note": "bare open_clip_train gets the same flags minus validation; ours also validates "
                "and exports the bundle (counted in seconds, not in samples/s)",
        "biomedclip_train": ours, "open_clip_train": bare,
        "samples_per_s_ratio": round(ours_rate / bare_rate, 3),
        "target": "ratio >= 0.95", "target_met": ours_rate / bare_rate >= 0.95,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=600)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (this bench's published numbers) or cuda")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        shards, bundle = prepare(work, args.articles)
        results = compare(work, shards, bundle, steps=args.steps, batch_size=args.batch_size, repeats=args.repeats,
                          device=args.device)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
