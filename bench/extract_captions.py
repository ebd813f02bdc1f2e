"""Caption extraction: our JATS parser against ``pubmed_parser.parse_pubmed_caption``.

Both run on the same ``.nxml`` files in the same process and run. Two questions:

* speed: figures per second for a whole pass over the files (reading included: pubmed_parser
  takes a path, we take bytes), best and median of ``repeats`` interleaved passes. "ours" reads
  what parse_pubmed_caption returns (figures, captions, graphics, article ids: the default of
  ``biomedclip data captions``); "ours_full_article" also reads the metadata, licence and citing
  sentences, as the data build does;
* recall: of the captioned ``<fig>`` elements present (counted here with plain lxml, independently
  of both tools), how many does each tool return with a non-empty caption (``recall``), and how
  many with every word of the caption (``complete_caption_recall``: a dropped paragraph or a lost
  nested element shows up here). A file a tool fails on counts as zero for that tool.

Usage: ``python bench/extract_captions.py [--synthetic DIR] [--repeats N]`` prints JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from biomedclip.data.jats import JatsError, parse_article

try:  # optional: the benchmark still reports our numbers without it
    from pubmed_parser import parse_pubmed_caption
except ImportError:  # pragma: no cover - depends on the environment
    parse_pubmed_caption = None

_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
# Text an extractor is right to leave out: TeX duplicates of MathML, MathML annotations.
_NOT_CAPTION_TEXT = ("{*}tex-math", "{*}annotation", "{*}annotation-xml")


@dataclass
class _Truth:
    """One captioned figure as counted independently: id (may be None), position, caption words."""

    fig_id: str | None
    index: int
    words: list[str]


# A tool's answer for one file: figure id -> caption, plus the captions in document order.
_Answer = tuple[dict[str, str], list[str]]


def _caption_words(caption: etree._Element) -> list[str]:
    """Words of a caption, each text node split on its own (no claim about inline joins)."""
    caption = copy.deepcopy(caption)
    for el in list(caption.iter(*_NOT_CAPTION_TEXT)):
        parent = el.getparent()
        if parent is not None:
            tail = el.tail or ""
            prev = el.getprevious()
            if prev is not None:
                prev.tail = (prev.tail or "") + tail
            else:
                parent.text = (parent.text or "") + tail
            parent.remove(el)
    return " ".join(caption.itertext()).split()


def captioned_figures(path: Path) -> list[_Truth]:
    """Every ``<fig>`` (any namespace) whose own ``<caption>`` has text."""
    try:
        root = etree.parse(str(path), _SAFE_PARSER).getroot()
    except (etree.XMLSyntaxError, OSError):
        return []
    found = []
    for index, fig in enumerate(root.iter("{*}fig")):
        caption = fig.find("{*}caption")
        words = _caption_words(caption) if caption is not None else []
        if words:
            found.append(_Truth(fig.get("id"), index, words))
    return found


def _ours(path: Path) -> _Answer | None:
    """Like for like with parse_pubmed_caption: figures, captions, graphics and article ids
    (what ``biomedclip data captions`` reads by default)."""
    return _ours_with(path, metadata=False, citing_sentences=False)


def _ours_full_article(path: Path) -> _Answer | None:
    """Everything the data build reads as well: metadata, licence, citing sentences."""
    return _ours_with(path, metadata=True, citing_sentences=True)


def _ours_with(path: Path, **what: bool) -> _Answer | None:
    try:
        article = parse_article(path.read_bytes(), str(path), **what)
    except (JatsError, OSError):
        return None
    captions = [f.caption for f in article.figures]
    return {f.fig_id: f.caption for f in article.figures}, captions


def _pubmed_parser(path: Path) -> _Answer | None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            rows = parse_pubmed_caption(str(path)) or []
    except Exception:  # any failure of the anchor counts as a miss, never a crash
        return None
    captions = [row.get("fig_caption") or "" for row in rows]
    return {str(row.get("fig_id")): c for row, c in zip(rows, captions, strict=True)}, captions


def _lookup(answer: _Answer, truth: _Truth) -> str:
    by_id, in_order = answer
    if truth.fig_id is not None:
        return by_id.get(truth.fig_id, "")
    return in_order[truth.index] if truth.index < len(in_order) else ""


def _complete(caption: str, words: list[str]) -> bool:
    """All words present, in order (substring search tolerates joined inline markup)."""
    pos = 0
    for word in words:
        pos = caption.find(word, pos)
        if pos < 0:
            return False
        pos += len(word)
    return True


def _recall(
    tool: Callable[[Path], _Answer | None], paths: list[Path], truth: dict[Path, list[_Truth]]
) -> dict:
    present = found = complete = failed = 0
    for path in paths:
        answer = tool(path)
        failed += answer is None
        for fig in truth[path]:
            present += 1
            caption = _lookup(answer, fig) if answer is not None else ""
            found += bool(caption.strip())
            complete += bool(caption) and _complete(caption, fig.words)
    return {
        "failed_files": failed,
        "figures_found": found,
        "recall": found / present if present else None,
        "complete_caption_recall": complete / present if present else None,
    }


def _one_pass(tool: Callable[[Path], _Answer | None], paths: list[Path]) -> tuple[float, int]:
    """Seconds for one pass over all files, and figures returned with a caption."""
    gc.collect()
    figures = 0
    start = time.perf_counter()
    for path in paths:
        answer = tool(path)
        if answer is not None:
            figures += sum(1 for c in answer[1] if c)
    return time.perf_counter() - start, figures


def run_caption_benchmark(paths: list[Path], repeats: int) -> dict:
    """Throughput and figure recall of parse_article vs pubmed_parser on the same files."""
    paths = sorted(paths)
    truth = {path: captioned_figures(path) for path in paths}
    tools: dict[str, Callable[[Path], _Answer | None]] = {"ours": _ours, "ours_full_article": _ours_full_article}
    if parse_pubmed_caption is not None:
        tools["pubmed_parser"] = _pubmed_parser
    for tool in tools.values():  # warm-up: imports, parser objects, file cache
        _one_pass(tool, paths)
    times: dict[str, list[float]] = {name: [] for name in tools}
    figures: dict[str, int] = {}
    for r in range(max(1, repeats)):
        order = list(tools) if r % 2 == 0 else list(reversed(tools))  # interleave against drift
        for name in order:
            seconds, figures[name] = _one_pass(tools[name], paths)
            times[name].append(seconds)
    report: dict = {
        "files": len(paths),
        "captioned_figures": sum(len(t) for t in truth.values()),
        "repeats": max(1, repeats),
    }
    for name, tool in tools.items():
        best = min(times[name])
        report[name] = {
            "seconds_best": best,
            "seconds_median": statistics.median(times[name]),
            "files_per_s": len(paths) / best if best else None,
            "figures_per_s": figures[name] / best if best else None,
            **_recall(tool, paths, truth),
        }
    if "pubmed_parser" in report:
        report["speedup_vs_pubmed_parser"] = min(times["pubmed_parser"]) / min(times["ours"])
        report["speedup_full_article_vs_pubmed_parser"] = (
            min(times["pubmed_parser"]) / min(times["ours_full_article"])
        )
        report["target"] = "ours >= 1.5 x pubmed_parser, recall of captioned figures 100%"
        report["target_met"] = report["speedup_vs_pubmed_parser"] >= 1.5 and report["ours"]["recall"] == 1.0
    else:
        report["pubmed_parser"] = "not installed"
    return report


def _realdata_nxml() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "realdata"
    return Path(os.environ.get("BIOMEDCLIP_REALDATA", default)) / "jats" / "nxml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", type=Path, help="also benchmark every *.nxml under this folder")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    report = {}
    real = sorted(_realdata_nxml().glob("*.nxml"))
    if real:
        report["realdata"] = run_caption_benchmark(real, args.repeats)
    if args.synthetic:
        synthetic = sorted(args.synthetic.rglob("*.nxml"))
        report["synthetic"] = run_caption_benchmark(synthetic, args.repeats)
        if real:
            report["all"] = run_caption_benchmark(real + synthetic, args.repeats)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
