"""GPU benchmark: `biomedclip embed` and `biomedclip train` on CUDA against plain open_clip on the same GPU.

* embed: images/s of `biomedclip embed` (DataLoader decoding workers, pinned memory, batch 256,
  one bf16/fp16 autocast region — the runtime's `auto`) with the official architecture
  (`biomedclip-vit-b16-bert256`, random weights, seed 0) vs the loop a user writes with open_clip:
  PIL + preprocess + `encode_image` in fp32, batch 32, `torch.no_grad`, on the same GPU. Target
  ≥ 3×; the minimum cosine between the two sets of embeddings must be ≥ 0.998.
* train: samples/s of `biomedclip train --device cuda` vs bare `open_clip_train` with the same flags
  (bench/train.py's comparison, run on the GPU). Target ≥ 0.95×.

Both are measured in the same run (anchors and ours alternate). Without a CUDA GPU the script
says so and exits 0 without touching bench/results/gpu.json.

Usage: python bench/gpu.py [--images 2048] [--repeats 2] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from embed import MODEL, make_images, ours, plain_loop  # noqa: E402
from train import compare, prepare  # noqa: E402


def embed_comparison(work: Path, count: int, repeats: int) -> dict:
    from biomedclip.models.factory import load_model
    from biomedclip.models.runtime import Runtime

    folder = make_images(work, count)
    paths = sorted(folder.glob("*.jpg"))
    loaded = load_model(MODEL, seed=0)
    runtime = Runtime.resolve("cuda")
    plain_loop(loaded, paths[:64], device="cuda")  # warm-up: kernels, allocator
    ours(loaded, folder, work / "warm", device="cuda")
    runs: dict[str, list[float]] = {"plain_fp32": [], "ours": []}
    vectors: dict[str, np.ndarray] = {}
    for repeat in range(repeats):
        for name in runs:
            if name == "plain_fp32":
                vecs, seconds = plain_loop(loaded, paths, device="cuda")
            else:
                vecs, seconds = ours(loaded, folder, work / "emb", device="cuda")
            runs[name].append(seconds)
            vectors[name] = vecs
            print(f"repeat {repeat}: {name:10s} {len(paths) / seconds:8.1f} images/s", flush=True)
    rate = {name: len(paths) / min(seconds) for name, seconds in runs.items()}
    cos = (vectors["ours"] * vectors["plain_fp32"]).sum(axis=1)
    ratio = rate["ours"] / rate["plain_fp32"]
    return {
        "model": f"{MODEL} (official architecture, random weights, seed 0)", "images": len(paths),
        "plain_fp32": {"batch_size": 32, "images_per_s": round(rate["plain_fp32"], 1),
                       "seconds": [round(s, 3) for s in runs["plain_fp32"]]},
        "ours": {**runtime.describe(), "batch_size": runtime.batch_size("image"),
                 "images_per_s": round(rate["ours"], 1), "seconds": [round(s, 3) for s in runs["ours"]]},
        "ratio_ours_vs_plain": round(ratio, 3),
        "cosine_vs_plain_fp32": {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)},
        "target": "ratio >= 3 and min cosine >= 0.998", "target_met": bool(ratio >= 3 and cos.min() >= 0.998),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--articles", type=int, default=600)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured, "
              f"{args.out} left as it is")
        return
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        embed = embed_comparison(work / "embed", args.images, args.repeats)
        shards, bundle = prepare(work / "train", args.articles)
        train = compare(work / "train", shards, bundle, steps=args.steps, batch_size=args.batch_size,
                        repeats=args.repeats, device="cuda")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "machine": {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
                    "bf16": torch.cuda.is_bf16_supported(), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "python": platform.python_version()},
        "embed": embed, "train": train, "wall_seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
