"""Leakage check: does an evaluation set overlap the pretraining shards?

PMC figures are reused across papers and benchmarks are often built from PMC, so a zero-shot
number can be inflated by test images (or their captions) the model saw in pretraining. This
compares an evaluation set against a shard build and reports, per evaluation item:

* **exact image** — the sha256 of the evaluation file equals a shard image's source sha256
  (the build records the hash of the original figure file); images stored in arrays (.npz)
  have no file of their own, so for them only perceptual matches apply;
* **perceptual image** — 64-bit pHashes within ``max_distance`` bits, computed exactly as the
  build does (:func:`biomedclip.data.images.perceptual_hash` on the image capped at 512 px), so
  resized or re-encoded copies are caught. Candidates come from a pigeonhole band index (split
  the hash into ``max_distance + 1`` bands; a pair within the distance shares at least one band
  exactly), so large shard builds are not compared all-against-all;
* **identical text** — same caption after Unicode case folding and whitespace/punctuation
  normalisation; **near-identical text** — cosine similarity of character n-gram TF-IDF vectors
  (scikit-learn) at or above ``text_threshold``. Texts exist for retrieval sets (captions).

Output: counts plus the full list of matches (``overlap.json``, ``overlap.md``).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.errors import BiomedclipError

__all__ = ["OverlapError", "OverlapReport", "check_overlap", "normalise_text", "near_hash_pairs", "write_overlap"]

Progress = Callable[[str, int, int], None]


class OverlapError(BiomedclipError, ValueError):
    """An input of the overlap check cannot be used; the message says which and why."""


@dataclass
class _Side:
    """Hashes and texts of one side of the comparison."""

    names: list[str] = field(default_factory=list)
    sha256: list[str | None] = field(default_factory=list)
    phash: list[int | None] = field(default_factory=list)
    text_names: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass
class OverlapReport:
    """Counts and the list of matches."""

    counts: dict[str, int]
    matches: list[dict[str, Any]]
    pretraining: dict[str, Any]
    evaluation: dict[str, Any]
    settings: dict[str, Any]
    skipped: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "pretraining": self.pretraining, "evaluation": self.evaluation,
                "settings": self.settings, "matches": self.matches, "skipped": self.skipped}


def normalise_text(text: str) -> str:
    """Case-folded, NFKC, punctuation → space, whitespace collapsed: what "identical" means here."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def _phash_int(value: Any) -> int | None:
    try:
        return int(str(value), 16) if value not in (None, "") else None
    except ValueError:
        return None


# -- pretraining side --------------------------------------------------------------------------------

def _pretraining(shards: Path, splits: Sequence[str] | None) -> _Side:
    """Hashes and captions of a build's samples: from its manifest, else read from its shards."""
    from biomedclip.data.build_folder import BuildFolder

    if not BuildFolder.holds_build(shards):
        raise OverlapError(f"{shards}: no manifest.parquet and no <split>/*.tar shards; pass a `biomedclip data "
                           "build` output folder")
    build = BuildFolder(shards)
    side = _Side()
    if build.has_manifest:
        table = build.manifest(columns=["key", "split", "sha256", "phash", "caption"]).to_pydict()
        for key, split, sha, ph, caption in zip(table["key"], table["split"], table["sha256"], table["phash"],
                                                table["caption"], strict=True):
            if splits and split not in splits:
                continue
            side.names.append(key)
            side.sha256.append(sha)
            side.phash.append(_phash_int(ph))
            side.text_names.append(key)
            side.texts.append(caption or "")
        return side
    for sample in build.iter_samples(splits or build.splits()):
        side.names.append(sample.key)
        side.sha256.append(sample.json.get("sha256"))
        side.phash.append(_phash_int(sample.json.get("phash")))
        if sample.txt is not None:
            side.text_names.append(sample.key)
            side.texts.append(sample.txt)
    return side


# -- evaluation side ---------------------------------------------------------------------------------

def _image_hashes(image: Any) -> int:
    from biomedclip.data.images import fit_within, perceptual_hash

    target = fit_within(image.size, 512)
    if target != image.size:
        image = image.resize(target)
    return int(perceptual_hash(image), 16)


