"""Turn an uploaded file into an RGB image — or a clear 4xx refusal — without ever risking the server.

A public endpoint receives whatever a browser or a script sends. Before anything is decoded:

* size: more than ``max_bytes`` → 413 (the request-body middleware in :mod:`.app` already refuses
  bodies that announce or stream more than that, so this is the second line);
* type: the declared content type must be an image/DICOM/NIfTI type (or a generic binary type
  browsers use for ``.dcm``/``.nii``), and the first bytes must be one of the formats we read —
  otherwise 415, whatever the file name claims;
* pixel count: read from the header (PIL lazily, DICOM without pixel data, NIfTI header only);
  above ``max_pixels`` (2-D) or ``max_voxels`` (volumes) → 413. This is what stops decompression
  bombs: a few-kB PNG claiming 100,000 × 100,000 pixels is refused before a byte is inflated.

Decoding itself goes through :func:`biomedclip.io.medical.load_image_bytes`; a file that passes
the checks but is damaged (truncated JPEG, corrupt DICOM) gives 422 with the decoder's reason.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass

from PIL import Image

GENERIC_TYPES: frozenset[str] = frozenset({"", "application/octet-stream", "binary/octet-stream"})
IMAGE_TYPES: frozenset[str] = frozenset({
    "image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/tiff", "image/x-tiff", "image/bmp",
    "image/gif", "image/webp", "application/dicom", "application/x-dicom", "image/dicom",
    "application/x-nifti", "application/gzip", "application/x-gzip",
})
FORMATS_HELP = "PNG, JPEG, TIFF, BMP, GIF, WebP, DICOM (.dcm) or NIfTI (.nii, .nii.gz)"


class UploadRejected(Exception):
    """An upload the server refuses: HTTP ``status`` and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class UploadLimits:
    """Caps on what one upload may cost."""

    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_voxels: int = 2**28


def sniff(data: bytes) -> str | None:
    """The format the bytes really are (png, jpeg, tiff, bmp, gif, webp, dicom, nifti, gzip) or None.

    DICOM is tested first: its 128-byte preamble may itself be a TIFF header (dual-personality files).
    """
    if data[128:132] == b"DICM":
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
    if data[344:348] == b"n+1\x00" or data[4:8] == b"n+2\x00":
        return "nifti"
    if data.startswith(b"\x1f\x8b"):
        return "gzip"
    return None


def _nifti_header(data: bytes) -> bytes:
    if data.startswith(b"\x1f\x8b"):
        try:
            return gzip.GzipFile(fileobj=io.BytesIO(data)).read(544)
        except (OSError, EOFError) as exc:
            raise UploadRejected(422, f"corrupt gzip stream ({exc})") from exc
    return data[:544]


def _nifti_voxels(data: bytes) -> int:
    import nibabel as nib

    head = _nifti_header(data)
    klass = nib.Nifti2Header if head[4:8] == b"n+2\x00" else nib.Nifti1Header
    if not (head[344:348] == b"n+1\x00" or head[4:8] == b"n+2\x00"):
        raise UploadRejected(415, f"the gzip file is not a NIfTI volume; send {FORMATS_HELP}")
    try:
        header = klass.from_fileobj(io.BytesIO(head))
        shape = header.get_data_shape()
    except Exception as exc:  # nibabel raises HeaderDataError, ValueError, …
        raise UploadRejected(422, f"unreadable NIfTI header ({type(exc).__name__}: {exc})") from exc
    voxels = 1
    for size in shape:
        voxels *= max(int(size), 1)
    return voxels


def _dicom_pixels(data: bytes) -> int:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except Exception as exc:  # pydicom raises many types for damaged headers
        raise UploadRejected(422, f"unreadable DICOM header ({type(exc).__name__}: {exc})") from exc
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    return rows * cols * int(ds.get("NumberOfFrames", 1) or 1)


def _image_pixels(data: bytes) -> tuple[int, int]:
    """Width and height from the header only (PIL opens lazily; no pixel is decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Image.DecompressionBombError as exc:
        raise UploadRejected(413, f"image too large to decode safely: {exc}") from exc
    except Exception as exc:  # PIL raises OSError / SyntaxError / ValueError for broken headers
        raise UploadRejected(422, f"cannot read the image header ({type(exc).__name__}: {exc})") from exc


def check_upload(data: bytes, filename: str, content_type: str | None, limits: UploadLimits) -> str:
    """Refuse what must not be decoded (see the module docstring); returns the sniffed format."""
    if len(data) > limits.max_bytes:
        raise UploadRejected(413, f"file too large: {len(data):,} bytes > the {limits.max_bytes:,}-byte limit")
    if not data:
        raise UploadRejected(400, "the uploaded file is empty")
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in IMAGE_TYPES and declared not in GENERIC_TYPES:
        raise UploadRejected(415, f"unsupported content type {declared!r}; send {FORMATS_HELP}")
    kind = sniff(data)
    if kind is None:
        raise UploadRejected(415, f"{filename or 'the upload'} is not an image: its bytes are none of {FORMATS_HELP}")
    if kind in ("nifti", "gzip"):
        voxels = _nifti_voxels(data)
        if voxels > limits.max_voxels:
            raise UploadRejected(413, f"volume too large: {voxels:,} voxels > the {limits.max_voxels:,} limit")
        return "nifti"
    if kind == "dicom":
        pixels = _dicom_pixels(data)
        if pixels > limits.max_voxels:
            raise UploadRejected(413, f"DICOM too large: {pixels:,} pixels > the {limits.max_voxels:,} limit")
        return kind
    width, height = _image_pixels(data)
    if width * height > limits.max_pixels:
        raise UploadRejected(413, f"image too large: {width:,} × {height:,} = {width * height:,} pixels > the "
                                  f"{limits.max_pixels:,}-pixel limit (decompression-bomb guard)")
    return kind


def decode_upload(data: bytes, filename: str, content_type: str | None, limits: UploadLimits) -> Image.Image:
    """Checked and decoded upload as an RGB image; :class:`UploadRejected` says why not."""
    from biomedclip.io.medical import MedicalImageError, load_image_bytes

    kind = check_upload(data, filename, content_type, limits)
    # name the bytes by what they are, so a misleading suffix cannot send them to the wrong decoder
    hint = {"dicom": "upload.dcm", "nifti": "upload.nii"}.get(kind, f"upload.{kind}")
    try:
        image = load_image_bytes(data, hint)
    except MedicalImageError as exc:
        raise UploadRejected(422, f"cannot decode {filename or 'the upload'}: {exc.problem}"
                                  + (f" — {exc.hint}" if exc.hint else "")) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UploadRejected(422, f"cannot decode {filename or 'the upload'}: {exc}") from exc
    return image
