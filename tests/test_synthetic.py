"""Tests for the synthetic PMC corpus: layout, determinism, JATS validity, labels, breakage and
whether the images really carry the signal the captions describe (numpy-only classifiers)."""

from __future__ import annotations

import io
import json
import re
import tarfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from biomedclip.data.filters import FilterConfig, hamming
from biomedclip.data.images import prepare_image
from biomedclip.data.records import make_key
from biomedclip.synth import ATTRIBUTE_CLASSES, BROKEN_KINDS, MODALITIES, SynthSummary, synthesize

N_SMALL = 40


# --- helpers ---------------------------------------------------------------------------------------------


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (the unit of the determinism checks)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "labels.jsonl").read_text(encoding="utf-8").splitlines()]


def _articles(out: Path) -> Iterator[tuple[str, bytes, dict[str, bytes]]]:
    """(source relative to out, xml bytes, media by base name) for folders and packages alike."""
    for xml_path in sorted((out / "folders").rglob("*.nxml")):
        media = {p.name: p.read_bytes() for p in xml_path.parent.iterdir() if p.suffix != ".nxml"}
        yield xml_path.relative_to(out).as_posix(), xml_path.read_bytes(), media
    for pkg in sorted((out / "packages").glob("*.tar.gz")):
        with tarfile.open(pkg) as tar:
            files = {
                m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()
            }
        xml = next(data for name, data in files.items() if name.endswith(".nxml"))
        yield (
            pkg.relative_to(out).as_posix(),
            xml,
            {k: v for k, v in files.items() if not k.endswith(".nxml")},
        )


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _by_local(root: etree._Element, name: str) -> list[etree._Element]:
    return root.xpath(f"//*[local-name()='{name}']")


def _pmcid(root: etree._Element) -> str:
    ids = {el.get("pub-id-type"): (el.text or "").strip() for el in _by_local(root, "article-id")}
    raw = ids.get("pmcid") or ids.get("pmc", "")
    return raw if raw.startswith("PMC") else f"PMC{raw}"


def _caption_text(fig: etree._Element) -> str | None:
    """Caption as a JATS parser flattens it: title then paragraphs, inline markup dissolved."""
    caption = next((c for c in fig if _local(c) == "caption"), None)
    if caption is None:
        return None
    parts = ["".join(c.itertext()) for c in caption if _local(c) in ("title", "p")]
    return " ".join(" ".join(parts).split())


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _media_for(out: Path) -> dict[str, dict[str, bytes]]:
    return {source: media for source, _, media in _articles(out)}


def _features(image: Image.Image, size: int = 16) -> np.ndarray:
    """16×16 RGB thumbnail as a flat vector in [0, 1] (16-bit greyscale scaled to 8 bits first)."""
    if image.mode in ("I;16", "I;16B", "I"):
        image = Image.fromarray((np.asarray(image, np.float32) / 257.0).astype(np.uint8))
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BOX)
    return np.asarray(rgb, np.float32).ravel() / 255.0


def _ridge(x_tr: np.ndarray, y_tr: list[Any], x_te: np.ndarray, lam: float = 30.0) -> list[Any]:
    """Least-squares (ridge) one-vs-rest linear classifier on standardised pixels: numpy only."""
    classes = sorted(set(y_tr), key=str)
    targets = np.eye(len(classes))[[classes.index(y) for y in y_tr]]
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-3

    def design(x: np.ndarray) -> np.ndarray:
        return np.hstack([(x - mu) / sd, np.ones((len(x), 1), np.float32)])

    a = design(x_tr)
    weights = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ targets)
    return [classes[k] for k in (design(x_te) @ weights).argmax(axis=1)]


