"""One image → RGB path: the data build and every inference path give the same pixels for the same bytes.

The build (``data.images.decode_figure`` / ``prepare_image``) and inference (``io.load_image`` and
``load_image_bytes``, the server's ``decode_upload``, ``embed``'s item reader, the evaluation
datasets) all convert through :mod:`biomedclip.io.pixels`. Each case below is written with
Pillow/pydicom/nibabel, read by every path, and the RGB arrays must be equal — not close — at a
size the build does not resize. Format sniffing has one owner as well (``io.medical.sniff``).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biomedclip.data.images import decode_figure, prepare_image
from biomedclip.evaluate.datasets import ArrayImages, FileImages, MemoryImages
from biomedclip.io.medical import ReadOptions, load_image, load_image_bytes, sniff
from biomedclip.io.pixels import stretch_to_uint8, to_rgb
from biomedclip.search.items import Item, load_item_image
from biomedclip.serve.uploads import UploadLimits, UploadRejected, check_upload, decode_upload

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

H, W = 24, 40
RAMP16 = np.tile(np.linspace(1000, 3000, W), (H, 1)).astype(np.uint16)  # 11-bit data in 16 bits


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _grey8() -> bytes:
    return _encode(Image.fromarray(np.tile(np.arange(W, dtype=np.uint8) * 6, (H, 1))), "PNG")


def _palette(transparent: bool) -> bytes:
    im = Image.new("P", (W, H), 0)
    im.putpalette([255, 0, 0, 0, 128, 255, 20, 200, 20] + [0] * 759)
    im.paste(1, (0, 0, W // 2, H))
    im.paste(2, (W // 2, H // 2, W, H))
    return _encode(im, "PNG", **({"transparency": 0} if transparent else {}))


def _cmyk() -> bytes:
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1)))
    flat = Image.new("L", (W, H), 60)
    return _encode(Image.merge("CMYK", (ramp, flat, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT), flat)),
                   "JPEG", quality=95)


def _rgba() -> bytes:
    arr = np.zeros((H, W, 4), np.uint8)
    arr[..., 0], arr[..., 1] = 200, np.linspace(0, 255, W).astype(np.uint8)
    arr[..., 3] = np.linspace(0, 255, H).astype(np.uint8)[:, None]  # opaque at the bottom, clear at the top
    return _encode(Image.fromarray(arr, mode="RGBA"), "PNG")


def _la() -> bytes:
    grey = Image.fromarray(np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1)))
    alpha = Image.fromarray(np.tile(np.linspace(255, 0, H).astype(np.uint8)[:, None], (1, W)))
    return _encode(Image.merge("LA", (grey, alpha)), "PNG")


def _float_nan() -> bytes:
    values = np.tile(np.linspace(-1.0, 2.0, W, dtype=np.float32), (H, 1))
    values[:, :5] = np.nan
    values[0, 6] = np.inf
    return _encode(Image.fromarray(values), "TIFF")


def _dicom(values: np.ndarray, window: tuple[float, float] | None = None, photometric: str = "MONOCHROME2",
           slope: float | None = None) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, -1024
    ds.PixelData = values.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _nifti(gz: bool) -> bytes:
    rng = np.random.default_rng(3)
    volume = rng.integers(0, 4000, size=(W, H, 5)).astype(np.int16)
    data = nib.Nifti1Image(volume, np.eye(4)).to_bytes()
    return gzip.compress(data, mtime=0) if gz else data


# name → bytes; the name's suffix is what a user's file would carry
CASES: dict[str, Callable[[], bytes]] = {
    "grey.png": _grey8,
    "sixteen.png": lambda: _encode(Image.fromarray(RAMP16), "PNG"),
    "sixteen.tif": lambda: _encode(Image.fromarray(RAMP16), "TIFF"),
    "constant7.tif": lambda: _encode(Image.fromarray(np.full((H, W), 7, np.uint16)), "TIFF"),
    "constant0.png": lambda: _encode(Image.fromarray(np.zeros((H, W), np.uint16)), "PNG"),
    "int32.tif": lambda: _encode(Image.fromarray((RAMP16.astype(np.int32) - 2000) * 1000), "TIFF"),
    "float_nan.tif": _float_nan,
    "palette.png": lambda: _palette(False),
    "palette_transparent.png": lambda: _palette(True),
    "palette.gif": lambda: _encode(Image.open(io.BytesIO(_palette(False))), "GIF"),
    "cmyk.jpg": _cmyk,
    "rgba.png": _rgba,
    "la.png": _la,
    "bilevel.png": lambda: _encode(Image.fromarray(RAMP16 > 2000), "PNG"),
    "ct.dcm": lambda: _dicom(RAMP16, slope=1.0),
    "windowed.dcm": lambda: _dicom(RAMP16, window=(2000, 800)),
    "monochrome1.dcm": lambda: _dicom(RAMP16, photometric="MONOCHROME1"),
    "constant.dcm": lambda: _dicom(np.full((H, W), 500, np.uint16)),
    "volume.nii": lambda: _nifti(False),
    "volume.nii.gz": lambda: _nifti(True),
}
CONTENT_TYPES = {".png": "image/png", ".tif": "image/tiff", ".gif": "image/gif", ".jpg": "image/jpeg",
                 ".dcm": "application/dicom", ".nii": "application/x-nifti", ".gz": "application/gzip"}


def _every_path(tmp_path: Path, name: str, data: bytes) -> dict[str, np.ndarray]:
    """The RGB pixels each stage makes of ``data`` (the build first)."""
    path = tmp_path / name
    path.write_bytes(data)
    content_type = CONTENT_TYPES[Path(name).suffix]
    images = {
        "build": decode_figure(data, max_side=4096).rgb,
        "load_image (files)": load_image(path),
        "load_image_bytes (shards)": load_image_bytes(data, name),
        "decode_upload (server)": decode_upload(data, name, content_type, UploadLimits()),
        "load_item_image (embed)": load_item_image(Item(key=name, source=str(path))),
        "FileImages (eval)": FileImages([path]).load(0),
        "MemoryImages (eval)": MemoryImages([(name, data)]).load(0),
    }
    for stage, im in images.items():
        assert im.mode == "RGB" and im.size == images["build"].size, stage
    return {stage: np.asarray(im) for stage, im in images.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_build_and_inference_give_the_same_pixels(tmp_path: Path, name: str) -> None:
    arrays = _every_path(tmp_path, name, CASES[name]())
    build = arrays["build"]
    for stage, arr in arrays.items():
        assert np.array_equal(arr, build), f"{name}: {stage} differs from the build"
    assert build.std() > 0 or name.startswith("constant")  # each case carries a picture


def test_pixel_rules_pinned() -> None:
    """The shared numbers: 16-bit stretch, constant images, NaN, alpha on white, DICOM window and LUTs."""
    grab = {name: decode_figure(CASES[name](), max_side=4096).rgb for name in CASES}
    grey = {name: np.asarray(im)[..., 0].astype(int) for name, im in grab.items()}
    expected = np.floor((RAMP16 - 1000.0) * 255.0 / 2000.0 + 0.5)
    assert np.array_equal(grey["sixteen.png"], expected) and np.array_equal(grey["sixteen.tif"], expected)
    assert np.array_equal(grey["int32.tif"], expected)  # int32 is stretched the same way
    assert (grey["constant7.tif"] == 255).all()  # a constant above zero reads as a full mask: white
    assert (grey["constant0.png"] == 0).all()  # zero (or below) reads as empty: black
    assert (grey["constant.dcm"] == 255).all()  # DICOM without a window follows the same rule
    assert (grey["float_nan.tif"][:, :5] == 0).all() and grey["float_nan.tif"][0, 6] == 0
    assert grey["float_nan.tif"][1, 5] == 0 and grey["float_nan.tif"][1, -1] == 255
    assert np.array_equal(grey["ct.dcm"], expected)  # rescale then min–max: same as the 16-bit PNG
    assert np.array_equal(grey["monochrome1.dcm"], 255 - expected)
    lo, hi = 2000 - 400, 2000 + 400  # LINEAR window of the file (PS3.3 C.11.2.1.2.1)
    assert grey["windowed.dcm"][0, 0] == 0 and grey["windowed.dcm"][0, -1] == 255
    assert 0 < grey["windowed.dcm"][0, W // 2] < 255 and lo < RAMP16[0, W // 2] < hi
    rgba = np.asarray(grab["rgba.png"]).astype(int)
    assert tuple(rgba[0, 0]) == (255, 255, 255) and tuple(rgba[-1, 0]) == (200, 0, 0)  # composited on white
    palette = np.asarray(grab["palette_transparent.png"])
    assert tuple(palette[-1, -1]) == (20, 200, 20) and tuple(palette[0, -1]) == (255, 255, 255)
    assert tuple(np.asarray(grab["palette.png"])[0, -1]) == (255, 0, 0)


def test_constant_sixteen_bit_is_white_in_the_shards_too() -> None:
    """The bug this module fixed: the build said white, inference said black."""
    data = CASES["constant7.tif"]()
    shard = np.asarray(Image.open(io.BytesIO(prepare_image(data).jpeg)).convert("RGB"))
    assert (shard >= 250).all() and (np.asarray(load_image_bytes(data, "constant7.tif")) == 255).all()


def test_arrays_follow_the_same_rules() -> None:
    """MedMNIST-style arrays (evaluation) convert like the equivalent image file."""
    volumes = np.stack([RAMP16, np.full((H, W), 7, np.uint16)])
    arrays = ArrayImages(volumes)
    assert np.array_equal(np.asarray(arrays.load(0)), np.asarray(load_image_bytes(CASES["sixteen.png"]())))
    assert np.array_equal(np.asarray(arrays.load(1)), np.asarray(load_image_bytes(CASES["constant7.tif"]())))
    windowed = ArrayImages(volumes, options=ReadOptions(window=(2000, 1000))).load(0)
    from_file = load_image_bytes(CASES["sixteen.png"](), "", ReadOptions(window=(2000, 1000)))
    assert np.array_equal(np.asarray(windowed), np.asarray(from_file))
    assert np.array_equal(stretch_to_uint8(RAMP16), np.asarray(to_rgb(Image.fromarray(RAMP16)))[..., 0])


def test_one_sniffer_for_files_uploads_and_the_build(tmp_path: Path) -> None:
    kinds = {name: sniff(make()) for name, make in CASES.items()}
    assert kinds["ct.dcm"] == "dicom" and kinds["volume.nii"] == kinds["volume.nii.gz"] == "nifti"
    assert kinds["cmyk.jpg"] == "jpeg" and kinds["sixteen.tif"] == "tiff" and kinds["palette.gif"] == "gif"
    for name, make in CASES.items():  # the server's check answers with the same sniffer
        data = make()
        assert check_upload(data, name, CONTENT_TYPES[Path(name).suffix], UploadLimits()) == kinds[name], name
    png = CASES["sixteen.png"]()
    # bytes decide, not names: a PNG called .dcm is a PNG for the loader, the server and the build
    assert sniff(png, "scan.dcm") == "png"
    misnamed = tmp_path / "scan.dcm"
    misnamed.write_bytes(png)
    assert np.array_equal(np.asarray(load_image(misnamed)), np.asarray(decode_figure(png).rgb))
    # a name only counts when no magic matches (DICOM written without its 128-byte preamble)
    assert sniff(b"\x08\x00\x05\x00CS" + bytes(200), "raw.dcm") == "dicom"
    assert sniff(b"\x08\x00\x05\x00CS" + bytes(200)) is None
    with pytest.raises(UploadRejected) as refused:
        check_upload(gzip.compress(b"just text"), "notes.nii.gz", "application/gzip", UploadLimits())
    assert refused.value.status == 415
    assert decode_figure(CASES["ct.dcm"]()).orig_format == "DICOM"
    assert prepare_image(CASES["volume.nii.gz"]()).orig_format == "NIFTI"
