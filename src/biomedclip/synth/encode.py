"""Encoding: float image → file bytes in the chosen format, GIF thumbnails, deliberate breakage.

The formats mimic what PMC serves (8-bit and CMYK JPEG, palette PNG, 16-bit TIFF), so every
branch of the build's image → RGB conversion sees real input.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _to_u8(arr: np.ndarray) -> np.ndarray:
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _encode(arr: np.ndarray, fmt: str, quality: int) -> tuple[bytes, Image.Image]:
    """File bytes for ``fmt`` plus the 8-bit PIL image (reused for the GIF thumbnail)."""
    image = Image.fromarray(_to_u8(arr))
    buf = io.BytesIO()
    if fmt == "tif16":
        grey = arr if arr.ndim == 2 else arr.mean(axis=2)
        Image.fromarray((np.clip(grey, 0, 1) * 65535.0 + 0.5).astype(np.uint16)).save(buf, "TIFF")
    elif fmt in ("jpg", "jpg_rgb", "jpg_cmyk"):
        target = {"jpg": image, "jpg_rgb": image.convert("RGB"), "jpg_cmyk": image.convert("CMYK")}[fmt]
        target.save(buf, "JPEG", quality=quality)
    elif fmt == "png_p":
        image.convert("RGB").quantize(
            colors=64, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        ).save(buf, "PNG")
    elif fmt == "png":
        image.save(buf, "PNG", compress_level=1)
    else:
        image.save(buf, "TIFF")
    return buf.getvalue(), image


def _gif_thumbnail(image: Image.Image) -> bytes:
    """PMC-style small GIF preview stored beside the full-size JPEG in OA packages."""
    thumb = image.convert("RGB")
    thumb.thumbnail((120, 120), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    thumb.quantize(colors=64, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(buf, "GIF")
    return buf.getvalue()


def _break_bytes(rng: np.random.Generator, data: bytes, kind: str | None) -> bytes | None:
    """Apply an image-level breakage: ``None`` means the file is not written at all."""
    if kind == "missing_graphic":
        return None
    if kind == "zero_byte_image":
        return b""
    if kind == "corrupt_image":
        return data[: max(24, int(len(data) * rng.uniform(0.1, 0.5)))]
    return data
