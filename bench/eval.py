"""Evaluation time on PneumoniaMNIST: zero-shot + linear probe with the tiny model, cached vs uncached.

PneumoniaMNIST (MedMNIST v2, 28×28 chest X-rays; test = 624 images, train 3,882, val 524 in the
shared copy) is evaluated exactly as `biomedclip eval` does it: zero-shot on test (prompt
ensemble, 1000 bootstrap resamples) and the full linear probe (C chosen on val, k = 1…16 shots ×
3 seeds, label fractions 1/10/100%), then the report is written. Three scenarios, alternated in
every repeat so machine drift hits them equally:

* ``no_cache``   — cache disabled: each task embeds every split it needs (test twice);
* ``cold_cache`` — empty cache: test is embedded once and reused by the probe, train/val once;
* ``warm_cache`` — the features from an earlier run: nothing is embedded.

Model loading is timed separately (it is the same in every scenario). Run pinned to one core,
e.g. ``taskset -c 1 env OMP_NUM_THREADS=1 python bench/eval.py --model PATH``. The timing depends
on the architecture, not on the weights; ``--model`` defaults to a randomly initialised
``biomedclip-tiny`` when no trained bundle is given. Results: bench/results/eval.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from biomedclip.evaluate.cache import FeatureCache
from biomedclip.evaluate.datasets import load_classification
from biomedclip.evaluate.linear_probe import evaluate_linear_probe
from biomedclip.evaluate.report import package_versions, write_report
from biomedclip.evaluate.suite import model_info
from biomedclip.evaluate.taskfile import load_task
from biomedclip.evaluate.zeroshot import evaluate_zeroshot
from biomedclip.models.factory import load_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "realdata" / "labeled" / "pneumoniamnist.npz"


def one_run(loaded, data, task, cache: FeatureCache, out: Path, bootstrap: int) -> dict:
    """Zero-shot + linear probe + report; seconds per stage and the headline numbers."""
    t0 = time.perf_counter()
    zs = evaluate_zeroshot(loaded, data, task, cache=cache, n_bootstrap=bootstrap)
    t1 = time.perf_counter()
    lp = evaluate_linear_probe(loaded, data, task=task, cache=cache, n_bootstrap=bootstrap)
    t2 = time.perf_counter()
    write_report(out, [zs, lp], model=model_info(loaded, loaded.name), seed=0)
    t3 = time.perf_counter()
    return {"zeroshot_s": t1 - t0, "linear_probe_s": t2 - t1, "report_s": t3 - t2, "total_s": t3 - t0,
            "evaluate_s": t2 - t0, "cache_hits": {"zeroshot": zs.details["cache_hit"], **lp.details["cache_hit"]},
            "zeroshot": zs.metrics, "linear_probe": lp.metrics, "majority_accuracy": lp.details["majority_accuracy"],
            "kshot_accuracy": {r["k"]: r["accuracy_mean"] for r in lp.details["kshot"]["summary"]},
            "fraction_accuracy": {r["fraction"]: r["accuracy_mean"] for r in lp.details["fractions"]["summary"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="biomedclip-tiny", help="bundle / checkpoint / built-in name")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "eval.json")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found; pass --data pneumoniamnist.npz (MedMNIST v2)")

    t0 = time.perf_counter()
    loaded = load_model(args.model)
    load_s = time.perf_counter() - t0
    data = load_classification(args.data)
    task = load_task("pneumoniamnist")
    sizes = {name: len(part) for name, part in data.splits.items()}
    runs: dict[str, list[dict]] = {"no_cache": [], "cold_cache": [], "warm_cache": []}
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        work = Path(tmp)
        warm = FeatureCache(work / "warm")
        one_run(loaded, data, task, warm, work / "prime", args.bootstrap)  # fills the warm cache
        for r in range(args.repeats):
            for scenario in runs:
                cache = {"no_cache": FeatureCache(None), "cold_cache": FeatureCache(work / f"cold{r}"),
                         "warm_cache": warm}[scenario]
                result = one_run(loaded, data, task, cache, work / f"{scenario}{r}", args.bootstrap)
                runs[scenario].append(result)
                print(f"repeat {r} {scenario:>10}: zero-shot {result['zeroshot_s']:6.2f} s · linear probe "
                      f"{result['linear_probe_s']:6.2f} s · report {result['report_s']:5.2f} s", flush=True)

    def summary(rows: list[dict]) -> dict:
        keys = ("zeroshot_s", "linear_probe_s", "evaluate_s", "report_s", "total_s")
        return {**{f"{k}_median": round(statistics.median(r[k] for r in rows), 3) for k in keys},
                **{f"{k}_min": round(min(r[k] for r in rows), 3) for k in keys},
                **{f"{k}_all": [round(r[k], 3) for r in rows] for k in keys}, "cache_hits": rows[-1]["cache_hits"]}

    first = runs["no_cache"][0]
    result = {
        "what": "PneumoniaMNIST: zero-shot on test (624 images) + linear probe (train/val/test, k-shot 1-16 x 3 "
                "seeds, label fractions 1/10/100%), 1000-resample bootstrap CIs, report with plots",
        "machine": {"cpus_visible": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "packages": {k: v for k, v in package_versions().items() if k in ("torch", "open_clip_torch", "scikit-learn",
                                                                          "numpy")},
        "model": {"source": args.model, **{k: v for k, v in model_info(loaded, args.model).items()
                                           if k != "fingerprint"}},
        "data": {"path": str(args.data), "splits": sizes},
        "repeats": args.repeats, "bootstrap": args.bootstrap, "note": args.note,
        "model_load_s": round(load_s, 3),
        "scenarios": {name: summary(rows) for name, rows in runs.items()},
        "speedup_warm_vs_no_cache": round(statistics.median(r["evaluate_s"] for r in runs["no_cache"])
                                          / statistics.median(r["evaluate_s"] for r in runs["warm_cache"]), 2),
        "metrics": {k: runs["warm_cache"][-1][k] for k in ("zeroshot", "linear_probe", "majority_accuracy",
                                                          "kshot_accuracy", "fraction_accuracy")},
        "identical_metrics_across_scenarios": all(
            (r["zeroshot"], r["linear_probe"]) == (first["zeroshot"], first["linear_probe"])
            for rows in runs.values() for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("model_load_s", "speedup_warm_vs_no_cache")}, indent=2))
    for name, s in result["scenarios"].items():
        print(f"{name:>10}: evaluate {s['evaluate_s_median']:.2f} s (zero-shot {s['zeroshot_s_median']:.2f} s, "
              f"linear probe {s['linear_probe_s_median']:.2f} s), report {s['report_s_median']:.2f} s")
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
