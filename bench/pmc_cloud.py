"""Benchmark of the PMC Cloud source; writes bench/results/pmc_cloud.json.

(a) Planning at bucket scale: a fake ``pmc-oa-opendata`` bucket whose S3 Inventory lists
    1,000,000 metadata rows (rows only; a sample of articles has content). Time and peak RSS of
    planning a build — find the newest complete snapshot, stream the gzipped CSVs, keep one
    version per PMCID, write the task list — in a fresh process. Targets: < 60 s, < 1 GB.
(b) End to end over loopback, 2 workers: 1,000 articles (plus their older versions, metadata/,
    inventory-reports/ and deprecated/ trees) → shards, through the PMC Cloud source and through a
    plain recursive fsspec walk of the same bucket (``--no-pmc-cloud``), in the same run.

The S3 server is moto's, in its own process (so it does not share the measured process's GIL);
objects are put straight into its store. Usage:
    python bench/pmc_cloud.py [--rows 1000000] [--articles 1000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUCKET = "pmc-oa-opendata"
SNAPSHOT = "2026-05-01T01-00Z"
RESULTS = REPO / "bench" / "results" / "pmc_cloud.json"


# --------------------------------------------------------------------------- the S3 server process


def _articles(count: int, start: int, image_size: tuple[int, int]) -> list[Any]:
    """``count`` articles with content: 1–3 figures each, one in five with an older version."""
    from biomedclip.data.pmc_cloud_fake import FakeArticle

    rng = random.Random(7)
    articles = []
    for i in range(count):
        pmc = start + i * 7
        figures = rng.choice((1, 2, 2, 3))
        if i % 5 == 0:
            articles.append(FakeArticle(pmc, 1, figures=figures, image_size=image_size))
            articles.append(FakeArticle(pmc, 2, figures=figures, image_size=image_size))
        else:
            articles.append(FakeArticle(pmc, 1, figures=figures, image_size=image_size))
    return articles


def _rows_only(count: int, start: int) -> Any:
    """Inventory rows of articles without content (the rest of a 1M-row inventory)."""
    rng = random.Random(11)
    pmc = start
    made = 0
    while made < count:
        pmc += rng.randint(1, 3)
        for version in range(1, (2 if rng.random() < 0.15 else 1) + 1):
            yield f"metadata/PMC{pmc}.{version}.json", "2026-04-20T03:12:45.000Z", f"{rng.getrandbits(128):032x}"
            made += 1


def serve(port: int, rows: int, articles: int, image: int) -> None:
    """Run moto on ``port`` with a fake bucket; print "ready" and serve until killed."""
    import logging

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import get_canned_acl, s3_backends
    from moto.server import ThreadedMotoServer

    from biomedclip.data.pmc_cloud_fake import bucket_objects, inventory_objects, inventory_rows

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def put(bucket: str, objects: dict[str, bytes]) -> None:
        for key, body in objects.items():
            backend.put_object(bucket, key, body).set_acl(get_canned_acl("public-read"))

    import boto3

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    # (a) the planning bucket: 1M inventory rows, a sample of 200 articles with content
    client.create_bucket(Bucket=BUCKET)
    sample = _articles(200, 10_000_000, (96, 80))
    put(BUCKET, bucket_objects(sample))

    def all_rows() -> Any:
        yield from inventory_rows(sample)
        yield from _rows_only(rows - len(sample), 12_000_000)

    put(BUCKET, inventory_objects(SNAPSHOT, all_rows(), files=8))
    # (b) the end-to-end bucket: every article has content
    client.create_bucket(Bucket="pmc-e2e")
    full = _articles(articles, 11_000_000, (image, image * 3 // 4))
    put("pmc-e2e", bucket_objects(full))
    put("pmc-e2e", inventory_objects(SNAPSHOT, inventory_rows(full), files=2))
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- measurements


def plan_only(endpoint: str, work: str) -> None:
    """In a fresh process: plan the 1M-row bucket; print seconds, peak RSS and the plan's numbers."""
    from biomedclip.data.pmc_cloud import PmcOptions, create_plan

    started = time.monotonic()
    plan = create_plan(f"s3://{BUCKET}/", PmcOptions(), {"endpoint_url": endpoint}, Path(work))
    seconds = time.monotonic() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(peak_kb / 1024, 1),
                      "inventory": plan.meta["inventory"], "plan": plan.meta["plan"],
                      "plan_requests": plan.meta["plan_requests"],
                      "plan_file_mb": round(Path(work, "pmc_plan.sqlite").stat().st_size / 2**20, 1)}))