def _nearest_centroid(x_tr: np.ndarray, y_tr: list[Any], x_te: np.ndarray) -> list[Any]:
    classes = sorted(set(y_tr), key=str)
    labels = np.asarray([classes.index(y) for y in y_tr])
    centroids = np.stack([x_tr[labels == k].mean(axis=0) for k in range(len(classes))])
    dist = ((x_te[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return [classes[k] for k in dist.argmin(axis=1)]


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    return out, synthesize(out, N_SMALL, seed=3, image_size=128)


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("synth_broken") / "corpus"
    return out, synthesize(out, N_SMALL, seed=5, broken_fraction=0.6, image_size=96)


@pytest.fixture(scope="module")
def learn(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[dict[str, Any], np.ndarray]]:
    """(label row, 16×16 features) for every clean single-panel figure of a 400-article corpus."""
    out = tmp_path_factory.mktemp("synth_learn") / "corpus"
    synthesize(out, 400, seed=11, image_size=64, broken_fraction=0.0, package_fraction=0.0)
    media = _media_for(out)
    samples = []
    for row in _rows(out):
        if not row["compound"]:
            samples.append((row, _features(_decode(media[row["source"]][row["media"]]))))
    return samples


# --- layout ----------------------------------------------------------------------------------------------


def test_layout_and_summary(small: tuple[Path, SynthSummary]) -> None:
    out, summary = small
    assert summary.articles == N_SMALL == summary.folder_articles + summary.packages
    assert summary.packages > 0 and summary.folder_articles > 0
    folders = sorted((out / "folders").glob("*/PMC*/PMC*.nxml"))
    assert len(folders) == summary.folder_articles
    for nxml in folders:
        assert nxml.stem == nxml.parent.name and re.fullmatch(r"\d{2,}", nxml.parent.parent.name)
    assert len(list((out / "packages").glob("PMC*.tar.gz"))) == summary.packages
    rows = _rows(out)
    assert summary.figures == len(rows)
    assert sum(summary.modalities.values()) == len(rows)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["figures"] == summary.figures and on_disk["out"] == "."


def test_classes_json(small: tuple[Path, SynthSummary]) -> None:
    out, _ = small
    spec = json.loads((out / "classes.json").read_text())
    assert spec["modality"]["classes"] == [m.name for m in MODALITIES]
    assert len(spec["modality"]["classes"]) >= 7
    assert all("{}" in t for t in spec["modality"]["templates"])
    for name, classes in ATTRIBUTE_CLASSES.items():
        entry = spec["attributes"][name]
        assert entry["classes"] == list(classes) and entry["modalities"]
        assert all("{}" in t for t in entry["templates"])


def test_progress_and_refuses_non_empty(tmp_path: Path) -> None:
    seen: list[int] = []
    synthesize(tmp_path / "c", 5, progress=seen.append, image_size=64)
    assert seen == [1, 2, 3, 4, 5]
    with pytest.raises(FileExistsError):
        synthesize(tmp_path / "c", 2, image_size=64)
    summary = synthesize(tmp_path / "c", 2, image_size=64, overwrite=True)
    assert summary.articles == 2 and len(_rows(tmp_path / "c")) == summary.figures


# --- determinism -----------------------------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_other_seed_differs(
    tmp_path: Path, small: tuple[Path, SynthSummary]
) -> None:
    out, _ = small
    again = tmp_path / "again"
    synthesize(again, N_SMALL, seed=3, image_size=128)
    assert _tree_bytes(again) == _tree_bytes(out)
    other = tmp_path / "other"
    synthesize(other, N_SMALL, seed=4, image_size=128)
    assert (other / "labels.jsonl").read_bytes() != (out / "labels.jsonl").read_bytes()
    assert _tree_bytes(other).keys() != _tree_bytes(out).keys()


def test_two_workers_equal_one_worker(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    synthesize(one, 24, seed=7, workers=1, image_size=64, broken_fraction=0.2)
    synthesize(two, 24, seed=7, workers=2, image_size=64, broken_fraction=0.2)
    assert _tree_bytes(one) == _tree_bytes(two)


# --- JATS + labels ---------------------------------------------------------------------------------------


def test_every_nxml_parses_and_labels_match_figures(small: tuple[Path, SynthSummary]) -> None:
    out, summary = small
    rows_by_source: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in _rows(out):
        rows_by_source[row["source"]][row["key"]] = row
    wrappers: Counter[str] = Counter()
    n_articles = 0
    for source, xml, _ in _articles(out):
        n_articles += 1
        if source in summary.malformed_articles:
            with pytest.raises(etree.XMLSyntaxError):
                etree.fromstring(xml)
            continue
        root = etree.fromstring(xml)
        wrappers[_local(root)] += 1
        pmcid = _pmcid(root)
        figs = {make_key(pmcid, f.get("id")): f for f in _by_local(root, "fig")}
        assert figs.keys() == rows_by_source[source].keys(), source
        for key, fig in figs.items():
            row = rows_by_source[source][key]
            assert row["pmcid"] == pmcid
            assert (_caption_text(fig) or "") == row["caption"]
            graphic = next(g for g in fig.iter() if _local(g) == "graphic")
            href = graphic.get("{http://www.w3.org/1999/xlink}href")
            assert href == row["graphic_href"] and row["media"].startswith(href)
        licenses = _by_local(root, "license")
        assert licenses and "creativecommons.org" in licenses[0].get("{http://www.w3.org/1999/xlink}href")
        # figure xrefs point at figures (or groups), bibliography xrefs at the reference list
        targets = {"fig": {el.get("id") for el in _by_local(root, "fig") + _by_local(root, "fig-group")},
                   "bibr": {el.get("id") for el in _by_local(root, "ref")}}
        for xref in _by_local(root, "xref"):
            assert xref.get("rid") in targets[xref.get("ref-type")]
        assert len(targets["bibr"]) >= 16  # a reference list of realistic length
    assert n_articles == N_SMALL
    assert wrappers["article"] > 0


def test_jats_variety_over_a_larger_corpus(tmp_path: Path) -> None:
    out = tmp_path / "c"
    synthesize(out, 120, seed=2, image_size=48)
    wrappers: Counter[str] = Counter()
    features: Counter[str] = Counter()
    for _, xml, _ in _articles(out):
        try:
            root = etree.fromstring(xml)
        except etree.XMLSyntaxError:
            continue
        wrappers[_local(root)] += 1
        features["fig-group"] += bool(_by_local(root, "fig-group"))
        features["floats-group"] += bool(_by_local(root, "floats-group"))
        features["inline"] += bool(
            root.xpath(
                "//*[local-name()='caption']//*[local-name()='italic' or "
                "local-name()='bold' or local-name()='sup']"
            )
        )
        features["no-figures"] += not _by_local(root, "fig")
    assert set(wrappers) == {"article", "pmc-articleset", "OAI-PMH"}
    assert all(features[k] > 0 for k in ("fig-group", "floats-group", "inline", "no-figures")), features
    rows = _rows(out)
    assert any("." not in r["graphic_href"] for r in rows) and any("." in r["graphic_href"] for r in rows)
    assert {"jpg", "png", "png_p", "tif16", "jpg_cmyk"} <= {r["format"] for r in rows}
    assert {"cc-by", "cc-by-nc", "cc0"} <= {r["license"] for r in rows}


def test_every_modality_appears_and_captions_name_it(small: tuple[Path, SynthSummary]) -> None:
    out, _ = small
    rows = _rows(out)
    assert {r["modality"] for r in rows if not r["compound"]} == {m.name for m in MODALITIES}
    synonyms = {m.name: [s.lower() for s in m.synonyms] for m in MODALITIES}
    for row in rows:
        if row["broken"] == "no_caption":
            assert row["caption"] == ""
            continue
        caption = row["caption"].lower()
        assert any(s in caption for s in synonyms[row["modality"]]), row["caption"]
        assert len(re.findall(r"[.!?](\s|$)", row["caption"])) >= 2  # several sentences
        if row["compound"]:
            continue
        for attr in ("position", "size", "colour", "sequence"):
            if row[attr] is not None:
                assert str(row[attr]).lower() in caption, (attr, row["caption"])
        if row["chart_type"]:
            assert re.search(rf"{row['chart_type'].split()[0]} (chart|graph|plot)", caption), row["caption"]


def test_captions_are_varied(small: tuple[Path, SynthSummary]) -> None:
    captions = [r["caption"] for r in _rows(small[0]) if r["caption"]]
    assert len(set(captions)) == len(captions)


# --- media -----------------------------------------------------------------------------------------------


def test_images_decode_and_packages_hold_everything(small: tuple[Path, SynthSummary]) -> None:
    out, _ = small
    rows = _rows(out)
    media = _media_for(out)
    modes: Counter[str] = Counter()
    for row in rows:
        if row["broken"] not in (None, "no_caption", "malformed_xml"):
            continue
        image = _decode(media[row["source"]][row["media"]])
        modes[image.mode] += 1
        assert min(image.size) >= 32 and max(image.size) <= 1000
    assert {"L", "RGB"} <= set(modes)
    for pkg in sorted((out / "packages").glob("*.tar.gz")):
        with tarfile.open(pkg) as tar:
            members = tar.getmembers()
        top = pkg.name.removesuffix(".tar.gz")
        assert members[0].isdir() and members[0].name == top
        names = [m.name for m in members[1:]]
        assert all(n.startswith(f"{top}/") for n in names)
        assert sum(n.endswith(".nxml") for n in names) == 1 and sum(n.endswith(".pdf") for n in names) == 1
        assert all(m.mtime == members[0].mtime and m.uid == 0 for m in members)
    for row in rows:
        if (
            row["source_kind"] == "package"
            and row["media"].endswith(".jpg")
            and row["broken"] in (None, "malformed_xml")
        ):
            gif = media[row["source"]][row["media"][:-4] + ".gif"]
            assert _decode(gif).format == "GIF"


def test_broken_kinds_are_realistic_failures(broken: tuple[Path, SynthSummary]) -> None:
    out, summary = broken
    assert all(summary.broken[kind] > 0 for kind in BROKEN_KINDS), summary.broken
    media = _media_for(out)
    rows = _rows(out)
    for row in rows:
        files = media[row["source"]]
        if row["broken"] == "missing_graphic":
            assert row["media"] not in files
        elif row["broken"] == "zero_byte_image":
            assert files[row["media"]] == b""
        elif row["broken"] == "corrupt_image":
            with pytest.raises(OSError):
                _decode(files[row["media"]])
        elif row["broken"] == "no_caption":
            assert row["caption"] == "" and row["media"] in files
    assert len(summary.malformed_articles) == summary.broken["malformed_xml"]
    n_bad = 0
    for source, xml, _ in _articles(out):
        try:
            etree.fromstring(xml)
        except etree.XMLSyntaxError:
            n_bad += 1
            assert source in summary.malformed_articles
    assert n_bad == summary.broken["malformed_xml"]


# --- perceptual diversity --------------------------------------------------------------------------------


def test_figures_of_one_modality_are_not_perceptual_duplicates(tmp_path: Path) -> None:
    """The build drops figures whose pHash is within ``phash_max_distance`` of a kept one; synthetic
    figures of one modality must differ as real ones do (patient, positioning, exposure, annotations),
    or dedup silently removes most of a modality (it once dropped 21 of 37 chest X-rays)."""
    out = tmp_path / "c"
    synthesize(out, 60, seed=0, image_size=128, broken_fraction=0.0, package_fraction=0.0)
    media = _media_for(out)
    hashes: dict[str, list[str]] = defaultdict(list)
    for row in _rows(out):
        if not row["compound"]:
            hashes[row["modality"]].append(prepare_image(media[row["source"]][row["media"]]).phash)
    assert set(hashes) == {m.name for m in MODALITIES} and min(len(h) for h in hashes.values()) >= 5
    limit = FilterConfig().phash_max_distance
    pairs = close = 0
    for modality, hs in hashes.items():
        n_close = sum(hamming(a, b) <= limit for i, a in enumerate(hs) for b in hs[i + 1 :])
        n_pairs = len(hs) * (len(hs) - 1) // 2
        assert n_close <= max(1, 0.05 * n_pairs), (modality, n_close, n_pairs)
        pairs += n_pairs
        close += n_close
    assert pairs > 300 and close / pairs < 0.01, (close, pairs)


# --- learnability ----------------------------------------------------------------------------------------


def _split(samples: list[tuple[dict[str, Any], np.ndarray]]) -> tuple[list, list]:
    """Held-out split by article (hash of the PMCID, as the pipeline splits), never by figure."""
    held_out = [zlib.crc32(s[0]["pmcid"].encode()) % 4 == 0 for s in samples]
    train = [s for s, h in zip(samples, held_out, strict=True) if not h]
    test = [s for s, h in zip(samples, held_out, strict=True) if h]
    return train, test


def test_modality_is_learnable_from_pixels(learn: list[tuple[dict[str, Any], np.ndarray]]) -> None:
    train, test = _split(learn)
    pred = _nearest_centroid(
        np.stack([f for _, f in train]), [r["modality"] for r, _ in train], np.stack([f for _, f in test])
    )
    truth = [r["modality"] for r, _ in test]
    accuracy = float(np.mean([p == t for p, t in zip(pred, truth, strict=True)]))
    assert len(test) > 100 and accuracy >= 0.9, accuracy


def test_finding_position_is_learnable_from_pixels(learn: list[tuple[dict[str, Any], np.ndarray]]) -> None:
    """Left vs right lesion, per modality (linear classifier); pooled held-out accuracy well above 0.5."""
    correct = total = 0
    for modality in ("chest X-ray", "brain MRI", "ultrasound", "histopathology"):
        subset = [(r, f) for r, f in learn if r["modality"] == modality and r["position"] is not None]
        train, test = _split(subset)
        pred = _ridge(
            np.stack([f for _, f in train]), [r["position"] for r, _ in train], np.stack([f for _, f in test])
        )
        correct += sum(p == r["position"] for p, (r, _) in zip(pred, test, strict=True))
        total += len(test)
    assert total > 30 and correct / total >= 0.75, (correct, total)


def test_fluorescence_colour_is_learnable_from_pixels(learn: list[tuple[dict[str, Any], np.ndarray]]) -> None:
    subset = [(r, f) for r, f in learn if r["modality"] == "fluorescence microscopy"]
    train, test = _split(subset)
    pred = _nearest_centroid(
        np.stack([f for _, f in train]), [r["colour"] for r, _ in train], np.stack([f for _, f in test])
    )
    accuracy = float(np.mean([p == r["colour"] for p, (r, _) in zip(pred, test, strict=True)]))
    assert accuracy >= 0.9, accuracy
