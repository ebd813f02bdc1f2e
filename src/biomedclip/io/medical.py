"""Any image a clinician or a dataset hands us → one RGB PIL image the model's preprocessing accepts.

BiomedCLIP was pretrained on figures (8-bit RGB JPEGs), but evaluation sets and users bring
DICOM series, NIfTI volumes and 16-bit TIFFs. Pixel values there are physical quantities
(Hounsfield units, MR signal) that only become a picture after the *modality* transform (rescale
slope/intercept) and a *window* (which value range maps to black..white). This module applies
those steps with the libraries that implement the standards — pydicom for the DICOM LUT pipeline,
nibabel for NIfTI orientation and scaling — and only adds the choice of slice and the final
8-bit conversion.

Window precedence (DICOM): the ``window=(center, width)`` argument, else the file's VOI LUT or
WindowCenter/WindowWidth, else the value range actually present (min–max). NIfTI: the argument,
else the header's ``cal_min``/``cal_max`` when set, else min–max of the shown slice.

Every failure is a :class:`MedicalImageError` (a ``ValueError``) whose message names the file and
says what to do, so a batch loader can count it and move on.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DICOM_SUFFIXES",
    "NIFTI_SUFFIXES",
    "MedicalImageError",
    "Window",
    "is_medical",
    "load_image",
    "load_image_bytes",
]

Window = tuple[float, float]
"""(center, width) in the image's own units, e.g. (40, 400) for a CT soft-tissue window."""

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")

_DICOM_MAGIC_OFFSET = 128
_NIFTI1_MAGIC = (b"n+1\x00",)  # single-file NIfTI-1 at offset 344 (ni1 = .hdr/.img pair, unsupported)
_NIFTI2_MAGIC = b"n+2\x00"  # NIfTI-2 at offset 4
_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_PEEK = 544  # enough for either NIfTI header's magic


class MedicalImageError(ValueError):
    """An image that cannot be read; ``source`` is the file (or upload name), the message says why."""

    def __init__(self, source: str, problem: str, hint: str = "") -> None:
        self.source = source
        self.problem = problem
        self.hint = hint
        super().__init__(f"{source}: {problem}" + (f" — {hint}" if hint else ""))

    def __reduce__(self) -> tuple[Any, ...]:  # survive pickling to and from worker processes
        return (type(self), (self.source, self.problem, self.hint))


# -- detection ------------------------------------------------------------------------------------

