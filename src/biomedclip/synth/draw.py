"""Drawing primitives and acquisition variation for the modality renderers.

Primitives are numpy, vectorised, in units of the image's short side (so circles stay round in any
aspect ratio); vector marks (arrows, text, scale bars) go through an 8-bit Pillow mask. The second
half holds what makes two real figures of one modality differ besides the finding (zoom, shading,
window/level, collimation, burnt-in text), which keeps the build's pHash dedup from merging them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from biomedclip.synth.sampling import _pick


@dataclass(frozen=True)
class _Grid:
    """Pixel-centre coordinates in short-side units: circles stay round in any aspect ratio."""

    h: int
    w: int
    y: np.ndarray
    x: np.ndarray

    @property
    def hu(self) -> float:
        return self.h / min(self.h, self.w)

    @property
    def wu(self) -> float:
        return self.w / min(self.h, self.w)

    @property
    def px(self) -> float:
        return 1.0 / min(self.h, self.w)


def _grid(h: int, w: int) -> _Grid:
    s = float(min(h, w))
    y = ((np.arange(h, dtype=np.float32) + 0.5) / s)[:, None]
    x = ((np.arange(w, dtype=np.float32) + 0.5) / s)[None, :]
    return _Grid(h, w, y, x)


def _window(g: _Grid, cy: float, cx: float, reach: float) -> tuple[slice, slice]:
    """Pixel slices of the square of half-size ``reach`` around a point (clipped to the image)."""
    s = min(g.h, g.w)
    y0, y1 = max(0, int((cy - reach) * s)), min(g.h, int((cy + reach) * s) + 2)
    x0, x1 = max(0, int((cx - reach) * s)), min(g.w, int((cx + reach) * s) + 2)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _ellipse(
    g: _Grid, cy: float, cx: float, ry: float, rx: float, soft: float, angle: float = 0.0, mirror: float = 0.0
) -> np.ndarray:
    """Soft-edged filled ellipse mask in [0, 1].

    ``mirror`` > 0 draws the pair of ellipses centred ``mirror`` units left and right of ``cx``
    (their maximum) for the price of one: symmetric anatomy such as shoulders.
    """
    dy, dx = g.y - cy, g.x - cx
    if mirror:
        dx = np.abs(dx) - mirror
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = dx * c + dy * s, dy * c - dx * s
    d = np.sqrt((dy / ry) ** 2 + (dx / rx) ** 2)
    return np.clip((1.0 - d) * (min(ry, rx) / max(soft, g.px)), 0.0, 1.0)


def _blob(
    g: _Grid, rng: np.random.Generator, cy: float, cx: float, r: float, *, irregular: bool, soft: float
) -> np.ndarray:
    """Round or irregular (random low harmonics of the radius) soft blob, computed in its window."""
    mask = np.zeros((g.h, g.w), np.float32)
    ys, xs = _window(g, cy, cx, r * 1.7 + soft)
    dy, dx = g.y[ys] - cy, g.x[:, xs] - cx
    dist = np.sqrt(dy * dy + dx * dx)
    radius: np.ndarray | float
    if irregular:
        theta = np.arctan2(dy, dx)
        radius = np.full_like(dist, r)
        for k in range(2, 6):
            amp = rng.uniform(0.08, 0.2) / math.sqrt(k - 1)
            radius += r * amp * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    else:
        ecc = rng.uniform(0.9, 1.1)
        dist = np.sqrt(dy * dy * ecc + dx * dx / ecc)
        radius = r
    mask[ys, xs] = np.clip((radius - dist) / max(soft, g.px), 0.0, 1.0)
    return mask


def _noise(
    rng: np.random.Generator, g: _Grid, cell: float, stretch: tuple[float, float] = (1.0, 1.0)
) -> np.ndarray:
    """Smooth noise with feature size ``cell`` (units): random grid upsampled bicubically."""
    sh = max(2, round(g.hu / (cell * stretch[0])) + 1)
    sw = max(2, round(g.wu / (cell * stretch[1])) + 1)
    small = rng.standard_normal((sh, sw), dtype=np.float32)
    return np.asarray(Image.fromarray(small).resize((g.w, g.h), Image.Resampling.BICUBIC))


_GRAIN_SIDE = 1024


@lru_cache(maxsize=1)
def _grain_texture() -> np.ndarray:
    """A fixed field of Gaussian noise; images take a random window of it (fresh draws cost more)."""
    return np.random.default_rng(20240601).standard_normal((_GRAIN_SIDE, _GRAIN_SIDE), dtype=np.float32)


def _grain(rng: np.random.Generator, arr: np.ndarray, sigma: float) -> np.ndarray:
    """Per-pixel sensor noise (luminance only, so RGB images cost the same as grey ones)."""
    h, w = arr.shape[:2]
    noise: np.ndarray
    if h <= _GRAIN_SIDE and w <= _GRAIN_SIDE:
        y0, x0 = int(rng.integers(_GRAIN_SIDE - h + 1)), int(rng.integers(_GRAIN_SIDE - w + 1))
        noise = _grain_texture()[y0 : y0 + h, x0 : x0 + w] * sigma
    else:
        noise = rng.standard_normal((h, w), dtype=np.float32) * sigma
    return arr + (noise[..., None] if arr.ndim == 3 else noise)


def _smooth(arr: np.ndarray, factor: float) -> np.ndarray:
    """Cheap blur of a 2-D float array: box-downscale then bilinear upscale."""
    h, w = arr.shape
    small = Image.fromarray(arr.astype(np.float32)).resize(
        (max(2, int(w / factor)), max(2, int(h / factor))), Image.Resampling.BOX
    )
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))


def _rgb(mask: np.ndarray, colour: Sequence[float] | np.ndarray) -> np.ndarray:
    return mask[..., None] * np.asarray(colour, np.float32)


def _blend(base: np.ndarray, mask: np.ndarray, colour: Sequence[float]) -> np.ndarray:
    """Paint ``colour`` over an RGB ``base`` with opacity ``mask``."""
    m = mask[..., None]
    delta = np.asarray(colour, np.float32) - base
    delta *= m
    delta += base
    return delta


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at a pixel size (cached: loading costs more than drawing)."""
    return ImageFont.load_default(size=max(6, size))


