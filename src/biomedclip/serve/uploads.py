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

What the bytes are and how many pixels they declare are asked of :mod:`biomedclip.io.medical`
(:func:`~biomedclip.io.medical.sniff`, :func:`~biomedclip.io.medical.declared_pixels`), the same
answers the loaders and the data build get; the upload's file name is never consulted. Decoding
goes through :func:`biomedclip.io.medical.load_image_bytes`; a file that passes the checks but is
damaged (truncated JPEG, corrupt DICOM) gives 422 with the decoder's reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from biomedclip.io.medical import MedicalImageError, declared_pixels, load_image_bytes, sniff

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


def check_upload(data: bytes, filename: str, content_type: str | None, limits: UploadLimits) -> str:
    """Refuse what must not be decoded (see the module docstring); returns the sniffed format."""
    if len(data) > limits.max_bytes:
        raise UploadRejected(413, f"file too large: {len(data):,} bytes > the {limits.max_bytes:,}-byte limit")
    if not data:
        raise UploadRejected(400, "the uploaded file is empty")
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in IMAGE_TYPES and declared not in GENERIC_TYPES:
        raise UploadRejected(415, f"unsupported content type {declared!r}; send {FORMATS_HELP}")
    kind = sniff(data)  # the bytes alone: a misleading file name must not pick the decoder
    if kind is None:
        raise UploadRejected(415, f"{filename or 'the upload'} is not an image: its bytes are none of {FORMATS_HELP}")
    try:
        pixels = declared_pixels(data, kind, filename or "the upload")
    except Image.DecompressionBombError as exc:
        raise UploadRejected(413, f"image too large to decode safely: {exc}") from exc
    except MedicalImageError as exc:
        raise UploadRejected(422, exc.problem + (f" — {exc.hint}" if exc.hint else "")) from exc
    if kind == "nifti" and pixels > limits.max_voxels:
        raise UploadRejected(413, f"volume too large: {pixels:,} voxels > the {limits.max_voxels:,} limit")
    if kind == "dicom" and pixels > limits.max_voxels:
        raise UploadRejected(413, f"DICOM too large: {pixels:,} pixels > the {limits.max_voxels:,} limit")
    if kind not in ("nifti", "dicom") and pixels > limits.max_pixels:
        raise UploadRejected(413, f"image too large: {pixels:,} pixels > the {limits.max_pixels:,}-pixel limit "
                                  "(decompression-bomb guard)")
    return kind


def decode_upload(data: bytes, filename: str, content_type: str | None, limits: UploadLimits) -> Image.Image:
    """Checked and decoded upload as an RGB image; :class:`UploadRejected` says why not."""
    check_upload(data, filename, content_type, limits)
    try:  # the decoder is chosen by the same bytes-first sniff, so the name only labels errors
        image = load_image_bytes(data, filename)
    except MedicalImageError as exc:
        raise UploadRejected(422, f"cannot decode {filename or 'the upload'}: {exc.problem}"
                                  + (f" — {exc.hint}" if exc.hint else "")) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UploadRejected(422, f"cannot decode {filename or 'the upload'}: {exc}") from exc
    return image
