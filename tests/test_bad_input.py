"""Hostile and broken input: every bad item is a counted, named error; nothing escapes --out."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from biomedclip.data.pipeline import BuildConfig, build

GOOD_CAPTION = "Chest radiograph showing a right lower lobe opacity in a 54-year-old patient."


def _article(pmcid: str, caption: str, href: str, *, encoding_decl: str = "UTF-8") -> bytes:
    return f"""<?xml version="1.0" encoding="{encoding_decl}"?>
<article article-type="research-article" xmlns:xlink="http://www.w3.org/1999/xlink">
<front><article-meta><article-id pub-id-type="pmc">{pmcid}</article-id>
<title-group><article-title>Article {pmcid}</article-title></title-group></article-meta></front>
<body><p>As shown in <xref ref-type="fig" rid="F1">Figure 1</xref>, the lesion grew.</p>
<fig id="F1"><label>Figure 1</label><caption><p>{caption}</p></caption>
<graphic xlink:href="{href}"/></fig></body></article>""".encode()


def _png(size: tuple[int, int] = (120, 90), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A textured picture; each colour gives a different one (solid images would be perceptual twins)."""
    rng = np.random.default_rng(list(colour))
    pixels = rng.integers(0, 256, size=(size[1] // 10 + 1, size[0] // 10 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes of PNG whose header claims 10 gigapixels."""
    data = bytearray(_png((8, 8)))
    ihdr = bytearray(data[16:29])  # IHDR payload: width, height, depth, colour, …
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(data)


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _file(name: str, payload: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    return info, payload


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.fixture
def bad_corpus(tmp_path: Path) -> Path:
    src = tmp_path / "src"

    def article(folder: str, pmcid: str, caption: str, href: str, files: dict[str, bytes]) -> None:
        d = src / folder
        d.mkdir(parents=True)
        (d / f"{pmcid}.nxml").write_bytes(_article(pmcid, caption, href))
        for name, payload in files.items():
            (d / name).write_bytes(payload)

    article("good", "PMC100", GOOD_CAPTION, "g1", {"g1.png": _png()})
    article("zero", "PMC101", GOOD_CAPTION, "z1", {"z1.jpg": b""})
    article("corrupt", "PMC102", GOOD_CAPTION, "c1.jpg", {"c1.jpg": b"\xff\xd8\xff\xe0" + b"garbage" * 50})
    article("truncated_img", "PMC103", GOOD_CAPTION, "t1", {"t1.png": _png((300, 300), (1, 2, 3))[:200]})
    article("bomb", "PMC104", GOOD_CAPTION, "b1", {"b1.png": _png_bomb()})
    article("huge_caption", "PMC105", "word " * 210_000, "h1", {"h1.png": _png(colour=(0, 90, 0))})
    article("missing", "PMC106", GOOD_CAPTION, "nowhere", {})
    (src / "malformed").mkdir()
    (src / "malformed" / "PMC107.nxml").write_bytes(_article("PMC107", GOOD_CAPTION, "x")[:300])
    (src / "nonutf8").mkdir()
    (src / "nonutf8" / "PMC108.nxml").write_bytes(
        _article("PMC108", "Caption with bad bytes \xff\xfe here and more words", "n1").replace(
            b"\xc3\xbf\xc3\xbe", b"\xff\xfe"))
    (src / "nonutf8" / "n1.png").write_bytes(_png(colour=(9, 9, 200)))

    packages = src / "packages"
    packages.mkdir()
    ok_package = _tar_gz([
        _file("PMC109/PMC109.nxml", _article("PMC109", GOOD_CAPTION, "p1")),
        _file("PMC109/p1.png", _png(colour=(120, 120, 0))),
    ])
    (packages / "PMC110.tar.gz").write_bytes(ok_package[: len(ok_package) // 2])  # truncated download
    escape_target = src.parent / "escaped"
    (packages / "PMC111.tar.gz").write_bytes(_tar_gz([
        _file("PMC111/PMC111.nxml", _article("PMC111", GOOD_CAPTION, "p2")),
        _file("PMC111/p2.png", _png(colour=(0, 120, 120))),
        _file(str(escape_target / "abs.txt"), b"absolute"),
        _file("PMC111/../../escaped_dotdot.txt", b"dotdot"),
        _link("PMC111/link.png", str(escape_target / "target"), tarfile.SYMTYPE),
        _link("PMC111/hard.png", "/etc/passwd", tarfile.LNKTYPE),
    ]))
    (packages / "PMC109.tar.gz").write_bytes(ok_package)
    return src


def _snapshot(root: Path, exclude: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if exclude not in p.parents and p != exclude}


def test_bad_items_are_counted_and_named(bad_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = _snapshot(tmp_path, out)
    stats = build(BuildConfig(sources=[str(bad_corpus)], out=out, workers=2,
                              splits={"train": 1.0, "val": 0.0, "test": 0.0}))
    assert _snapshot(tmp_path, out) == before, "the build wrote outside its output folder"
    assert not (tmp_path / "escaped").exists()

    kept = set(pq.read_table(out / "manifest.parquet", columns=["key"]).column("key").to_pylist())
    assert {"PMC100_F1", "PMC109_F1", "PMC111_F1"} <= kept
    assert stats["figures"]["kept"] == len(kept)
    by_source: dict[str, set[str]] = {}
    for item in stats["error_items"]:
        by_source.setdefault(item["source"], set()).add(item["reason"])

    def reasons_for(fragment: str) -> set[str]:
        return set().union(*[r for s, r in by_source.items() if fragment in s] or [set()])

    assert reasons_for("z1.jpg") == {"empty_file"}
    assert reasons_for("c1.jpg") == {"corrupt_image"}
    assert reasons_for("t1.png") == {"corrupt_image"}
    assert reasons_for("b1.png") == {"decompression_bomb"}
    assert reasons_for("PMC106.nxml") == {"missing_image"}
    assert reasons_for("PMC107.nxml") == {"malformed_xml"}
    # a truncated download keeps its intact XML; the image cut off is counted as missing
    assert reasons_for("PMC110.tar.gz") == {"truncated_package", "missing_image"}
    assert reasons_for("PMC111.tar.gz") == {"unsafe_tar_member"}
    assert len([s for s in by_source if "PMC111.tar.gz" in s]) == 4
    assert stats["dropped"].get("caption_too_long") == 1
    assert stats["errors"]["unsafe_tar_member"] == 4
    assert stats["articles"]["seen"] == 12
    assert sum(stats["errors"].values()) == stats["error_count"] == len(stats["error_items"])


def test_strict_exit_code(bad_corpus: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "biomedclip.cli", "data", "build", str(bad_corpus), "--workers", "1",
           "--splits", "train=1,val=0,test=0"]
    lenient = subprocess.run([*cmd, "--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    strict = subprocess.run([*cmd, "--out", str(tmp_path / "b"), "--strict"], capture_output=True, text=True)
    assert strict.returncode == 1
    assert "--strict" in strict.stdout and "errors" in strict.stdout


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "biomedclip.cli", "data", "build", str(tmp_path / "nope"),
           "--out", str(tmp_path / "o")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2
    assert "nope" in result.stderr