def _evaluation(data: Path, split: str | None, progress: Progress | None) -> _Side:
    from biomedclip.data.build_folder import BuildFolder
    from biomedclip.evaluate.datasets import (
        ArrayImages,
        FileImages,
        load_classification,
        load_retrieval,
        read_csv_table,
    )
    from biomedclip.io.medical import MedicalImageError

    if BuildFolder.holds_build(data):
        return _pretraining(data, [split] if split else None)  # shards as the evaluation set
    sources: list[tuple[str, Any]] = []
    side = _Side()
    is_caption_csv = False
    if data.suffix.lower() == ".csv":
        header, _ = read_csv_table(data)
        is_caption_csv = any(h.strip().lower() in ("caption", "text", "report") for h in header)
    if is_caption_csv:
        retrieval = load_retrieval(data, split or "test")
        sources.append((split or "test", retrieval.images))
        side.text_names = [f"{retrieval.image_ids[i]}#caption{j}" for j, i in enumerate(retrieval.caption_image)]
        side.texts = list(retrieval.captions)
    else:
        classification = load_classification(data)
        for name, part in classification.splits.items():
            if split is None or name == split:
                sources.append((name, part.images))
    total = sum(len(s) for _, s in sources)
    done = 0
    for split_name, source in sources:
        for i in range(len(source)):
            item = source.describe(i)
            try:
                image = source.load(i)
                sha = None
                if isinstance(source, FileImages):
                    sha = hashlib.sha256(source.paths[i].read_bytes()).hexdigest()
                elif not isinstance(source, ArrayImages):
                    sha = hashlib.sha256(source.items[i][1]).hexdigest()
                side.names.append(f"{split_name}:{item}" if len(sources) > 1 else item)
                side.sha256.append(sha)
                side.phash.append(_image_hashes(image))
            except (MedicalImageError, OSError, ValueError) as exc:
                side.skipped.append({"item": item, "error": str(exc)})
            done += 1
            if progress is not None and (done % 64 == 0 or done == total):
                progress("hashing evaluation images", done, total)
    return side


# -- matching ------------------------------------------------------------------------------------------

