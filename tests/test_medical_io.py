"""io/medical.py on real DICOM/NIfTI files and ones written with pydicom/nibabel/Pillow.

Every expected picture is computed independently here with plain numpy from the raw stored
values (rescale, DICOM windowing formulas of PS3.3 C.11.2, min–max), then compared pixel by pixel.
"""

from __future__ import annotations

import copy
import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biomedclip.io.medical import MedicalImageError, ReadOptions, is_medical, load_image, load_image_bytes

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")


def _grey(im: Image.Image) -> np.ndarray:
    assert im.mode == "RGB"
    arr = np.asarray(im).astype(int)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    return arr[..., 0]


def _minmax(values: np.ndarray) -> np.ndarray:
    v = values.astype(float)
    return np.rint((v - v.min()) / (v.max() - v.min()) * 255)


def _linear_exact(values: np.ndarray, center: float, width: float) -> np.ndarray:
    lo = center - width / 2
    return np.rint(np.clip((values.astype(float) - lo) / width, 0, 1) * 255)


def _linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM's default LINEAR window (PS3.3 C.11.2.1.2.1), written out by hand."""
    v = values.astype(float)
    c, w = center - 0.5, width - 1
    out = ((v - c) / w + 0.5) * 255
    out[v <= c - w / 2] = 0
    out[v > c + w / 2] = 255
    return np.rint(out)


@pytest.fixture(scope="module")
def images(realdata: Path) -> Path:
    return realdata / "images"


def test_ct_rescale_then_min_max(images: Path) -> None:
    ds = pydicom.dcmread(images / "CT_small.dcm")
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert "WindowCenter" not in ds  # so the loader falls back to min–max
    got = _grey(load_image(images / "CT_small.dcm"))
    assert got.shape == hu.shape
    assert np.abs(got - _minmax(hu)).max() <= 1


def test_ct_window_argument_in_hounsfield_units(images: Path) -> None:
    ds = pydicom.dcmread(images / "CT_small.dcm")
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    got = _grey(load_image(images / "CT_small.dcm", ReadOptions(window=(40, 400))))
    assert np.abs(got - _linear_exact(hu, 40, 400)).max() <= 1
    # a narrower window saturates more pixels: the argument really changes the picture
    narrow = _grey(load_image(images / "CT_small.dcm", ReadOptions(window=(40, 80))))
    assert (narrow == 255).sum() > (got == 255).sum()


def test_mr_uses_the_files_own_window(images: Path) -> None:
    ds = pydicom.dcmread(images / "MR_small.dcm")
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    got = _grey(load_image(images / "MR_small.dcm"))
    assert np.abs(got - _linear(ds.pixel_array, center, width)).max() <= 1


