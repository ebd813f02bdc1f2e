"""Benchmark of the data stage; writes bench/results/extract.json.

(a) Figure extraction from JATS: our parser vs ``pubmed_parser.parse_pubmed_caption`` on the same
    files in the same run (real PMC nxml from ../shared/realdata plus synthetic articles):
    figures/s and recall of captioned figures.
(b) End-to-end article → shard throughput (images/s, both cores) vs the anchor: the raw rate of
    Pillow decode + RGB + JPEG re-encode of the same image bytes, held in memory, measured in the
    same run on one core and on both.
(c) Peak RSS (driver + workers) of a large synthetic build, to show memory stays bounded.

Usage: python bench/extract.py [--articles 2000] [--memory-articles 10000] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import psutil
from PIL import Image

from biomedclip.data.images import resolve_graphic
from biomedclip.data.pipeline import BuildConfig, build
from biomedclip.synth import synthesize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_captions import run_caption_benchmark  # noqa: E402
from measure import PeakRss  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif")


def corpus_images(corpus: Path) -> list[bytes]:
    """The image bytes the build will decode: for every figure graphic, the file it resolves to."""
    images: list[bytes] = []
    for nxml in sorted((corpus / "folders").rglob("*.nxml")):
        names = [p.name for p in nxml.parent.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        for href in _hrefs(nxml.read_bytes()):
            name = resolve_graphic(href, names)
            if name:
                images.append((nxml.parent / name).read_bytes())
    for package in sorted((corpus / "packages").glob("*.tar.gz")):
        with tarfile.open(package) as tar:
            files = {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        xml = next((v for k, v in files.items() if k.endswith(".nxml")), b"")
        for href in _hrefs(xml):
            name = resolve_graphic(href, [n for n in files if n.lower().endswith(IMAGE_SUFFIXES)])
            if name:
                images.append(files[name])
    return images


def _hrefs(xml: bytes) -> list[str]:
    from lxml import etree

    try:
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError:
        return []
    return [el.get("{http://www.w3.org/1999/xlink}href") for el in root.iter("{*}graphic", "graphic")
            if el.get("{http://www.w3.org/1999/xlink}href")]


def _raw_decode_encode(blobs: list[bytes]) -> int:
    """The anchor: plain Pillow open + RGB + JPEG encode, no resizing, hashing or writing."""
    done = 0
    for blob in blobs:
        try:
            with Image.open(io.BytesIO(blob)) as im:
                rgb = im.convert("RGB")
                rgb.save(io.BytesIO(), "JPEG", quality=90)
            done += 1
        except Exception:  # broken items of the corpus: the pipeline skips them too
            pass
    return done


def raw_rate(blobs: list[bytes], processes: int) -> float:
    if processes == 1:
        start = time.perf_counter()
        done = _raw_decode_encode(blobs)
        return done / (time.perf_counter() - start)
    chunks = [blobs[i::processes] for i in range(processes)]
    # spawn, not forkserver: the forkserver (and what it preloads) is left for the build to start
    with get_context("spawn").Pool(processes) as pool:
        pool.map(_raw_decode_encode, [blobs[:4]] * processes)  # warm: start-up is not decode time
        start = time.perf_counter()
        done = sum(pool.map(_raw_decode_encode, chunks))
        return done / (time.perf_counter() - start)


def end_to_end(corpus: Path, work: Path, workers: int, rounds: int) -> dict:
    """Pipeline vs anchor, measured in interleaved rounds; medians (a shared machine drifts)."""
    blobs = corpus_images(corpus)
    raw1, raw2, rates, seconds = [], [], [], []
    for r in range(rounds):
        raw1.append(raw_rate(blobs, 1))
        raw2.append(raw_rate(blobs, workers))
        out = work / f"shards-{workers}-{r}"
        start = time.perf_counter()
        stats = build(BuildConfig(sources=[str(corpus / "folders"), str(corpus / "packages")], out=out,
                                  workers=workers, splits={"train": 0.9, "val": 0.05, "test": 0.05}))
        seconds.append(time.perf_counter() - start)
        rates.append((stats["figures"]["kept"] + stats["figures"]["dropped"]) / seconds[-1])
        shutil.rmtree(out)
    rate, anchor1, anchor2 = statistics.median(rates), statistics.median(raw1), statistics.median(raw2)
    return {
        "articles": stats["articles"]["seen"],
        "images_in_corpus": len(blobs),
        "figures_kept": stats["figures"]["kept"],
        "rounds": rounds,
        "build_seconds": [round(x, 2) for x in seconds],
        "pipeline_images_per_s": round(rate, 1),
        "raw_decode_encode_images_per_s_1core": round(anchor1, 1),
        f"raw_decode_encode_images_per_s_{workers}cores": round(anchor2, 1),
        "samples_images_per_s": {"pipeline": [round(x, 1) for x in rates], "raw_1core": [round(x, 1) for x in raw1],
                                 f"raw_{workers}cores": [round(x, 1) for x in raw2]},
        "ratio_vs_raw_1core": round(rate / anchor1, 3),
        f"ratio_vs_raw_{workers}cores": round(rate / anchor2, 3),
        "target": f"pipeline on {workers} cores >= 0.5 x raw decode+encode on {workers} cores (medians)",
        "target_met": rate >= 0.5 * anchor2,
    }


def memory(corpus: Path, work: Path, workers: int) -> dict:
    out = work / "shards-memory"
    with PeakRss() as rss:
        start = time.perf_counter()
        stats = build(BuildConfig(sources=[str(corpus / "folders"), str(corpus / "packages")], out=out,
                                  workers=workers))
        seconds = time.perf_counter() - start
    return {
        "articles": stats["articles"]["seen"],
        "figures_kept": stats["figures"]["kept"],
        "build_seconds": round(seconds, 1),
        "peak_rss_mb_driver_plus_workers": round(rss.peak / 2**20, 1),
        "target": "peak RSS < 1024 MB",
        "target_met": rss.peak < 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=2000, help="synthetic articles for (a) and (b)")
    parser.add_argument("--memory-articles", type=int, default=10_000, help="synthetic articles for (c)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=768,
                        help="long side of synthetic figures (PMC figures are mostly larger than 512 px)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved anchor/pipeline rounds for (b)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "extract.json")
    args = parser.parse_args()
    if args.quick:
        args.articles, args.memory_articles = 200, 400

    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        corpus = work / "corpus"
        t0 = time.perf_counter()
        synthesize(corpus, args.articles, seed=0, workers=args.workers, image_size=args.image_size)
        synth_seconds = time.perf_counter() - t0
        real = sorted((REALDATA / "jats" / "nxml").glob("*.nxml")) if REALDATA.exists() else []
        synthetic_xml = sorted((corpus / "folders").rglob("*.nxml"))
        results = {
            "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
            "synthesis": {"articles": args.articles, "image_size": args.image_size,
                          "seconds": round(synth_seconds, 1)},
            "captions_real_nxml": run_caption_benchmark(real, repeats=20) if real else "realdata absent",
            "captions_synthetic_nxml": run_caption_benchmark(synthetic_xml, repeats=5),
            "end_to_end": end_to_end(corpus, work, args.workers, args.rounds),
        }
        mem_corpus = work / "corpus-memory"
        synthesize(mem_corpus, args.memory_articles, seed=1, workers=args.workers)
        results["memory"] = memory(mem_corpus, work, args.workers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