def _overlay(
    arr: np.ndarray, draw_fn: Callable[[ImageDraw.ImageDraw], None], colour: float | Sequence[float] = 1.0
) -> np.ndarray:
    """Draw vector marks (arrows, text, scale bars) through an 8-bit mask onto a float image."""
    h, w = arr.shape[:2]
    mask_img = Image.new("L", (w, h), 0)
    draw_fn(ImageDraw.Draw(mask_img))
    box = mask_img.getbbox()
    if box is None:
        return arr
    x0, y0, x1, y1 = box
    mask = np.asarray(mask_img.crop(box), np.float32) / 255.0
    out = np.array(arr, dtype=np.float32, copy=True)
    if arr.ndim == 3:
        rgb = colour if isinstance(colour, Sequence) else (colour,) * 3
        out[y0:y1, x0:x1] = _blend(out[y0:y1, x0:x1], mask, rgb)
    else:
        value = colour if not isinstance(colour, Sequence) else float(np.mean(colour))
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1.0 - mask) + mask * value
    return out


def _arrow_fn(
    g: _Grid, cy: float, cx: float, r: float, from_left: bool
) -> Callable[[ImageDraw.ImageDraw], None]:
    """An arrow whose tip sits just outside a lesion of radius ``r`` at (cy, cx)."""
    s = min(g.h, g.w)
    sign = -1.0 if from_left else 1.0
    tip = ((cx + sign * (r + 0.02)) * s, (cy - (r + 0.02) * 0.7) * s)
    tail = (tip[0] + sign * 0.12 * s, tip[1] - 0.09 * s)
    width = max(1, round(0.012 * s))

    def draw(d: ImageDraw.ImageDraw) -> None:
        d.line([tail, tip], fill=255, width=width)
        ux, uy = tip[0] - tail[0], tip[1] - tail[1]
        norm = math.hypot(ux, uy)
        ux, uy = ux / norm, uy / norm
        head = 0.045 * s
        left = (tip[0] - head * ux + head * 0.6 * uy, tip[1] - head * uy - head * 0.6 * ux)
        right = (tip[0] - head * ux - head * 0.6 * uy, tip[1] - head * uy + head * 0.6 * ux)
        d.polygon([tip, left, right], fill=255)

    return draw


def _scale_bar_fn(
    g: _Grid, length: float = 0.2, *, left: bool = False, thick: float = 0.02, margin: float = 0.06
) -> Callable[[ImageDraw.ImageDraw], None]:
    """A micrograph scale bar in the bottom-right (or bottom-left) corner; sizes in units."""
    s = min(g.h, g.w)

    def draw(d: ImageDraw.ImageDraw) -> None:
        x0 = margin * s if left else g.w - (margin + length) * s
        y1 = g.h - margin * s
        d.rectangle([x0, y1 - max(2, thick * s), x0 + length * s, y1], fill=255)

    return draw


def _text_fn(items: Sequence[tuple[float, float, str]], size: int) -> Callable[[ImageDraw.ImageDraw], None]:
    """Text labels at pixel positions (tick labels, vendor annotations, protein names)."""

    def draw(d: ImageDraw.ImageDraw) -> None:
        font = _font(size)
        for x, y, text in items:
            d.text((x, y), text, fill=255, font=font)

    return draw


# Acquisition variation: what makes two real figures of one modality differ besides the finding
# The data build drops perceptual duplicates (64-bit pHash, Hamming distance <= 4). pHash keeps only
# the signs of the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail, so it sees layout and
# illumination, not texture: two renders of one template that differ only in noise or a small lesion
# hash alike, and the build would throw away most of a modality. Real figures differ in exactly
# what pHash sees — patient size and positioning, field of view, exposure, uneven illumination,
# collimation borders, burnt-in annotations — so each renderer draws those per image from the
# article's RNG. Amplitudes are kept small enough that lesions stay in their image half/zone.
# The learnability tests train tiny linear pixel classifiers on ~45 images, so for lesion
# modalities the variation is mostly left-right symmetric (zoom, habitus, symmetric collimation,
# vertical illumination ramps) rather than sideways shifts, which would compete with the lesion.


