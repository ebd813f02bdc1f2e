"""Wall time of the full `biomedclip demo`, per step, written to bench/results/demo.json.

Runs the real command (``biomedclip demo --out DIR``) in a subprocess, as `make demo` does after
installation, and records the per-step times from its ``summary.json`` with the headline numbers
(so a slow step and a model that stopped learning show up together). The issue's budget is
≤ 10 minutes on 2 CPU cores after installation.

Usage: python bench/demo.py [--out /tmp/demo_bench] [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/biomedclip_demo_bench"))
    parser.add_argument("--small", action="store_true", help="time the reduced run instead")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results" / "demo.json")
    args = parser.parse_args()
    exe = shutil.which("biomedclip", path=str(Path(sys.executable).parent)) or "biomedclip"
    cmd = [exe, "demo", "--out", str(args.out), *(["--small"] if args.small else [])]
    started = time.monotonic()
    subprocess.run(cmd, check=True, env={**os.environ, "COLUMNS": "160"})
    wall = time.monotonic() - started
    summary = json.loads((args.out / "summary.json").read_text())
    ev = summary["evaluation"]
    headline = {
        model: {
            "image_to_text_R@5": ev[model]["retrieval-test"]["metrics"]["image_to_text_R@5"],
            "text_to_image_R@5": ev[model]["retrieval-test"]["metrics"]["text_to_image_R@5"],
            "zero_shot_modality_accuracy": ev[model]["synthetic-modality"]["metrics"]["accuracy"],
            "zero_shot_finding_macro_auroc": ev[model]["synthetic-finding"]["metrics"]["macro_auroc"],
        }
        for model in ("trained", "untrained")
    }
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["biomedclip", *cmd[1:]]),
        "config": summary["config"],
        "seconds_per_step": summary["seconds"],
        "wall_seconds_with_process_start": round(wall, 1),
        "budget_seconds": BUDGET_S,
        "within_budget": summary["seconds"]["total"] <= BUDGET_S,
        "training_samples_per_s": summary["training"]["samples_per_s"],
        "headline": headline,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
