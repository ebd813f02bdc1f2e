"""Any image a clinician or a dataset hands us → one RGB PIL image the model's preprocessing accepts.

BiomedCLIP was pretrained on figures (8-bit RGB JPEGs), but evaluation sets and users bring
DICOM series, NIfTI volumes and 16-bit TIFFs. Pixel values there are physical quantities
(Hounsfield units, MR signal) that only become a picture after the *modality* transform (rescale
slope/intercept) and a *window* (which value range maps to black..white). This module applies
those steps with the libraries that implement the standards — pydicom for the DICOM LUT pipeline,
nibabel for NIfTI orientation and scaling — and only adds the choice of slice. The final
pixels → 8-bit RGB step is :mod:`biomedclip.io.pixels`, the one conversion the data build uses too.

This module also owns the two other questions every reader asks first: *what is this file*
(:func:`sniff`, from its bytes; the data build, the loaders and the server's upload checks all ask
it) and *how large will it be once decoded* (:func:`declared_pixels`, from the header alone, so
decompression bombs are refused before a byte is inflated). The reading choices a user can make —
display window, frame/slice, NIfTI axis; CLI ``--window``, ``--slice``, ``--axis`` — travel as one
:class:`ReadOptions`.

Window precedence (DICOM): ``ReadOptions.window``, else the file's VOI LUT or
WindowCenter/WindowWidth, else the value range actually present (min–max). NIfTI: the option,
else the header's ``cal_min``/``cal_max`` when set, else min–max of the shown slice.

Every failure is a :class:`MedicalImageError` (a ``ValueError``) whose message names the file and
says what to do, so a batch loader can count it and move on.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from biomedclip.errors import BiomedclipError
from biomedclip.io.pixels import Window, array_to_rgb, grey_to_rgb, stretch_to_uint8, to_rgb, window_to_uint8

__all__ = [
    "ALLOWED_FORMATS",
    "DICOM_SUFFIXES",
    "NIFTI_SUFFIXES",
    "MedicalImageError",
    "ReadOptions",
    "Window",
    "declared_pixels",
    "is_medical",
    "load_image",
    "load_image_bytes",
    "parse_window",
    "sniff",
]

#: Pillow formats we agree to decode. An allow-list keeps exotic decoders off untrusted input
#: (EPS, for instance, would run Ghostscript). Camera JPEGs with extra frames come back as format
#: "MPO"; the JPEG opener handles them.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP")

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")

_DICOM_MAGIC_OFFSET = 128
_NIFTI1_MAGIC = b"n+1\x00"  # single-file NIfTI-1 at offset 344 (ni1 = .hdr/.img pair, unsupported)
_NIFTI2_MAGIC = b"n+2\x00"  # NIfTI-2 at offset 4
_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_PEEK = 544  # enough for either NIfTI header's magic
SNIFF_BYTES = 4096
"""How many leading bytes :func:`sniff` needs (a gzip'd NIfTI header fits in them)."""


class MedicalImageError(BiomedclipError, ValueError):
    """An image that cannot be read; ``source`` is the file (or upload name), the message says why."""

    def __init__(self, source: str, problem: str, hint: str = "") -> None:
        self.source = source
        self.problem = problem
        self.hint = hint
        super().__init__(f"{source}: {problem}" + (f" — {hint}" if hint else ""))

    def __reduce__(self) -> tuple[Any, ...]:  # survive pickling to and from worker processes
        return (type(self), (self.source, self.problem, self.hint))


@dataclass(frozen=True)
class ReadOptions:
    """How one file becomes one picture (CLI: ``--window``, ``--slice``, ``--axis``).

    ``window``: (center, width) mapped to black..white, overriding the file's own window; for
    DICOM, NIfTI and single-channel 16/32-bit images. ``slice_index``: which frame of a
    multi-frame DICOM/TIFF or which slice of a NIfTI volume (default: the middle one for volumes
    and multi-frame DICOM, the first frame for TIFFs). ``axis``: NIfTI slicing axis after
    reorientation to RAS (-1 or 2 = axial, 1 = coronal, 0 = sagittal).
    """

    window: Window | None = None
    slice_index: int | None = None
    axis: int = -1

    def key(self) -> str:
        """A stable string for cache keys: two option sets read a file alike iff their keys are equal."""
        return json.dumps([self.window, self.slice_index, self.axis])

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``window`` as a list), as stored in embedding run metadata."""
        return {"window": list(self.window) if self.window else None, "slice_index": self.slice_index,
                "axis": self.axis}


def parse_window(text: str | None) -> Window | None:
    """``'CENTER,WIDTH'`` → (center, width); None or '' → None. ValueError says what to type."""
    if not text:
        return None
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise ValueError(f"use CENTER,WIDTH, e.g. 40,400 — got {text!r}") from exc
    if not (np.isfinite(center) and np.isfinite(width) and width > 0):
        raise ValueError(f"the width must be a positive number — got {text!r}")
    return center, width


# -- detection ------------------------------------------------------------------------------------

def sniff(data: bytes, name: str = "") -> str | None:
    """What the bytes are: 'dicom', 'nifti', 'png', 'jpeg', 'tiff', 'bmp', 'gif', 'webp', or None.

    The bytes decide (``data`` may be just the first :data:`SNIFF_BYTES`): a misleading suffix
    cannot send a file to the wrong decoder. DICOM is tested first, because its 128-byte preamble
    may itself be a TIFF header (dual-personality files); a gzip stream is a NIfTI volume when its
    decompressed header carries the NIfTI magic. Only when no magic matches does ``name`` count:
    ``.dcm``/``.dicom`` (DICOM written without the preamble) and ``.nii``/``.nii.gz`` (so a damaged
    volume gets NIfTI's error message). Callers that must not trust names (uploads) omit it.
    """
    if data[_DICOM_MAGIC_OFFSET:_DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if _is_nifti_header(_nifti_head(data)):
        return "nifti"
    lower = name.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if lower.endswith(DICOM_SUFFIXES):
        return "dicom"
    return None


def _nifti_head(data: bytes) -> bytes:
    """The first bytes of a NIfTI header: decompressed when gzip'd (b'' when the stream is unreadable)."""
    if not data.startswith(_GZIP_MAGIC):
        return data[:_HEADER_PEEK]
    try:  # a truncated peek still yields the header when it is NIfTI
        return gzip.GzipFile(fileobj=io.BytesIO(data[:SNIFF_BYTES])).read(_HEADER_PEEK)
    except (OSError, EOFError):
        return b""


def _is_nifti_header(head: bytes) -> bool:
    return head[344:348] == _NIFTI1_MAGIC or head[4:8] == _NIFTI2_MAGIC


def is_medical(path: str | Path) -> bool:
    """True for DICOM or NIfTI files (by the DICM / NIfTI magic bytes, else by suffix)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return path.name.lower().endswith(NIFTI_SUFFIXES + DICOM_SUFFIXES)
    return sniff(head, path.name) in ("dicom", "nifti")


def declared_pixels(data: bytes, kind: str, source: str = "<upload>") -> int:
    """How many pixels decoding would produce, read from the header alone (nothing is inflated).

    ``kind`` is :func:`sniff`'s answer. Images: width × height; DICOM: rows × columns × frames;
    NIfTI: the voxels of the whole volume. A header that cannot be read is a
    :class:`MedicalImageError`. This is what stops decompression bombs: a few-kB PNG claiming
    100,000 × 100,000 pixels is refused by the caller before it is decoded.
    """
    if kind == "nifti":
        return _nifti_voxels(data, source)
    if kind == "dicom":
        return _dicom_pixels(data, source)
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
            width, height = im.size
    except Image.DecompressionBombError:
        raise
    except Exception as exc:  # PIL raises OSError / SyntaxError / ValueError for broken headers
        raise MedicalImageError(source, f"cannot read the image header ({type(exc).__name__}: {exc})") from exc
    return width * height


def _nifti_voxels(data: bytes, source: str) -> int:
    import nibabel as nib

    if data.startswith(_GZIP_MAGIC):
        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(data)).read(_HEADER_PEEK)
        except (OSError, EOFError) as exc:
            raise MedicalImageError(source, f"corrupt gzip stream ({exc})", "re-export the .nii.gz") from exc
    else:
        head = data[:_HEADER_PEEK]
    if not _is_nifti_header(head):
        raise MedicalImageError(source, "not a single-file NIfTI volume (no n+1/n+2 magic)")
    klass = nib.Nifti2Header if head[4:8] == _NIFTI2_MAGIC else nib.Nifti1Header
    try:
        shape = klass.from_fileobj(io.BytesIO(head)).get_data_shape()
    except Exception as exc:  # nibabel raises HeaderDataError, ValueError, …
        raise MedicalImageError(source, f"unreadable NIfTI header ({type(exc).__name__}: {exc})") from exc
    voxels = 1
    for size in shape:
        voxels *= max(int(size), 1)
    return voxels


def _dicom_pixels(data: bytes, source: str) -> int:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        return rows * cols * int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as exc:  # pydicom raises many types for damaged headers
        raise MedicalImageError(source, f"unreadable DICOM header ({type(exc).__name__}: {exc})") from exc


# -- entry points ---------------------------------------------------------------------------------

def load_image(path: str | Path, options: ReadOptions | None = None) -> Image.Image:
    """Read an image file of any supported kind as RGB.

    ``path``: JPEG/PNG/TIFF/GIF/WebP/BMP (8/16-bit, greyscale or colour), DICOM (the DICM magic
    or ``.dcm``), NIfTI (``.nii``, ``.nii.gz``). ``options``: window, slice and axis
    (:class:`ReadOptions`; default: the file's own window, the middle slice, axial).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise MedicalImageError(str(path), "file not found", "check the path") from exc
    except OSError as exc:
        raise MedicalImageError(str(path), f"cannot read the file ({exc.strerror or exc})") from exc
    return load_image_bytes(data, str(path), options)


def load_image_bytes(data: bytes, filename: str = "", options: ReadOptions | None = None) -> Image.Image:
    """Same as :func:`load_image` for bytes already in memory (uploads); ``filename`` names errors."""
    source = filename or "<upload>"
    options = options or ReadOptions()
    if not data:
        raise MedicalImageError(source, "the file is empty (0 bytes)")
    window = None if options.window is None else _check_window(source, options.window)
    kind = sniff(data[:SNIFF_BYTES], filename)
    if kind == "dicom":
        return _dicom(data, source, window, options.slice_index)
    if kind == "nifti":
        return _nifti(data, source, window, options.slice_index, options.axis)
    return _ordinary(data, source, window, options.slice_index)


def _check_window(source: str, window: Window) -> Window:
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise MedicalImageError(source, f"window must be (center, width), got {window!r}") from exc
    if not (np.isfinite(center) and np.isfinite(width) and width > 0):
        raise MedicalImageError(source, f"window width must be a positive number, got {window!r}")
    return center, width


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
        return array_to_rgb(apply_color_lut(arr, ds))
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # RGB / YBR (pydicom converts YBR to RGB)
        return array_to_rgb(arr[..., :3])
    if arr.ndim != 2:
        raise MedicalImageError(source, f"unexpected DICOM pixel array shape {arr.shape}")
    values = apply_modality_lut(arr, ds)  # rescale slope/intercept or modality LUT → physical units
    if window is not None:
        grey = window_to_uint8(values, *window)
    elif "VOILUTSequence" in ds:
        grey = _lut_to_uint8(apply_voi(values, ds), ds)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        if width <= 0 or (function == "LINEAR" and width < 1):
            grey = stretch_to_uint8(values)
        else:
            grey = window_to_uint8(values, center, width, function)
    else:
        grey = stretch_to_uint8(values)
    if photometric == "MONOCHROME1":  # 0 means white in MONOCHROME1
        grey = 255 - grey
    return grey_to_rgb(grey)


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
        return stretch_to_uint8(values)
    top = float(2 ** bits - 1) if bits > 0 else float(values.max() or 1)
    return np.clip(np.rint(values.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


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
    return array_to_rgb(plane, window)


# -- ordinary image files ----------------------------------------------------------------------------

def _ordinary(data: bytes, source: str, window: Window | None, slice_index: int | None) -> Image.Image:
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
    return to_rgb(ImageOps.exif_transpose(im), window)
