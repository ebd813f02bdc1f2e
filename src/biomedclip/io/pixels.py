"""The one image → RGB conversion: the data build and every inference path turn pixels into RGB here.

Before this module the build (``data/images.py``) and inference (``io/medical.py``) each had their
own conversion and they disagreed (a constant 16-bit image came out white in the build and black at
inference), so a model could see a figure differently at training and at test time. The rules, once:

* 8-bit grey and RGB stay as they are (grey is copied to the three channels).
* More than 8 bits (16/32-bit integer or float TIFF/PNG, DICOM and NIfTI values): a ``window``
  (center, width) when one is given, through pydicom's VOI windowing; otherwise the finite values
  present are stretched min..max onto 0..255, like a viewer's auto-contrast (10/12-bit data in
  16-bit containers would be nearly black if divided by 257). NaN and ±inf pixels become black.
  A constant image has no range to stretch: it is black where its value is ≤ 0 and white
  otherwise, i.e. read like an empty or a full mask.
* Palette images show their colours; transparency (alpha channel, transparent palette entries or a
  colour key) is composited on white, because figures are drawn for a white page.
* CMYK uses Pillow's conversion (Adobe-style inverted CMYK, what browsers show); bilevel images
  become black and white.

:func:`to_rgb` applies all of it. The build resizes large figures between its two halves —
:func:`to_working` (8-bit, as few channels as possible) then :func:`flatten` (alpha on white, RGB) —
so that the expensive resize touches one channel for grey figures; at an unchanged size the result
is exactly :func:`to_rgb`'s. :func:`array_to_rgb` is the same policy for pixel arrays (DICOM colour
frames, NIfTI slices, MedMNIST arrays).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = [
    "WORKING_MODES",
    "Window",
    "array_to_rgb",
    "flatten",
    "grey_to_rgb",
    "stretch_to_uint8",
    "to_rgb",
    "to_working",
    "window_to_uint8",
]

Window = tuple[float, float]
"""(center, width) in the image's own units, e.g. (40, 400) for a CT soft-tissue window."""

#: Modes :func:`to_working` returns: 8 bits per channel, resizable as they are.
WORKING_MODES: frozenset[str] = frozenset({"L", "LA", "RGB", "RGBA", "CMYK"})

_WHITE = (255, 255, 255)


def to_rgb(im: Image.Image, window: Window | None = None) -> Image.Image:
    """A decoded image of any Pillow mode as RGB, by the rules in the module docstring."""
    return flatten(to_working(im, window))


def to_working(im: Image.Image, window: Window | None = None) -> Image.Image:
    """8-bit ``L``, ``LA``, ``RGB``, ``RGBA`` or ``CMYK``, kept as close to the source as possible.

    Grey stays one channel and CMYK stays CMYK so that a resize after this touches as few bytes
    as possible; ``window`` applies to single-channel images only (colour has no physical units).
    """
    mode = im.mode
    deep = mode in ("I", "F") or mode.startswith("I;")
    if window is not None and (deep or mode == "L"):
        return Image.fromarray(window_to_uint8(np.asarray(im), *window), mode="L")
    if deep:
        return Image.fromarray(stretch_to_uint8(np.asarray(im)), mode="L")
    if mode in ("RGBA", "LA") or (mode in WORKING_MODES and not im.has_transparency_data):
        return im
    if im.has_transparency_data:  # P/PA/RGBa/La, or a tRNS colour key on L/RGB/1
        return im.convert("LA" if mode in ("L", "La", "1") else "RGBA")
    if mode == "1":
        return im.convert("L")
    return im.convert("RGB")  # P, YCbCr, RGBX, LAB, HSV …


def flatten(im: Image.Image) -> Image.Image:
    """RGB from a :func:`to_working` image: alpha composited on white, grey and CMYK converted."""
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA"):
        background = Image.new("RGB", im.size, _WHITE)
        background.paste(im.convert("RGB"), mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """uint8 stretching the finite values present onto 0..255 (round half up; non-finite → 0).

    A constant array has nothing to stretch: 0 where its value is ≤ 0, 255 otherwise.
    """
    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    all_finite = bool(finite.all())
    present = arr if all_finite else arr[finite]
    if present.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(present.min()), float(present.max())
    if hi <= lo:
        flat = np.full(arr.shape, 0 if hi <= 0 else 255, np.uint8)
        return flat if all_finite else np.where(finite, flat, 0).astype(np.uint8)
    scaled = np.floor((arr - lo) * (255.0 / (hi - lo)) + 0.5)
    if not all_finite:
        scaled = np.where(finite, scaled, 0.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def window_to_uint8(values: np.ndarray, center: float, width: float, function: str = "LINEAR_EXACT") -> np.ndarray:
    """uint8 via pydicom's VOI windowing (DICOM PS3.3 C.11.2) into an 8-bit output range.

    ``LINEAR_EXACT`` (the default for a user's window) maps ``center ± width/2`` exactly onto
    black..white; DICOM files may ask for ``LINEAR`` or ``SIGMOID``. NaN becomes black.
    """
    from pydicom import Dataset
    from pydicom.pixels import apply_windowing

    voi = Dataset()
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.BitsStored = 8
    voi.PixelRepresentation = 0
    voi.WindowCenter = center
    voi.WindowWidth = width
    voi.VOILUTFunction = function
    out = apply_windowing(np.nan_to_num(np.asarray(values, dtype=np.float64)), voi)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def grey_to_rgb(grey: np.ndarray) -> Image.Image:
    """RGB image from a 2-D uint8 array."""
    return Image.fromarray(np.ascontiguousarray(grey), mode="L").convert("RGB")


def array_to_rgb(arr: np.ndarray, window: Window | None = None) -> Image.Image:
    """:func:`to_rgb` for a pixel array: 2-D grey of any dtype, or H×W×3 (RGB) / H×W×4 (RGBA).

    uint8 arrays keep their values; deeper grey arrays are windowed or stretched like 16-bit
    images, deeper colour arrays stretched as a whole (the channels keep their balance).
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        if window is not None:
            return grey_to_rgb(window_to_uint8(arr, *window))
        return grey_to_rgb(arr if arr.dtype == np.uint8 else stretch_to_uint8(arr))
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        colour = np.ascontiguousarray(arr if arr.dtype == np.uint8 else stretch_to_uint8(arr))
        return flatten(Image.fromarray(colour, mode="RGB" if colour.shape[-1] == 3 else "RGBA"))
    raise ValueError(f"expected an H×W grey or H×W×3/4 colour array, got shape {arr.shape}")
