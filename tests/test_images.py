"""prepare_image: every source mode, orientation, size cap, broken/hostile input; resolve_graphic."""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from biomedclip.data.images import (
    IMAGE_ERROR_REASONS,
    ImageError,
    fit_within,
    prepare_image,
    resolve_graphic,
)
from biomedclip.data.records import ItemError

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
REALDATA_IMAGES = Path("/work/shared/realdata/images")


# --- helpers -----------------------------------------------------------------------------------------

def _encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _decode(jpeg: bytes) -> np.ndarray:
    out = Image.open(io.BytesIO(jpeg))
    assert out.format == "JPEG" and out.mode == "RGB"
    return np.asarray(out).astype(int)


def _pixel(jpeg: bytes, x: float, y: float) -> tuple[int, ...]:
    """RGB at a relative position (0..1) of the output image."""
    arr = _decode(jpeg)
    h, w = arr.shape[:2]
    return tuple(int(v) for v in arr[min(h - 1, int(y * h)), min(w - 1, int(x * w))])


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def _halves(left: tuple[int, ...] | int, right: tuple[int, ...] | int, mode: str,
            size: tuple[int, int] = (64, 32)) -> Image.Image:
    im = Image.new(mode, size, left)
    im.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return im


def _photo(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A smooth, photo-like random RGB picture (low-frequency noise, upsampled)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def _patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite a PNG's IHDR width/height (and CRC): a tiny file claiming a huge canvas."""
    out = bytearray(data)
    ihdr = bytearray(out[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    out[16:29] = ihdr
    out[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(out)


def _strip_jpeg_segment(data: bytes, marker: int) -> bytes:
    """Remove every APPn/other header segment with the given marker byte (e.g. 0xEE = Adobe)."""
    out, pos = bytearray(data[:2]), 2
    while pos < len(data) and data[pos] == 0xFF and data[pos + 1] != 0xDA:
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if data[pos + 1] != marker:
            out += data[pos:pos + 2 + length]
        pos += 2 + length
    return bytes(out + data[pos:])


def _no_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any pixel decoding fail loudly, to prove a refusal happened before it."""
    def forbidden(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixel data was decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)


def _reason(data: bytes, **kwargs: int) -> str:
    with pytest.raises(ImageError) as info:
        prepare_image(data, **kwargs)
    assert info.value.reason in IMAGE_ERROR_REASONS
    return info.value.reason


# --- source modes ---------------------------------------------------------------------------------

def test_rgb_jpeg_basic_fields() -> None:
    data = _encode(_halves(RED, BLUE, "RGB", (200, 100)), "JPEG", quality=95)
    img = prepare_image(data)
    assert (img.width, img.height, img.orig_width, img.orig_height) == (200, 100, 200, 100)
    assert img.orig_format == "JPEG"
    assert img.sha256 == hashlib.sha256(data).hexdigest()
    assert len(img.phash) == 16 and int(img.phash, 16) >= 0
    assert _close(_pixel(img.jpeg, 0.2, 0.5), RED, 20) and _close(_pixel(img.jpeg, 0.8, 0.5), BLUE, 20)


def test_palette_with_transparency_is_composited_on_white() -> None:
    im = Image.new("P", (64, 32), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (32, 0, 64, 32))
    img = prepare_image(_encode(im, "PNG", transparency=0))
    assert _close(_pixel(img.jpeg, 0.2, 0.5), WHITE) and _close(_pixel(img.jpeg, 0.8, 0.5), RED, 20)


@pytest.mark.parametrize(("mode", "key", "kept", "expected"),
                         [("RGB", (0, 0, 0), RED, RED), ("L", 0, 128, (128, 128, 128))])
def test_colour_key_transparency_on_rgb_and_l(mode: str, key: tuple[int, int, int] | int,
                                               kept: tuple[int, int, int] | int,
                                               expected: tuple[int, int, int]) -> None:
    im = _halves(key, kept, mode)
    img = prepare_image(_encode(im, "PNG", transparency=key))
    assert _close(_pixel(img.jpeg, 0.2, 0.5), WHITE) and _close(_pixel(img.jpeg, 0.8, 0.5), expected, 20)


def test_palette_without_transparency_gif() -> None:
    im = _halves(RED, BLUE, "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    img = prepare_image(_encode(im, "GIF"))
    assert img.orig_format == "GIF"
    assert _close(_pixel(img.jpeg, 0.2, 0.5), RED, 20) and _close(_pixel(img.jpeg, 0.8, 0.5), BLUE, 20)


def test_grayscale_l() -> None:
    img = prepare_image(_encode(_halves(30, 220, "L"), "PNG"))
    assert _close(_pixel(img.jpeg, 0.2, 0.5), (30, 30, 30), 4)
    assert _close(_pixel(img.jpeg, 0.8, 0.5), (220, 220, 220), 4)


def test_la_transparent_parts_become_white() -> None:
    im = Image.merge("LA", (Image.new("L", (64, 32), 0), _halves(0, 255, "L")))
    img = prepare_image(_encode(im, "PNG"))
    assert _close(_pixel(img.jpeg, 0.2, 0.5), WHITE) and _close(_pixel(img.jpeg, 0.8, 0.5), (0, 0, 0))


def test_rgba_alpha_composited_on_white() -> None:
    alpha = Image.new("L", (96, 32), 0)
    alpha.paste(128, (32, 0, 64, 32))
    alpha.paste(255, (64, 0, 96, 32))
    im = Image.new("RGB", (96, 32), RED)
    im.putalpha(alpha)
    img = prepare_image(_encode(im, "PNG"))
    assert _close(_pixel(img.jpeg, 0.15, 0.5), WHITE)
    assert _close(_pixel(img.jpeg, 0.5, 0.5), (255, 127, 127), 16)
    assert _close(_pixel(img.jpeg, 0.85, 0.5), RED, 20)


def test_adobe_cmyk_jpeg() -> None:
    data = _encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95)
    source = Image.open(io.BytesIO(data))
    assert source.mode == "CMYK" and "adobe" in source.info  # Pillow writes Adobe-inverted CMYK
    img = prepare_image(data)
    assert _close(_pixel(img.jpeg, 0.5, 0.5), RED, 20)


def test_cmyk_jpeg_without_adobe_marker_reads_like_browsers_do() -> None:
    # Photoshop writes inverted CMYK with an Adobe (APP14) marker; browsers treat marker-less CMYK
    # JPEGs as inverted too. Stripping the marker must therefore not change the colour.
    data = _strip_jpeg_segment(_encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG",
                                       quality=95), 0xEE)
    source = Image.open(io.BytesIO(data))
    assert source.mode == "CMYK" and "adobe" not in source.info
    assert _close(_pixel(prepare_image(data).jpeg, 0.5, 0.5), RED, 20)


@pytest.mark.parametrize("fmt", ["TIFF", "PNG"])
def test_16bit_with_12bit_range_is_stretched_not_black(fmt: str) -> None:
    ramp = np.tile(np.linspace(0, 4095, 256).astype(np.uint16), (64, 1))
    source = Image.fromarray(ramp)
    assert source.mode == "I;16"
    img = prepare_image(_encode(source, fmt))
    arr = _decode(img.jpeg)
    assert arr[:, :8].mean() < 10 and arr[:, -8:].mean() > 245
    assert 100 < arr[:, 120:136].mean() < 155  # mid-range stays mid-grey


def test_32bit_int_and_float_tiff() -> None:
    values = np.tile(np.linspace(-1000, 250_000, 128), (32, 1))
    for source in (Image.fromarray(values.astype(np.int32)), Image.fromarray(values.astype(np.float32))):
        assert source.mode in ("I", "F")
        arr = _decode(prepare_image(_encode(source, "TIFF")).jpeg)
        assert arr[:, :4].mean() < 10 and arr[:, -4:].mean() > 245


def test_float_tiff_with_nan_and_constant_image() -> None:
    values = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (16, 1))
    values[:, :8] = np.nan
    arr = _decode(prepare_image(_encode(Image.fromarray(values), "TIFF")).jpeg)
    assert arr[:, :6].mean() < 10 and arr[:, -4:].mean() > 245
    flat = prepare_image(_encode(Image.fromarray(np.full((16, 16), 7, np.uint16)), "TIFF"))
    assert flat.width == 16


def test_bilevel_mode_1() -> None:
    im = _halves(0, 1, "1", (80, 40))
    img = prepare_image(_encode(im, "PNG"))
    assert _close(_pixel(img.jpeg, 0.2, 0.5), (0, 0, 0)) and _close(_pixel(img.jpeg, 0.8, 0.5), WHITE)


def test_multiframe_tiff_uses_first_frame() -> None:
    first, second = Image.new("RGB", (64, 48), RED), Image.new("RGB", (64, 48), BLUE)
    data = _encode(first, "TIFF", save_all=True, append_images=[second])
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    img = prepare_image(data)
    assert img.orig_format == "TIFF" and _close(_pixel(img.jpeg, 0.5, 0.5), RED, 20)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (64, 48), c).convert("P") for c in (RED, BLUE)]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert _close(_pixel(prepare_image(data).jpeg, 0.5, 0.5), RED, 20)


def test_webp_and_bmp() -> None:
    for fmt in ("WEBP", "BMP"):
        img = prepare_image(_encode(_halves(RED, BLUE, "RGB"), fmt))
        assert img.orig_format == fmt and _close(_pixel(img.jpeg, 0.2, 0.5), RED, 25)


# --- orientation ------------------------------------------------------------------------------------

def _marked(size: tuple[int, int] = (240, 120)) -> Image.Image:
    """Grey canvas with a red block in the top-left corner and a blue one bottom-left."""
    im = Image.new("RGB", size, (128, 128, 128))
    im.paste(RED, (0, 0, size[0] // 4, size[1] // 4))
    im.paste(BLUE, (0, size[1] * 3 // 4, size[0] // 4, size[1]))
    return im


def _with_orientation(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(im, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_6_rotates_marker_to_top_right() -> None:
    # Orientation 6: the stored picture must be turned 90° clockwise for display, so the stored
    # top-left corner ends up top-right and the picture becomes portrait.
    img = prepare_image(_with_orientation(_marked(), 6))
    assert (img.orig_width, img.orig_height) == (120, 240)
    assert (img.width, img.height) == (120, 240)
    assert _close(_pixel(img.jpeg, 0.9, 0.05), RED, 30)
    assert _close(_pixel(img.jpeg, 0.1, 0.05), BLUE, 30)
    assert _close(_pixel(img.jpeg, 0.5, 0.9), (128, 128, 128), 10)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow_exif_transpose(orientation: int) -> None:
    data = _with_orientation(_marked((400, 200)), orientation)
    img = prepare_image(data, max_side=200)
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert (img.orig_width, img.orig_height) == reference.size
    expected = np.asarray(reference.resize((img.width, img.height))).astype(int)
    assert np.abs(_decode(img.jpeg) - expected).mean() < 6


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_does_not_lose_the_image() -> None:
    data = _encode(_marked(), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\xff")
    assert prepare_image(data).width == 240


# --- size cap ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("size", "fmt", "expected"),
    [((2000, 1000), "JPEG", (512, 256)), ((1000, 3000), "PNG", (171, 512)),
     ((4000, 3000), "JPEG", (512, 384)), ((513, 20), "PNG", (512, 20)), ((512, 512), "PNG", (512, 512))],
)
def test_long_side_capped_keeping_aspect(size: tuple[int, int], fmt: str, expected: tuple[int, int]) -> None:
    img = prepare_image(_encode(_halves(RED, BLUE, "RGB", size), fmt))
    assert (img.width, img.height) == expected
    assert (img.orig_width, img.orig_height) == size
    assert Image.open(io.BytesIO(img.jpeg)).size == expected
    assert _close(_pixel(img.jpeg, 0.1, 0.5), RED, 25) and _close(_pixel(img.jpeg, 0.9, 0.5), BLUE, 25)


def test_no_upscaling_and_custom_max_side() -> None:
    small = _encode(_halves(RED, BLUE, "RGB", (100, 50)), "PNG")
    assert (prepare_image(small).width, prepare_image(small).height) == (100, 50)
    big = _encode(_halves(RED, BLUE, "RGB", (1000, 600)), "JPEG")
    assert (prepare_image(big, max_side=256).width, prepare_image(big, max_side=256).height) == (256, 154)


def test_draft_decoding_keeps_content_of_large_jpeg() -> None:
    source = _photo(3, (3000, 2000))
    img = prepare_image(_encode(source, "JPEG", quality=92))
    expected = np.asarray(source.resize((img.width, img.height), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(_decode(img.jpeg) - expected).mean() < 4


def test_fit_within() -> None:
    assert fit_within((1500, 1000), 512) == (512, 341)
    assert fit_within((10, 5000), 512) == (1, 512)
    assert fit_within((300, 200), 512) == (300, 200)


def test_jpeg_quality_changes_output_size() -> None:
    data = _encode(_photo(1), "PNG")
    assert len(prepare_image(data, jpeg_quality=50).jpeg) < len(prepare_image(data, jpeg_quality=95).jpeg)


def test_invalid_parameters_are_programmer_errors() -> None:
    data = _encode(_photo(1, (32, 32)), "PNG")
    for kwargs in ({"max_side": 0}, {"max_pixels": 0}, {"jpeg_quality": 0}, {"jpeg_quality": 101}):
        with pytest.raises(ValueError):
            prepare_image(data, **kwargs)


# --- broken and hostile input ------------------------------------------------------------------------

def test_empty_file() -> None:
    assert _reason(b"") == "empty_file"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_corrupt(fmt: str) -> None:
    data = _encode(_photo(7, (400, 300)), fmt)
    assert _reason(data[: len(data) // 2]) == "corrupt_image"


def test_truncated_tiff_and_gif_are_corrupt() -> None:
    for fmt in ("TIFF", "GIF"):
        data = _encode(_photo(8, (300, 200)).convert("P") if fmt == "GIF" else _photo(8, (300, 200)), fmt)
        assert _reason(data[: len(data) // 2]) in ("corrupt_image", "unsupported_format")


def test_truncation_does_not_flip_global_pillow_setting() -> None:
    data = _encode(_photo(7, (400, 300)), "JPEG")
    _reason(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        b'<?xml version="1.0"?><article><fig id="F1"/></article>',
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n",
        b"GIF89a",
        b"\x89PNG\r\n\x1a\n",
    ],
    ids=["random", "pdf", "xml", "eps", "gif-header-only", "png-signature-only"],
)
def test_non_images_are_refused(data: bytes) -> None:
    assert _reason(data) in ("unsupported_format", "corrupt_image")


def test_pdf_is_unsupported_format() -> None:
    assert _reason(b"%PDF-1.7\n" + b"0" * 500) == "unsupported_format"


def test_corrupt_pixel_data_inside_valid_header() -> None:
    data = bytearray(_encode(_photo(5, (200, 150)), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 40: idat + 400] = b"\x00" * 360
    assert _reason(bytes(data)) == "corrupt_image"


def test_bomb_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # a few hundred bytes claiming 9000x9000 (81 Mpx): below Pillow's own limit, above ours
    data = _patch_png_size(_encode(Image.new("L", (8, 8)), "PNG"), 9000, 9000)
    assert len(data) < 200
    _no_decode(monkeypatch)
    with pytest.raises(ImageError) as info:
        prepare_image(data, max_pixels=50_000_000)
    assert info.value.reason == "decompression_bomb" and "9000x9000" in info.value.detail


def test_bilevel_image_above_small_max_pixels_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encode(Image.new("1", (3000, 2000), 1), "PNG")
    assert len(data) < 5000
    _no_decode(monkeypatch)
    assert _reason(data, max_pixels=1_000_000) == "decompression_bomb"


def test_huge_declared_canvas_is_a_bomb() -> None:
    data = _patch_png_size(_encode(Image.new("RGB", (8, 8)), "PNG"), 100_000, 100_000)
    assert _reason(data) == "decompression_bomb"
    assert _reason(data, max_pixels=10**12) == "decompression_bomb"  # Pillow's own hard limit


def test_pillow_bomb_warning_as_error_is_reported_as_bomb() -> None:
    data = _patch_png_size(_encode(Image.new("L", (8, 8)), "PNG"), 10_000, 9_500)  # 95 Mpx
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert _reason(data) == "decompression_bomb"


def test_max_pixels_is_not_a_global_setting() -> None:
    before = Image.MAX_IMAGE_PIXELS
    prepare_image(_encode(_photo(2, (64, 64)), "PNG"), max_pixels=10_000)
    assert before == Image.MAX_IMAGE_PIXELS


def test_image_error_pickles_and_converts() -> None:
    err = pickle.loads(pickle.dumps(ImageError("corrupt_image", "truncated")))
    assert (err.reason, err.detail, str(err)) == ("corrupt_image", "truncated", "corrupt_image: truncated")
    assert err.to_item_error("a.tar.gz!f1.jpg") == ItemError("a.tar.gz!f1.jpg", "corrupt_image", "truncated")


# --- hashes ---------------------------------------------------------------------------------------------

def _distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def test_phash_stable_across_reencoding_and_resizing() -> None:
    source = _photo(11, (1200, 900))
    variants = [
        _encode(source, "JPEG", quality=95),
        _encode(source, "JPEG", quality=50),
        _encode(source.resize((600, 450)), "JPEG", quality=70),
        _encode(source.resize((300, 225)), "PNG"),
    ]
    hashes = [prepare_image(v).phash for v in variants]
    assert all(_distance(hashes[0], h) <= 4 for h in hashes[1:]), hashes
    assert len({prepare_image(v).sha256 for v in variants}) == len(variants)


def test_phash_far_apart_for_unrelated_pictures() -> None:
    hashes = [prepare_image(_encode(_photo(seed), "JPEG")).phash for seed in range(20, 26)]
    distances = [_distance(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]]
    assert min(distances) > 10 and np.mean(distances) > 20


def test_phash_is_imagehash_of_the_normalised_image() -> None:
    data = _encode(_photo(4, (256, 192)), "PNG")
    img = prepare_image(data)
    expected = imagehash.phash(Image.open(io.BytesIO(data)).convert("RGB"))
    assert img.phash == str(expected)


def test_sha256_is_of_original_bytes() -> None:
    data = _encode(_photo(9, (700, 500)), "JPEG")
    assert prepare_image(data).sha256 == hashlib.sha256(data).hexdigest()


# --- real files ------------------------------------------------------------------------------------

@pytest.fixture
def real_images() -> Path:
    """The shared real sample images, or skip (they are not part of the repository)."""
    if not REALDATA_IMAGES.is_dir():
        pytest.skip(f"{REALDATA_IMAGES} not available")
    return REALDATA_IMAGES


@pytest.mark.parametrize("name", ["retina.jpg", "cell.png", "ihc.png", "microaneurysms.png"])
def test_real_images_prepare(real_images: Path, name: str) -> None:
    path = real_images / name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    data = path.read_bytes()
    img = prepare_image(data)
    source = Image.open(path)
    assert (img.orig_width, img.orig_height) == source.size
    assert img.orig_format == source.format
    assert max(img.width, img.height) == min(512, max(source.size))
    assert _decode(img.jpeg).std() > 5  # not blank


# --- resolve_graphic ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("href", "available", "expected"),
    [
        ("koaf197f1", ["koaf197f1.gif", "koaf197f1.jpg", "article.xml"], "koaf197f1.jpg"),
        ("f1", ["f1.gif", "f1.png"], "f1.png"),
        ("f1", ["f1.gif", "f1.tif"], "f1.tif"),
        ("f1", ["f1.gif", "f1.tiff", "f1.jpeg"], "f1.jpeg"),
        ("f1", ["f1.gif", "f1.webp"], "f1.webp"),
        ("f1", ["f1.gif"], "f1.gif"),
        ("figures/f1.tif", ["f1.tif", "f1.jpg"], "f1.tif"),
        ("F1.TIF", ["f1.tif"], "f1.tif"),
        ("KOAF197F1", ["koaf197f1.JPG"], "koaf197f1.JPG"),
        ("f1.tif", ["f1.jpg", "f1.pdf"], "f1.jpg"),
        ("f1.eps", ["f1.eps", "f1.png"], "f1.png"),
        ("pone.0012345.g001", ["pone.0012345.g001.tif", "pone.0012345.g001.jpg",
                               "pone.0012345.g002.jpg"], "pone.0012345.g001.jpg"),
        ("f1", ["f1.pdf", "f1.eps", "f1.svg", "f1.mp4", "f1.xml", "f1.ps"], None),
        ("f1", ["f10.jpg", "xf1.jpg", "f1a.png"], None),
        ("f1", [], None),
        ("", ["f1.jpg"], None),
        ("f1", ["sub/f1.jpg"], "sub/f1.jpg"),
        ("f1", ["F1.jpg", "f1.jpg"], "f1.jpg"),
    ],
)
def test_resolve_graphic(href: str, available: list[str], expected: str | None) -> None:
    assert resolve_graphic(href, available) == expected
    assert resolve_graphic(href, iter(available)) == expected  # any iterable, consumed once


def test_resolve_graphic_is_order_independent() -> None:
    names = ["f1.gif", "F1.JPG", "f1.jpg", "f1.png"]
    assert {resolve_graphic("f1", perm) for perm in (names, names[::-1], sorted(names))} == {"f1.jpg"}


# ------------------------------------------------------------------------------ resize backend


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_libvips_resize_matches_pillow_bicubic(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """libvips (the fast path) and Pillow (the fallback) give the same size and nearly the same pixels."""
    from biomedclip.data import images

    if images._vips() is None:
        pytest.skip("pyvips not installed")
    rng = np.random.default_rng(0)
    for width, height in [(768, 495), (769, 500), (1025, 1023), (2000, 131), (513, 4000)]:
        base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        source = Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC).convert(mode)
        target = images.fit_within(source.size, 512)
        fast = images._resize(source, target)
        monkeypatch.setattr(images, "_vips_module", False)  # as if libvips were not installed
        slow = images._resize(source, target)
        monkeypatch.undo()
        assert fast.size == slow.size == target and fast.mode == slow.mode == mode
        diff = np.abs(np.asarray(fast, dtype=int) - np.asarray(slow, dtype=int))
        assert diff.mean() < 1.0 and np.percentile(diff, 99.9) <= 12, (width, height, diff.mean(), diff.max())
    # modes with alpha stay with Pillow (premultiplied alpha)
    rgba = Image.new("RGBA", (900, 600), (10, 200, 30, 128))
    assert images._resize(rgba, (512, 341)).mode == "RGBA"