def _bands(max_distance: int) -> list[tuple[int, int]]:
    n = max_distance + 1
    widths = [64 // n + (1 if i < 64 % n else 0) for i in range(n)]
    out, shift = [], 0
    for w in widths:
        out.append((shift, (1 << w) - 1))
        shift += w
    return out


def near_hash_pairs(queries: np.ndarray, corpus: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """All (query index, corpus index, Hamming distance) with distance ≤ ``max_distance`` (uint64 hashes)."""
    queries = np.asarray(queries, dtype=np.uint64)
    corpus = np.asarray(corpus, dtype=np.uint64)
    if not len(queries) or not len(corpus):
        return []
    if max_distance >= 32:  # bands would be too narrow to help: compare directly
        return [(qi, int(j), int(d)) for qi, q in enumerate(queries)
                for j, d in zip(*_within(q, np.arange(len(corpus)), corpus, max_distance), strict=True)]
    candidates: list[set[int]] = [set() for _ in range(len(queries))]
    for shift, mask in _bands(max_distance):
        band_c = (corpus >> np.uint64(shift)) & np.uint64(mask)
        band_q = (queries >> np.uint64(shift)) & np.uint64(mask)
        order = np.argsort(band_c, kind="stable")
        sorted_c = band_c[order]
        lo = np.searchsorted(sorted_c, band_q, side="left")
        hi = np.searchsorted(sorted_c, band_q, side="right")
        for qi in np.flatnonzero(hi > lo):
            candidates[qi].update(order[lo[qi]:hi[qi]].tolist())
    pairs = []
    for qi, cand in enumerate(candidates):
        if cand:
            idx = np.fromiter(cand, dtype=np.int64)
            for j, d in zip(*_within(queries[qi], idx, corpus, max_distance), strict=True):
                pairs.append((qi, int(j), int(d)))
    return sorted(pairs)


def _within(query: np.uint64, idx: np.ndarray, corpus: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    dist = np.bitwise_count(corpus[idx] ^ query)
    keep = dist <= max_distance
    return idx[keep], dist[keep]


def _text_matches(eval_side: _Side, train: _Side, threshold: float) -> list[dict[str, Any]]:
    """Identical (normalised) texts, then near-identical by char n-gram TF-IDF cosine."""
    if not eval_side.texts or not train.texts:
        return []
    by_text: dict[str, list[int]] = {}
    train_norm = [normalise_text(t) for t in train.texts]
    for j, t in enumerate(train_norm):
        if t:
            by_text.setdefault(t, []).append(j)
    matches: list[dict[str, Any]] = []
    exact_hit = set()
    eval_norm = [normalise_text(t) for t in eval_side.texts]
    for i, t in enumerate(eval_norm):
        for j in by_text.get(t, []) if t else []:
            exact_hit.add(i)
            matches.append({"type": "identical_text", "eval_item": eval_side.text_names[i],
                            "shard_key": train.text_names[j], "similarity": 1.0, "eval_text": eval_side.texts[i][:300],
                            "shard_text": train.texts[j][:300]})
    if threshold > 1.0:
        return matches
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=1, sublinear_tf=True)
    train_x = vectorizer.fit_transform(train_norm)
    eval_x = vectorizer.transform(eval_norm)
    block = 256
    for start in range(0, eval_x.shape[0], block):
        sims = (eval_x[start:start + block] @ train_x.T).tocsr()
        for r in range(sims.shape[0]):
            i = start + r
            if i in exact_hit:
                continue
            row = sims.getrow(r)
            for j, s in zip(row.indices, row.data, strict=True):
                if s >= threshold and eval_norm[i] != train_norm[j]:
                    matches.append({"type": "near_identical_text", "eval_item": eval_side.text_names[i],
                                    "shard_key": train.text_names[j], "similarity": round(float(s), 4),
                                    "eval_text": eval_side.texts[i][:300], "shard_text": train.texts[j][:300]})
    return matches


def check_overlap(shards: str | Path, eval_data: str | Path, *, shard_splits: Sequence[str] | None = ("train",),
                  eval_split: str | None = None, max_distance: int = 4, text_threshold: float = 0.9,
                  progress: Progress | None = None) -> OverlapReport:
    """Compare an evaluation set against pretraining shards (see the module docstring)."""
    shards, eval_data = Path(shards), Path(eval_data)
    if not shards.is_dir():
        raise OverlapError(f"{shards}: not a folder; pass the output folder of `biomedclip data build`")
    if not eval_data.exists():
        raise OverlapError(f"{eval_data}: not found; pass an image folder, .csv, .npz or shard build")
    if not 0 <= max_distance <= 64:
        raise OverlapError(f"perceptual distance must be 0..64 bits, got {max_distance}")
    train = _pretraining(shards, list(shard_splits) if shard_splits else None)
    if not train.names:
        raise OverlapError(f"{shards}: no pretraining items in splits {list(shard_splits or [])}")
    ev = _evaluation(eval_data, eval_split, progress)
    matches: list[dict[str, Any]] = []
    by_sha: dict[str, list[int]] = {}
    for j, sha in enumerate(train.sha256):
        if sha:
            by_sha.setdefault(sha, []).append(j)
    exact_items = set()
    for i, sha in enumerate(ev.sha256):
        for j in by_sha.get(sha or "", []):
            exact_items.add(i)
            matches.append({"type": "exact_image", "eval_item": ev.names[i], "shard_key": train.names[j],
                            "distance": 0})
    have_q = [i for i, h in enumerate(ev.phash) if h is not None]
    have_c = [j for j, h in enumerate(train.phash) if h is not None]
    near_items = set()
    for qi, cj, dist in near_hash_pairs(np.array([ev.phash[i] for i in have_q], dtype=np.uint64),
                                        np.array([train.phash[j] for j in have_c], dtype=np.uint64), max_distance):
        i, j = have_q[qi], have_c[cj]
        if i in exact_items and train.sha256[j] == ev.sha256[i]:
            continue  # already reported as exact
        near_items.add(i)
        matches.append({"type": "perceptual_image", "eval_item": ev.names[i], "shard_key": train.names[j],
                        "distance": dist})
    text = _text_matches(ev, train, text_threshold)
    matches += text
    text_items = {m["eval_item"] for m in text}
    counts = {
        "eval_images": len(ev.names), "eval_texts": len(ev.texts), "eval_skipped": len(ev.skipped),
        "pretraining_images": len(train.names), "pretraining_texts": len(train.texts),
        "exact_image_items": len(exact_items), "perceptual_image_items": len(near_items - exact_items),
        "identical_text_items": len({m["eval_item"] for m in text if m["type"] == "identical_text"}),
        "near_identical_text_items": len({m["eval_item"] for m in text if m["type"] == "near_identical_text"}),
        "image_items_with_any_match": len(exact_items | near_items),
        "text_items_with_any_match": len(text_items),
        "matches": len(matches),
    }
    return OverlapReport(
        counts=counts, matches=matches,
        pretraining={"path": str(shards), "splits": list(shard_splits) if shard_splits else "all"},
        evaluation={"path": str(eval_data), "split": eval_split or "all"},
        settings={"phash_max_distance": max_distance, "text_threshold": text_threshold,
                  "text_vectoriser": "tfidf char_wb 3-5-grams, cosine"},
        skipped=ev.skipped,
    )


def write_overlap(report: OverlapReport, out: Path, *, list_limit: int = 50) -> dict[str, Path]:
    """``overlap.json`` (everything) and ``overlap.md`` (counts + the first ``list_limit`` matches) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "overlap.json").write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    c = report.counts
    lines = ["# Overlap between pretraining shards and an evaluation set", "",
             f"Pretraining: `{report.pretraining['path']}` (splits: {report.pretraining['splits']}) · "
             f"{c['pretraining_images']} images, {c['pretraining_texts']} captions",
             f"Evaluation: `{report.evaluation['path']}` (split: {report.evaluation['split']}) · "
             f"{c['eval_images']} images, {c['eval_texts']} texts, {c['eval_skipped']} unreadable", "",
             "| check | evaluation items matched |", "|---|---:|",
             f"| exact image (sha256) | {c['exact_image_items']} |",
             f"| perceptual image (pHash ≤ {report.settings['phash_max_distance']} bits) | "
             f"{c['perceptual_image_items']} |",
             f"| identical text | {c['identical_text_items']} |",
             f"| near-identical text (cosine ≥ {report.settings['text_threshold']}) | "
             f"{c['near_identical_text_items']} |", ""]
    if report.matches:
        lines += [f"## Matches (first {min(list_limit, len(report.matches))} of {len(report.matches)})", "",
                  "| type | evaluation item | shard key | distance / similarity |", "|---|---|---|---:|"]
        for m in report.matches[:list_limit]:
            score = m.get("distance", m.get("similarity"))
            lines.append(f"| {m['type']} | `{m['eval_item']}` | `{m['shard_key']}` | {score} |")
    else:
        lines.append("No overlap found.")
    (out / "overlap.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"json": out / "overlap.json", "markdown": out / "overlap.md"}