def _kind(head: bytes, name: str) -> str:
    """'dicom', 'nifti' or 'image' from the file name and its first bytes."""
    lower = name.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if lower.endswith(DICOM_SUFFIXES):
        return "dicom"
    if head[_DICOM_MAGIC_OFFSET:_DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    if head.startswith(_GZIP_MAGIC):
        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(_HEADER_PEEK)
        except (OSError, EOFError):  # a truncated peek still shows the header when it is NIfTI
            return "image"
    if head[344:348] in _NIFTI1_MAGIC or head[4:8] == _NIFTI2_MAGIC:
        return "nifti"
    return "image"


def is_medical(path: str | Path) -> bool:
    """True for DICOM or NIfTI files (by suffix, else by the DICM / NIfTI magic bytes)."""
    path = Path(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES + DICOM_SUFFIXES):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return _kind(head, path.name) != "image"


# -- entry points ---------------------------------------------------------------------------------

def load_image(path: str | Path, *, window: Window | None = None, slice_index: int | None = None,
               axis: int = -1) -> Image.Image:
    """Read an image file of any supported kind as RGB.

    Args:
        path: JPEG/PNG/TIFF/GIF/WebP/BMP (8/16-bit, greyscale or colour), DICOM (``.dcm`` or
            the DICM magic), NIfTI (``.nii``, ``.nii.gz``).
        window: (center, width) to map to black..white, overriding the file's own window.
        slice_index: which frame of a multi-frame DICOM/TIFF or which slice of a NIfTI volume
            (default: the middle one for volumes, the first frame for TIFFs).
        axis: NIfTI slicing axis after reorientation to RAS (-1 or 2 = axial, 1 = coronal,
            0 = sagittal).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise MedicalImageError(str(path), "file not found", "check the path") from exc
    except OSError as exc:
        raise MedicalImageError(str(path), f"cannot read the file ({exc.strerror or exc})") from exc
    return load_image_bytes(data, str(path), window=window, slice_index=slice_index, axis=axis)


def load_image_bytes(data: bytes, filename: str = "", *, window: Window | None = None,
                     slice_index: int | None = None, axis: int = -1) -> Image.Image:
    """Same as :func:`load_image` for bytes already in memory (uploads); ``filename`` helps detection."""
    source = filename or "<upload>"
    if not data:
        raise MedicalImageError(source, "the file is empty (0 bytes)")
    if window is not None:
        window = _check_window(source, window)
    kind = _kind(data[:4096], filename)
    if kind == "dicom":
        return _dicom(data, source, window, slice_index)
    if kind == "nifti":
        return _nifti(data, source, window, slice_index, axis)
    return _ordinary(data, source, window, slice_index)


def _check_window(source: str, window: Window) -> Window:
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise MedicalImageError(source, f"window must be (center, width), got {window!r}") from exc
    if not (np.isfinite(center) and np.isfinite(width) and width > 0):
        raise MedicalImageError(source, f"window width must be a positive number, got {window!r}")
    return center, width


# -- pixel value → 8-bit ---------------------------------------------------------------------------

def _windowed(values: np.ndarray, center: float, width: float, function: str = "LINEAR_EXACT") -> np.ndarray:
    """uint8 via pydicom's VOI windowing (PS3.3 C.11.2) into an 8-bit output range."""
    from pydicom import Dataset
    from pydicom.pixels import apply_windowing

    voi = Dataset()
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.BitsStored = 8
    voi.PixelRepresentation = 0
    voi.WindowCenter = center
    voi.WindowWidth = width
    voi.VOILUTFunction = function
    out = apply_windowing(np.nan_to_num(values.astype(np.float64)), voi)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _min_max(values: np.ndarray) -> np.ndarray:
    """uint8 stretching the finite values present to 0..255 (constant images become black)."""
    arr = values.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    scaled = np.where(finite, (arr - lo) * (255.0 / (hi - lo)), 0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(grey), mode="L").convert("RGB")


def _pick(source: str, count: int, index: int | None, what: str, default: int) -> int:
    chosen = default if index is None else index
    if not -count <= chosen < count:
        raise MedicalImageError(source, f"{what} {chosen} out of range: the file has {count}",
                                f"pass a slice index in 0..{count - 1}")
    return chosen % count


# -- DICOM ------------------------------------------------------------------------------------------

_PIXEL_ELEMENTS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _dicom(data: bytes, source: str, window: Window | None, slice_index: int | None) -> Image.Image:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise MedicalImageError(source, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    if not any(element in ds for element in _PIXEL_ELEMENTS):
        raise MedicalImageError(source, "DICOM object has no pixel data",
                                "it is a report, DICOMDIR or other non-image object; pass an image instance")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # decoders raise many types: missing plugin, truncated data, bad tags
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise MedicalImageError(source, f"cannot decode DICOM pixel data ({name}): {exc}",
                                "compressed syntaxes need a decoder plugin (pip install pylibjpeg "
                                "pylibjpeg-libjpeg pylibjpeg-openjpeg)") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[_pick(source, frames, slice_index, "frame", frames // 2)]
    elif slice_index not in (None, 0, -1):
        _pick(source, 1, slice_index, "frame", 0)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        return Image.fromarray(_colour_to_uint8(apply_color_lut(arr, ds)), mode="RGB")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # RGB / YBR (pydicom converts YBR to RGB)
        return Image.fromarray(_colour_to_uint8(arr[..., :3]), mode="RGB")
    if arr.ndim != 2:
        raise MedicalImageError(source, f"unexpected DICOM pixel array shape {arr.shape}")
    values = apply_modality_lut(arr, ds)  # rescale slope/intercept or modality LUT → physical units
    if window is not None:
        grey = _windowed(values, *window)
    elif "VOILUTSequence" in ds:
        grey = _lut_to_uint8(apply_voi(values, ds), ds)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        if width <= 0 or (function == "LINEAR" and width < 1):
            grey = _min_max(values)
        else:
            grey = _windowed(values, center, width, function)
    else:
        grey = _min_max(values)
    if photometric == "MONOCHROME1":  # 0 means white in MONOCHROME1
        grey = 255 - grey
    return _grey_to_rgb(grey)


def _first(value: Any) -> float:
    """WindowCenter/Width may hold several alternative windows; the first is the default view."""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _lut_to_uint8(values: np.ndarray, ds: Any) -> np.ndarray:
    """A VOI LUT's output (0 .. 2**bits-1, bits from its descriptor) scaled to 0..255."""
    try:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    except (AttributeError, IndexError, TypeError, ValueError):
        return _min_max(values)
    top = float(2 ** bits - 1) if bits > 0 else float(values.max() or 1)
    return np.clip(np.rint(values.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def _colour_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return _min_max(arr)


# -- NIfTI ------------------------------------------------------------------------------------------

def _nifti_image(data: bytes, source: str) -> Any:
    import nibabel as nib

    raw = data
    if raw.startswith(_GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise MedicalImageError(source, f"corrupt gzip stream ({exc})", "re-export the .nii.gz") from exc
    klass = nib.Nifti2Image if raw[4:8] == _NIFTI2_MAGIC else nib.Nifti1Image
    try:
        return klass.from_bytes(raw)
    except Exception as exc:  # nibabel raises HeaderDataError, ValueError, EOFError …
        raise MedicalImageError(source, f"not a readable single-file NIfTI ({type(exc).__name__}: {exc})",
                                "pass a .nii or .nii.gz file (Analyze .hdr/.img pairs are not supported)") from exc


def _nifti(data: bytes, source: str, window: Window | None, slice_index: int | None, axis: int) -> Image.Image:
    import nibabel as nib

    img = _nifti_image(data, source)
    try:
        if len(img.shape) >= 3:
            img = nib.as_closest_canonical(img)  # RAS+: axis 2 runs inferior→superior (axial slices)
        volume = np.asarray(img.get_fdata(dtype=np.float32))  # applies scl_slope / scl_inter
    except Exception as exc:  # truncated data block, RGB datatypes get_fdata cannot scale, …
        raise MedicalImageError(source, f"cannot read NIfTI voxel data ({type(exc).__name__}: {exc})") from exc
    while volume.ndim > 3:  # 4D+ (time series, vectors): the first volume
        volume = volume[..., 0]
    if volume.ndim == 3 and volume.shape[-1] == 1 and axis in (-1, 2) and slice_index is None:
        volume = volume[..., 0]
    if volume.ndim == 3:
        if not -3 <= axis < 3:
            raise MedicalImageError(source, f"axis {axis} does not exist in a 3-D volume", "use 0, 1 or 2 (or -1)")
        count = volume.shape[axis]
        plane = np.take(volume, _pick(source, count, slice_index, "slice", count // 2), axis=axis)
    elif volume.ndim == 2:
        plane = volume
    else:
        raise MedicalImageError(source, f"NIfTI data of shape {volume.shape} is not an image")
    plane = np.rot90(plane)  # array rows run left→right; turn so anterior/superior is up, as viewers show it
    if window is None:
        cal_min, cal_max = float(img.header.get("cal_min", 0) or 0), float(img.header.get("cal_max", 0) or 0)
        if cal_max > cal_min:  # the display range the writer chose
            window = ((cal_min + cal_max) / 2, cal_max - cal_min)
    return _grey_to_rgb(_min_max(plane) if window is None else _windowed(plane, *window))


# -- ordinary image files ----------------------------------------------------------------------------

def _ordinary(data: bytes, source: str, window: Window | None, slice_index: int | None) -> Image.Image:
    from biomedclip.data.images import ALLOWED_FORMATS

    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        if slice_index is not None:
            frames = int(getattr(im, "n_frames", 1))
            im.seek(_pick(source, frames, slice_index, "frame", 0))
        im.load()
    except MedicalImageError:
        raise
    except UnidentifiedImageError as exc:
        raise MedicalImageError(
            source, f"not an image, DICOM or NIfTI file (starts with {data[:8]!r})",
            f"supported: {', '.join(ALLOWED_FORMATS)}, DICOM (.dcm), NIfTI (.nii, .nii.gz)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MedicalImageError(source, f"image too large to decode safely ({exc})") from exc
    except Exception as exc:  # truncated or damaged files raise OSError, SyntaxError, ValueError …
        raise MedicalImageError(source, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from exc
    im = ImageOps.exif_transpose(im)
    single_channel = im.mode in ("I", "F", "L") or im.mode.startswith("I;")
    if window is not None and single_channel:
        return _grey_to_rgb(_windowed(np.asarray(im), *window))
    if im.mode in ("I", "F") or im.mode.startswith("I;"):
        return _grey_to_rgb(_min_max(np.asarray(im)))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", im.size, (255, 255, 255))  # figures are drawn for a white page
        background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")