def _build(endpoint: str, out: Path, mode: str, workers: int) -> dict[str, Any]:
    from biomedclip.data.pipeline import BuildConfig, build
    from biomedclip.data.pmc_cloud import PmcOptions

    started = time.monotonic()
    stats = build(BuildConfig(sources=["s3://pmc-e2e/"], out=out, workers=workers, splits={"train": 1.0},
                              storage_options={"endpoint_url": endpoint}, pmc=PmcOptions(mode=mode)))  # type: ignore[arg-type]
    seconds = time.monotonic() - started
    result = {
        "seconds": round(seconds, 2),
        "articles_processed": stats["articles"]["seen"],
        "articles_per_s": round(stats["articles"]["seen"] / seconds, 2),
        "pairs_kept": stats["figures"]["kept"],
        "pairs_per_s": round(stats["figures"]["kept"] / seconds, 2),
        "errors": stats["errors"],
    }
    if "pmc_cloud" in stats:
        info = stats["pmc_cloud"]
        result.update({k: info[k] for k in ("requests", "retries", "bytes", "requests_per_article",
                                            "bytes_per_article")})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--image", type=int, default=512, help="figure width in the end-to-end bucket (px)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="10,000 rows and 100 articles")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plan-only", nargs=2, metavar=("ENDPOINT", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.rows, args.articles, args.image)
        return
    if args.plan_only:
        plan_only(*args.plan_only)
        return
    if args.quick:
        args.rows, args.articles = 10_000, 100

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("AWS_ENDPOINT_URL", None)
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NO_PROXY")})
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--rows", str(args.rows),
                               "--articles", str(args.articles), "--image", str(args.image)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the S3 server did not start")
        setup_s = time.monotonic() - started
        print(f"server ready in {setup_s:.1f} s", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            planned = subprocess.run([sys.executable, __file__, "--plan-only", endpoint, tmp], env=env,
                                     capture_output=True, text=True, check=True)
            planning = json.loads(planned.stdout.strip().splitlines()[-1])
            print("planning", planning, flush=True)
            runs: dict[str, list[dict[str, Any]]] = {"pmc_cloud": [], "fsspec_walk": []}
            for repeat in range(2):  # alternate, so machine drift hits both
                for name, mode in (("pmc_cloud", "auto"), ("fsspec_walk", "off")):
                    out = Path(tmp) / f"{name}-{repeat}"
                    runs[name].append(_build(endpoint, out, mode, args.workers))
                    print(name, runs[name][-1], flush=True)
    finally:
        server.kill()
        server.wait()
    best = {name: max(r, key=lambda x: x["articles_per_s"]) for name, r in runs.items()}
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "planning": {
            "inventory_rows": args.rows,
            **planning,
            "target": {"seconds": 60, "peak_rss_mb": 1024},
            "met": planning["seconds"] < 60 and planning["peak_rss_mb"] < 1024,
        },
        "end_to_end": {
            "articles_with_content": args.articles,
            "workers": args.workers,
            "figure_px": [args.image, args.image * 3 // 4],
            "runs": runs,
            "best": best,
            "pmc_vs_walk_articles_per_s": round(best["pmc_cloud"]["articles_per_s"]
                                                / best["fsspec_walk"]["articles_per_s"], 3),
            "note": "the walk also builds every older version (duplicate pairs dropped by dedup) and lists "
                    "metadata/, inventory-reports/ and deprecated/; the PMC source builds one version per PMCID",
        },
    }
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