def _zoom(img: np.ndarray, zoom: float, fill: float) -> np.ndarray:
    """Magnify (``zoom`` > 1, crops the borders) or shrink (< 1, pads with ``fill``) a grey image
    about its centre: field of view and patient-to-detector distance.

    One PIL box-resize (~0.2 ms at 256 px). A general affine resample would allow tilts and shifts
    but costs 3–4× more; tilts hardly change pHash, and shifts compete with the lesion side.
    """
    h, w = img.shape
    src = np.ascontiguousarray(img, dtype=np.float32)
    pad = 0
    if zoom < 1.0:
        pad = math.ceil(max(h, w) * (1.0 / zoom - 1.0) / 2.0) + 1
        src = np.pad(src, pad, constant_values=fill)
    half_w, half_h = w / zoom / 2.0, h / zoom / 2.0
    cx, cy = pad + w / 2.0, pad + h / 2.0
    box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    return np.asarray(Image.fromarray(src).resize((w, h), Image.Resampling.BILINEAR, box=box))


def _shading(
    rng: np.random.Generator, g: _Grid, ramp: float, vignette: float, *, vertical: bool = False
) -> np.ndarray:
    """Smooth multiplicative illumination: a ramp times an off-centre vignette (mean about 1).

    X-ray heel effect, MRI coil sensitivity, uneven microscope or fundus-camera illumination: all
    are low-frequency, which is what pHash (and a 96 px thumbnail) keeps. ``vertical`` keeps the
    ramp and the vignette centre near the vertical axis, for radiology where the ramp follows the
    body axis (X-ray tube anode–cathode axis, posterior head-coil elements): a left–right ramp
    there would mimic a one-sided finding.
    """
    if vertical:
        theta = math.pi / 2 + rng.normal(0.0, 0.15)
        vx = g.wu / 2 + rng.normal(0.0, 0.03)
    else:
        theta = rng.uniform(0.0, 2.0 * math.pi)
        vx = g.wu / 2 + rng.normal(0.0, 0.15)
    vy = g.hu / 2 + rng.normal(0.0, 0.15)
    slope = rng.uniform(-ramp, ramp)
    lin = 1.0 + slope * ((g.x - g.wu / 2) * math.cos(theta) + (g.y - g.hu / 2) * math.sin(theta))
    r2 = (g.y - vy) ** 2 + (g.x - vx) ** 2
    return (lin * (1.0 - rng.uniform(0.0, vignette) * r2)).astype(np.float32)


def _tone(img: np.ndarray, gain: float, level: float, gamma: float) -> np.ndarray:
    """Window/level and gamma (display processing differs between scanners and journals)."""
    return np.clip((img - level) * gain + level, 0.0, 1.0) ** gamma


def _collimate(rng: np.random.Generator, g: _Grid, img: np.ndarray, value: float) -> np.ndarray:
    """Set the borders outside a collimated field to ``value`` (X-ray shutters, a scanner's frame).

    Shutters move in pairs symmetric about the central ray, so the left and right (or top and
    bottom) borders get the same width: a one-sided bright edge would look like a one-sided finding.
    """
    s = min(g.h, g.w)
    out = np.array(img, dtype=np.float32, copy=True)
    pairs = _pick(rng, ((0,), (1,), (0, 1)))
    for axis in pairs:
        n = max(1, int(rng.uniform(0.02, 0.1) * s))
        if axis == 0:
            out[:n] = value
            out[-n:] = value
        else:
            out[:, :n] = value
            out[:, -n:] = value
    return out


def _corner_text(
    rng: np.random.Generator, g: _Grid, blocks: Sequence[Sequence[str]], size: int, margin: float = 0.025
) -> list[tuple[float, float, str]]:
    """Text items for :func:`_text_fn`: each block of lines in its own random image corner.

    Scanner/camera annotations (sequence, date, side marker) sit in the corners of real figures;
    right-hand blocks are right-aligned so they stay inside the image.
    """
    s = min(g.h, g.w)
    font = _font(size)
    step = size * 1.15
    items: list[tuple[float, float, str]] = []
    for block, corner in zip(blocks, rng.permutation(4), strict=False):
        y = margin * s if corner < 2 else g.h - margin * s - step * len(block)
        for line in block:
            x = margin * s if corner % 2 == 0 else g.w - margin * s - float(font.getlength(line))
            items.append((x, y, line))
            y += step
    return items


def _date(rng: np.random.Generator) -> str:
    """An ISO date as scanners and cameras burn into images (annotation text only)."""
    return f"{int(rng.integers(2008, 2024))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