def test_monochrome1_is_inverted(images: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(images / "MR_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    target = tmp_path / "inverted.dcm"
    ds.save_as(target)
    normal = _grey(load_image(images / "MR_small.dcm"))
    assert (_grey(load_image(target)) == 255 - normal).all()


def _multiframe(tmp_path: Path, frames: int = 3) -> Path:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8, 6, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    volume = np.stack([np.full((8, 6), 100 * (f + 1), np.uint16) for f in range(frames)])
    volume[:, 0, 0] = 0  # a dark corner so min–max has a range
    volume[:, -1, -1] = 4000
    ds.PixelData = volume.tobytes()
    target = tmp_path / "multi.dcm"
    ds.save_as(target, enforce_file_format=True)
    return target


def test_multiframe_dicom_picks_the_requested_frame(tmp_path: Path) -> None:
    path = _multiframe(tmp_path)
    middle = _grey(load_image(path))
    assert middle[3, 3] == round(200 / 4000 * 255)  # frame 1 of 0..2 (value 200)
    assert _grey(load_image(path, ReadOptions(slice_index=2)))[3, 3] == round(300 / 4000 * 255)
    with pytest.raises(MedicalImageError, match=r"multi\.dcm.*frame 3 out of range"):
        load_image(path, ReadOptions(slice_index=3))


def test_dicom_detected_by_magic_without_suffix(images: Path) -> None:
    data = (images / "CT_small.dcm").read_bytes()
    from_bytes = load_image_bytes(data)  # no name at all: the DICM magic decides
    assert np.array_equal(np.asarray(from_bytes), np.asarray(load_image(images / "CT_small.dcm")))


def test_dicom_without_pixels_and_truncated(images: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(images / "CT_small.dcm")
    no_pixels = copy.deepcopy(ds)
    del no_pixels.PixelData
    target = tmp_path / "report.dcm"
    no_pixels.save_as(target)
    with pytest.raises(MedicalImageError, match=r"report\.dcm: DICOM object has no pixel data"):
        load_image(target)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes((images / "CT_small.dcm").read_bytes()[:5000])
    with pytest.raises(MedicalImageError, match=r"cut\.dcm"):
        load_image(cut)


def test_nifti_middle_axial_slice_matches_nibabel(images: Path) -> None:
    img = nib.as_closest_canonical(nib.load(images / "anatomical.nii"))
    volume = img.get_fdata()
    expected = _minmax(np.rot90(volume[:, :, volume.shape[2] // 2]))
    got = _grey(load_image(images / "anatomical.nii"))
    assert np.abs(got - expected).max() <= 1
    sagittal = _grey(load_image(images / "anatomical.nii", ReadOptions(axis=0, slice_index=5)))
    assert np.abs(sagittal - _minmax(np.rot90(volume[5]))).max() <= 1


def test_nifti_gz_bytes_and_4d_and_cal_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 1000, size=(6, 7, 5, 2)).astype(np.int16)  # 4-D: two volumes
    img = nib.Nifti1Image(vol, np.eye(4))
    path = tmp_path / "series.nii.gz"
    nib.save(img, path)
    expected = _minmax(np.rot90(vol[:, :, 2, 0]))  # first volume, middle slice
    assert np.abs(_grey(load_image(path)) - expected).max() <= 1
    assert gzip.decompress(path.read_bytes())[344:348] == b"n+1\x00"
    assert np.array_equal(np.asarray(load_image_bytes(path.read_bytes())), np.asarray(load_image(path)))
    img.header["cal_min"], img.header["cal_max"] = 200, 600
    windowed = tmp_path / "cal.nii"
    nib.save(img, windowed)
    assert np.abs(_grey(load_image(windowed)) - _linear_exact(np.rot90(vol[:, :, 2, 0]), 400, 400)).max() <= 1
    with pytest.raises(MedicalImageError, match=r"series\.nii\.gz: slice 9 out of range"):
        load_image(path, ReadOptions(slice_index=9))


def test_sixteen_bit_and_greyscale_png(tmp_path: Path) -> None:
    values = np.linspace(1000, 3000, 64 * 32).reshape(32, 64).astype(np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    assert np.abs(_grey(load_image(path)) - _minmax(values)).max() <= 1
    windowed = _grey(load_image(path, ReadOptions(window=(2000, 1000))))
    assert np.abs(windowed - _linear_exact(values, 2000, 1000)).max() <= 1
    grey = tmp_path / "grey.png"
    Image.fromarray((values // 16).astype(np.uint8)).save(grey)
    assert (_grey(load_image(grey)) == (values // 16).astype(np.uint8)).all()


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    out = np.asarray(load_image(path))
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[3, 3]) == (255, 255, 255)


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MedicalImageError, match=r"missing\.png: file not found"):
        load_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(MedicalImageError, match=r"empty\.jpg: the file is empty"):
        load_image(empty)
    text = tmp_path / "notes.png"
    text.write_text("hello, I am not an image")
    with pytest.raises(MedicalImageError, match=r"notes\.png: not an image, DICOM or NIfTI"):
        load_image(text)
    fake_nii = tmp_path / "fake.nii"
    fake_nii.write_bytes(b"\x00" * 400)
    with pytest.raises(MedicalImageError, match=r"fake\.nii: not a readable single-file NIfTI"):
        load_image(fake_nii)
    with pytest.raises(MedicalImageError, match="window width must be a positive"):
        load_image_bytes(b"x", "a.png", ReadOptions(window=(10, 0)))
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[:200])
    with pytest.raises(MedicalImageError, match=r"truncated\.jpg: corrupt or truncated"):
        load_image(truncated)


def test_error_survives_pickling_and_is_a_value_error() -> None:
    err = pickle.loads(pickle.dumps(MedicalImageError("x.dcm", "broken", "re-export it")))
    assert isinstance(err, ValueError)
    assert str(err) == "x.dcm: broken — re-export it" and err.source == "x.dcm"


def test_is_medical(images: Path, tmp_path: Path) -> None:
    assert is_medical(images / "CT_small.dcm") and is_medical(images / "anatomical.nii")
    assert not is_medical(images / "cell.png")
    renamed = tmp_path / "scan_without_suffix"
    renamed.write_bytes((images / "MR_small.dcm").read_bytes())
    assert is_medical(renamed)
    assert not is_medical(tmp_path / "does-not-exist")
