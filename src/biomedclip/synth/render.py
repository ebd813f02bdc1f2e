"""Modality renderers: (rng, grid, panel) → float32 image in [0, 1], (h, w) grey or (h, w, 3) RGB.

One renderer per modality draws the anatomy or specimen and the finding its panel's attributes
name (side, zone, size, shape, count, colour); :func:`_render_figure` lays out single and
compound (A)/(B) figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from biomedclip.synth.draw import (
    _arrow_fn,
    _blend,
    _blob,
    _collimate,
    _corner_text,
    _date,
    _ellipse,
    _font,
    _grain,
    _Grid,
    _grid,
    _noise,
    _overlay,
    _rgb,
    _scale_bar_fn,
    _shading,
    _smooth,
    _text_fn,
    _tone,
    _zoom,
)
from biomedclip.synth.sampling import _pick, _pickw
from biomedclip.synth.specs import _FigSpec, _Panel
from biomedclip.synth.vocab import Modality

_SIZE_R = {"small": (0.045, 0.06), "large": (0.095, 0.12)}


def _lesion_radius(rng: np.random.Generator, size: str) -> float:
    lo, hi = _SIZE_R[size]
    return float(rng.uniform(lo, hi))


def _draw_cxr(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Chest radiograph: torso, dark lung fields, ribs, spine, heart; bright opacity/nodules.

    Habitus (torso width, shoulders and arms, abdomen), inspiration, heart size and positioning vary
    per patient; collimation, exposure, processing, side markers and text per department. Most of
    it is left–right symmetric and leaves the lungs in place, so the lesion side stays the
    strongest left–right signal in the image.
    """
    a, hu, wu = p.attrs, g.hu, g.wu
    cx = wu / 2 + rng.normal(0, 0.015)
    torso_w = rng.uniform(0.85, 1.15)  # habitus: soft tissue around the chest
    body = rng.uniform(0.95, 1.05)  # lung and rib-cage width
    insp = rng.uniform(0.92, 1.06)  # inspiration: lung height
    img = np.full((g.h, g.w), 0.05, np.float32)
    torso = np.maximum(
        _ellipse(g, hu * 0.8, cx, hu * 0.72, wu * 0.5 * torso_w, 0.06),
        _ellipse(g, 0.0, cx, hu * 0.3, wu * 0.12 * rng.uniform(0.85, 1.2), 0.03),
    )
    if rng.random() < 0.6:  # shoulders and upper arms at the upper outer corners
        ay, ar = hu * rng.uniform(0.05, 0.25), wu * rng.uniform(0.1, 0.18)
        torso = np.maximum(torso, _ellipse(g, ay, cx, hu * 0.3, ar, 0.05, mirror=wu * 0.48 * torso_w))
    img += (0.55 + rng.uniform(-0.05, 0.05)) * torso
    img += rng.uniform(-0.08, 0.15) * np.clip((g.y - hu * 0.82) / 0.1, 0.0, 1.0) * torso  # abdomen
    lw = wu * 0.2 * body
    lungs = np.maximum(
        _ellipse(g, hu * 0.49, cx - lw, hu * 0.31 * insp, wu * 0.155 * body, 0.04),
        _ellipse(g, hu * 0.5, cx + lw, hu * 0.29 * insp, wu * 0.15 * body, 0.04),
    )
    heart_w = rng.uniform(0.85, 1.2)
    heart = _ellipse(g, hu * 0.67, cx + wu * 0.06 * heart_w, hu * 0.15, wu * 0.17 * heart_w, 0.05)
    lungs = lungs * (1.0 - 0.85 * heart)
    img -= lungs * (0.36 + 0.04 * _noise(rng, g, 0.05))
    img += 0.1 * np.clip(1.0 - np.abs(g.x - cx) / (wu * 0.045), 0.0, 1.0) * torso
    dx = np.abs(g.x - cx)
    phase = (g.y - hu * 0.1 - 0.2 * dx - 1.3 * dx * dx) / (hu * 0.07 * insp)
    ribs = np.clip((np.cos(2 * math.pi * phase) - 0.5) * 2.5, 0.0, 1.0)
    cage = _ellipse(g, hu * 0.5, cx, hu * 0.38 * insp, wu * 0.42 * body, 0.05)
    cage *= np.clip((dx - wu * 0.05) / 0.03, 0.0, 1.0)
    img += ribs * cage * (0.03 + 0.09 * lungs)
    clav = np.clip(1.0 - np.abs(g.y - hu * 0.16 - 0.2 * np.abs(g.x - cx)) / 0.018, 0.0, 1.0)
    img += 0.12 * clav * (np.abs(g.x - cx) < wu * 0.3 * body) * torso
    if a["finding"] in ("opacity", "nodule"):
        img, target = _cxr_lesion(rng, g, a, img, cx, lw)
        if p.extras["arrow"]:
            img = _overlay(img, _arrow_fn(g, *target, from_left=a["position"] == "left"))
    img = _zoom(img, rng.uniform(0.94, 1.08), 0.05)  # detector distance; radiographers centre the chest
    img = img * _shading(rng, g, 0.25, 0.3, vertical=True) + rng.uniform(-0.04, 0.06)
    if rng.random() < 0.65:
        img = _collimate(rng, g, img, _pick(rng, (0.0, 0.02, 0.85, 0.95)))
    img = _overlay(img, _cxr_marks(rng, g), rng.uniform(0.8, 1.0))
    img = _grain(rng, img, rng.uniform(0.008, 0.03))
    img = _tone(img, rng.uniform(0.85, 1.2), 0.3, rng.uniform(0.8, 1.2))
    return img


def _cxr_marks(rng: np.random.Generator, g: _Grid) -> Callable[[ImageDraw.ImageDraw], None]:
    """Side marker (``R``/``L`` in a box) and the projection/date text radiographs carry."""
    s = min(g.h, g.w)
    size = round(rng.uniform(0.05, 0.085) * s)
    blocks: list[list[str]] = [[_pick(rng, ("R", "L"))]]
    if rng.random() < 0.3:
        blocks.append([_pick(rng, ("PA", "AP", "ERECT", "SUPINE", "PORTABLE"))])
    if rng.random() < 0.15:
        blocks.append([_date(rng), f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"])
    items = _corner_text(rng, g, blocks, size, margin=rng.uniform(0.02, 0.06))
    boxed = rng.random() < 0.5
    text = _text_fn(items, size)
    marker_x, marker_y, _ = items[0]

    def draw(d: ImageDraw.ImageDraw) -> None:
        if boxed:
            pad = 0.25 * size
            box = [marker_x - pad, marker_y - pad * 0.4, marker_x + size * 0.7 + pad, marker_y + size + pad]
            d.rectangle(box, outline=255, width=max(1, round(0.1 * size)))
        text(d)

    return draw


def _cxr_lesion(
    rng: np.random.Generator, g: _Grid, a: dict[str, Any], img: np.ndarray, cx: float, lw: float
) -> tuple[np.ndarray, tuple[float, float, float]]:
    side = -1.0 if a["position"] == "left" else 1.0
    ly = g.hu * (0.37 if a["zone"] == "upper" else 0.58) + rng.normal(0, 0.015)
    lx = cx + side * lw + rng.normal(0, 0.012)
    if a["finding"] == "opacity":
        r = _lesion_radius(rng, a["size"])
        blob = _blob(g, rng, ly, lx, r, irregular=a["shape"] == "irregular", soft=0.025)
        return img + rng.uniform(0.3, 0.4) * blob, (ly, lx, r)
    offsets = ((0.0, 0.0), (0.07, 0.04), (-0.05, 0.06), (0.05, -0.06))
    for dy, dx in offsets[: a["count"]]:
        r = rng.uniform(0.022, 0.03)
        img = img + 0.38 * _blob(g, rng, ly + dy, lx + side * dx, r, irregular=False, soft=0.008)
    return img, (ly, lx, 0.05)


def _draw_mri(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Axial brain MRI: black background, scalp ring, brain with sulci, butterfly ventricles.

    Head size and shape, slice level (ventricle size), head tilt, field of view, coil bias field,
    window/level, noise and the scanner's corner text vary per image.
    """
    a = p.attrs
    t2 = a["sequence"] == "T2-weighted"
    cy, cx = g.hu / 2 + rng.normal(0, 0.01), g.wu / 2 + rng.normal(0, 0.01)
    ry = rng.uniform(0.4, 0.46)
    rx, ang = ry * rng.uniform(0.74, 0.86), rng.normal(0, 0.05)
    head = _ellipse(g, cy, cx, ry, rx, 0.01, ang)
    scalp = rng.uniform(0.018, 0.032)
    skull = _ellipse(g, cy, cx, ry - scalp, rx - scalp, 0.006, ang)
    brain = _ellipse(g, cy, cx, ry - scalp - 0.02, rx - scalp - 0.02, 0.006, ang)
    wm = np.clip(
        (_ellipse(g, cy, cx, ry * 0.72, rx * 0.72, 0.08, ang) - 0.3 + 0.35 * _noise(rng, g, 0.05)) * 3, 0, 1
    )
    gm_v, wm_v, csf_v = (0.55, 0.4, 0.92) if t2 else (0.42, 0.58, 0.1)
    tissue = gm_v * (1 - wm) + wm_v * wm
    sulci = np.clip(1.0 - np.abs(_noise(rng, g, 0.035)) * 5.0, 0.0, 1.0) * (1 - wm)
    vs = rng.uniform(0.65, 1.35)  # slice level and age: ventricle size
    vy = cy - 0.02 + rng.normal(0, 0.015)
    vent = np.maximum(
        _ellipse(g, vy, cx - 0.045 * vs, 0.11 * vs, 0.028 * vs, 0.01, 0.3),
        _ellipse(g, vy, cx + 0.045 * vs, 0.11 * vs, 0.028 * vs, 0.01, -0.3),
    )
    falx = np.clip(1.0 - np.abs(g.x - cx) / 0.005, 0, 1) * (np.abs(g.y - cy) > 0.16 * vs)
    csf = np.maximum(np.maximum(sulci * 0.8, vent), falx)
    tissue = tissue * (1 - csf) + csf_v * csf
    img = (0.85 if not t2 else 0.6) * (head - skull) + 0.06 * (skull - brain) + brain * tissue
    if a["finding"] == "mass":
        img = _mri_lesion(rng, g, p, img, (cy, cx), (ry / 0.44, rx / 0.35), t2)
    # Field of view; no shift or tilt: head holders centre the head (and a sideways shift would
    # compete with the lesion side in small-sample tests).
    img = _zoom(img, rng.uniform(0.88, 1.12), 0.0)
    img = img * _shading(rng, g, 0.5, 0.8, vertical=True) + 0.015
    img = _grain(rng, img, rng.uniform(0.008, 0.035))
    img = _tone(img, rng.uniform(0.85, 1.25), 0.3, rng.uniform(0.8, 1.2))
    if rng.random() < 0.35:
        img = _overlay(img, _mri_marks(rng, g, t2), rng.uniform(0.6, 1.0))
    return img


def _mri_marks(rng: np.random.Generator, g: _Grid, t2: bool) -> Callable[[ImageDraw.ImageDraw], None]:
    """DICOM-viewer corner text (sequence, series/image, window) and sometimes a ruler."""
    s = min(g.h, g.w)
    seq = _pick(rng, ("T2 TSE", "T2 FSE", "AX T2") if t2 else ("T1 SE", "T1 MPRAGE", "AX T1"))
    blocks = [
        [seq, f"SE {int(rng.integers(2, 12))} IM {int(rng.integers(5, 40))}"],
        [f"W {int(rng.integers(400, 2000))} L {int(rng.integers(200, 1000))}"],
        [_pick(rng, ("1.5T", "3T")), _date(rng)],
    ][: int(rng.integers(1, 4))]
    size = round(rng.uniform(0.04, 0.06) * s)
    text = _text_fn(_corner_text(rng, g, blocks, size), size)
    ruler = rng.random() < 0.4
    rx = (0.04 if rng.random() < 0.5 else g.wu - 0.04) * s

    def draw(d: ImageDraw.ImageDraw) -> None:
        text(d)
        if ruler:
            for k in range(11):
                y = (g.hu / 2 - 0.25 + 0.05 * k) * s
                half = (0.02 if k % 5 == 0 else 0.01) * s
                d.line([(rx - half, y), (rx + half, y)], fill=255, width=1)

    return draw


def _mri_lesion(
    rng: np.random.Generator,
    g: _Grid,
    p: _Panel,
    img: np.ndarray,
    centre: tuple[float, float],
    scale: tuple[float, float],
    t2: bool,
) -> np.ndarray:
    a = p.attrs
    side = -1.0 if a["position"] == "left" else 1.0
    ly = centre[0] + (-1 if a["zone"] == "upper" else 1) * 0.2 * scale[0] + rng.normal(0, 0.015)
    lx = centre[1] + side * 0.17 * scale[1] + rng.normal(0, 0.01)
    r = _lesion_radius(rng, a["size"])
    blob = _blob(g, rng, ly, lx, r, irregular=a["shape"] == "irregular", soft=0.01)
    if t2:
        halo = _blob(g, rng, ly, lx, r * 1.5, irregular=True, soft=0.03)
        img = img * (1 - 0.5 * halo) + 0.5 * halo * 0.75
        img = img * (1 - blob) + blob * 0.95
    else:
        core = _blob(g, rng, ly, lx, r * 0.6, irregular=False, soft=0.01)
        img = img * (1 - blob) + blob * (0.95 * (1 - core) + 0.12 * core)
    if p.extras["arrow"]:
        img = _overlay(img, _arrow_fn(g, ly, lx, r, from_left=side < 0))
    return img


def _draw_us(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """B-mode ultrasound: speckle in a fan (convex probe) or a rectangle (linear probe) on black.

    Probe type, sector angle and depth, gain and time-gain compensation, tissue layering and the
    on-screen annotations (probe, depth, grey-scale bar, focus marker) vary per image.
    """
    a, hu, wu = p.attrs, g.hu, g.wu
    ax = wu / 2
    if rng.random() < 0.8:  # convex probe: fan from an apex above the image
        ay = -rng.uniform(0.02, 0.15) * hu
        dy, dx = g.y - ay, g.x - ax
        depth = np.sqrt(dx * dx + dy * dy)
        ang = np.abs(np.arctan2(dx, dy))
        half = min(math.radians(rng.uniform(28, 45)), math.asin(min(0.99, wu / 2 / (hu * 1.05))))
        r0, r1 = -ay + rng.uniform(0.06, 0.2) * hu, hu * rng.uniform(0.9, 1.02) - ay
        sector = (
            np.clip((half - ang) * depth / 0.01, 0, 1)
            * np.clip((depth - r0) / 0.01, 0, 1)
            * np.clip((r1 - depth) / 0.01, 0, 1)
        )
        edge = [(ax + rr * math.sin(half) + 0.03, ay + rr * math.cos(half)) for rr in np.arange(r0, r1, 0.1)]
    else:  # linear probe: a rectangle
        top, bottom = rng.uniform(0.03, 0.12) * hu, rng.uniform(0.86, 0.98) * hu
        hw = rng.uniform(0.32, 0.44) * wu
        depth = np.broadcast_to(g.y - top, (g.h, g.w))
        r0 = 0.0
        sector = np.clip((hw - np.abs(g.x - ax)) / 0.01, 0, 1) * np.clip(depth / 0.01, 0, 1)
        sector = sector * np.clip((bottom - g.y) / 0.01, 0, 1)
        edge = [(ax + hw + 0.03, yy) for yy in np.arange(top, bottom, 0.1)]
    shape = (max(2, g.h // 2), max(2, g.w // 4))
    n1 = rng.standard_normal(shape, dtype=np.float32)
    n2 = rng.standard_normal(shape, dtype=np.float32)
    speck = np.asarray(
        Image.fromarray(np.sqrt(n1 * n1 + n2 * n2)).resize((g.w, g.h), Image.Resampling.BILINEAR)
    )
    period, reach = rng.uniform(0.09, 0.18), rng.uniform(0.25, 0.45) * hu
    layers = rng.uniform(0.06, 0.16) * np.sin(
        2 * math.pi * (g.y + 0.04 * _noise(rng, g, 0.2)) / period + rng.uniform(0, 2 * math.pi)
    )
    tissue = 0.6 + 0.15 * _noise(rng, g, 0.18) + layers * (g.y < reach)
    gain = rng.uniform(0.75, 1.3) * (1.0 + rng.uniform(-0.5, 0.5) * (g.y - hu / 2))  # gain and TGC
    img = sector * tissue * speck * (0.55 * gain) * np.exp(-rng.uniform(0.5, 1.1) * (depth - r0))
    if a["finding"] in ("cyst", "mass"):
        img = _us_lesion(rng, g, p, img, sector, ax)
    img = _overlay(img, _us_marks(rng, g, edge), rng.uniform(0.7, 0.95))
    return np.clip(img, 0.0, 1.0)


def _us_lesion(
    rng: np.random.Generator, g: _Grid, p: _Panel, img: np.ndarray, sector: np.ndarray, ax: float
) -> np.ndarray:
    a = p.attrs
    side = -1.0 if a["position"] == "left" else 1.0
    ly = g.hu * (0.42 if a["zone"] == "upper" else 0.7) + rng.normal(0, 0.015)
    lx = ax + side * 0.19 * (ly / 0.7 + 0.3) + rng.normal(0, 0.01)
    r = _lesion_radius(rng, a["size"])
    cyst = a["finding"] == "cyst"
    blob = _blob(g, rng, ly, lx, r, irregular=not cyst, soft=0.01 if cyst else 0.02)
    below = np.clip(1 - np.abs(g.x - lx) / r, 0, 1) * (g.y > ly) * sector
    img = img * (1.0 + (0.6 if cyst else -0.45) * below)
    img = img * (1.0 - (0.95 if cyst else 0.65) * blob)
    if p.extras["arrow"]:
        img = _overlay(img, _arrow_fn(g, ly, lx, r, from_left=side < 0), 0.9)
    return img


def _us_marks(
    rng: np.random.Generator, g: _Grid, edge: Sequence[tuple[float, float]]
) -> Callable[[ImageDraw.ImageDraw], None]:
    """Scanner overlay: depth dots along the image edge, probe/depth/gain text, grey bar, focus."""
    s = min(g.h, g.w)
    blocks = [
        [f"{_pick(rng, ('L12-5', 'C5-1', 'L9', 'C6-2', 'eL18-4', 'C1-6'))}  {rng.uniform(3, 12):.1f} MHz"],
        [f"D {rng.uniform(3, 9):.1f} cm"],
        [f"G {int(rng.integers(30, 80))}", f"DR {int(rng.integers(50, 80))}"],
        [_pick(rng, ("THYROID", "ABDOMEN", "SMALL PARTS", "BREAST", "RENAL", "MSK")), _date(rng)],
    ][: int(rng.integers(2, 5))]
    size = round(rng.uniform(0.045, 0.065) * s)
    text = _text_fn(_corner_text(rng, g, blocks, size, margin=0.02), size)
    bar = rng.random() < 0.5
    bar_x = (0.03 if rng.random() < 0.5 else g.wu - 0.06) * s
    focus = rng.uniform(0.3, 0.8) * g.h

    def draw(d: ImageDraw.ImageDraw) -> None:
        rad = max(1.0, 0.006 * s)
        for tx, ty in edge:
            d.ellipse([tx * s - rad, ty * s - rad, tx * s + rad, ty * s + rad], fill=255)
        if edge:
            fx = edge[0][0] * s + 0.03 * s
            tip, back = (fx, focus), fx + 0.03 * s
            d.polygon([tip, (back, focus - 0.02 * s), (back, focus + 0.02 * s)], fill=255)
        if bar:
            y0, y1 = 0.3 * g.h, 0.7 * g.h
            for k in range(8):
                d.rectangle(
                    [bar_x, y0 + (y1 - y0) * k / 8, bar_x + 0.03 * s, y0 + (y1 - y0) * (k + 1) / 8],
                    fill=round(255 * (1 - k / 8)),
                )
        text(d)

    return draw


def _draw_histo(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """H&E: pink eosin stroma with fibres, white lumens, purple nuclei; tumour = crowded dark nuclei.

    Texture already differs per field; stain tone, illumination and a scale bar add the rest.
    """
    a = p.attrs
    stretch = (1.0, 4.0) if rng.random() < 0.5 else (4.0, 1.0)
    fib = np.clip(_noise(rng, g, 0.025, stretch) * 0.8 + 0.2, 0, 1)
    pink = np.asarray((0.94, 0.62, 0.8), np.float32) * rng.uniform(0.95, 1.03, 3).astype(np.float32)
    img = _rgb(1.0 - 0.4 * fib, pink) + _rgb(0.4 * fib, (0.84, 0.4, 0.64))
    img += (0.03 * _noise(rng, g, 0.1))[..., None]
    lumens = np.zeros((g.h, g.w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.1, g.hu - 0.1), rng.uniform(0.1, g.wu - 0.1)
        lumens = np.maximum(lumens, _blob(g, rng, cy, cx, rng.uniform(0.04, 0.1), irregular=True, soft=0.01))
    img = _blend(img, lumens, (0.97, 0.95, 0.97))
    nuclei = np.maximum(
        _nuclei(rng, g, spacing=0.05, radius=0.013, density=0.5),
        _nuclei(rng, g, spacing=0.037, radius=0.01, density=0.3),
    ) * (1 - lumens)
    img = _blend(img, nuclei, (0.38, 0.2, 0.58))
    if a["finding"] == "tumour":
        img = _histo_tumour(rng, g, a, img)
    # Microscope illumination and camera exposure; a scale bar in some figures.
    img = img * (_shading(rng, g, 0.12, 0.25) * rng.uniform(0.92, 1.06))[..., None]
    if rng.random() < 0.35:
        length, left = rng.uniform(0.1, 0.25), rng.random() < 0.3
        bar = _scale_bar_fn(g, length, left=left, thick=rng.uniform(0.012, 0.025))
        img = _overlay(img, bar, (0.0, 0.0, 0.0) if rng.random() < 0.7 else (1.0, 1.0, 1.0))
    return np.clip(img, 0.0, 1.0)


def _histo_tumour(rng: np.random.Generator, g: _Grid, a: dict[str, Any], img: np.ndarray) -> np.ndarray:
    side = -1.0 if a["position"] == "left" else 1.0
    large = a["size"] == "large"
    r = rng.uniform(0.26, 0.32) if large else rng.uniform(0.13, 0.17)
    cy = g.hu / 2 + rng.normal(0, 0.05)
    cx = g.wu / 2 + side * (g.wu * 0.25 if not large else g.wu * 0.22) + rng.normal(0, 0.02)
    region = _blob(g, rng, cy, cx, r, irregular=True, soft=0.03)
    img = _blend(img, region * 0.55, (0.72, 0.45, 0.72))
    dense = (
        np.maximum(
            _nuclei(rng, g, spacing=0.043, radius=0.016, density=0.9),
            _nuclei(rng, g, spacing=0.031, radius=0.011, density=0.6),
        )
        * region
    )
    return _blend(img, dense, (0.26, 0.1, 0.45))


def _nuclei(
    rng: np.random.Generator, g: _Grid, *, spacing: float, radius: float, density: float
) -> np.ndarray:
    """Round-ish nuclei, one per occupied cell of a jittered grid (vectorised by cell lookup)."""
    ny, nx = int(g.hu / spacing) + 1, int(g.wu / spacing) + 1
    margin = min(radius * 0.8, spacing * 0.35)  # nuclei may touch cell borders: keeps the grid irregular
    oy = rng.uniform(margin, spacing - margin, (ny, nx)).astype(np.float32)
    ox = rng.uniform(margin, spacing - margin, (ny, nx)).astype(np.float32)
    rad = (rng.uniform(0.6, 1.0, (ny, nx)) * radius * (rng.random((ny, nx)) < density)).astype(np.float32)
    ecc = rng.uniform(0.75, 1.33, (ny, nx)).astype(np.float32)
    iy = np.minimum((g.y[:, 0] / spacing).astype(np.intp), ny - 1)[:, None]
    ix = np.minimum((g.x[0] / spacing).astype(np.intp), nx - 1)[None, :]
    dy = g.y - (iy * spacing + oy[iy, ix])
    dx = g.x - (ix * spacing + ox[iy, ix])
    e = ecc[iy, ix]
    dist = np.sqrt(dy * dy * e + dx * dx / e)
    return np.clip((rad[iy, ix] - dist) / max(0.004, g.px), 0.0, 1.0)


_FLUO_RGB = {"green": (0.15, 1.0, 0.25), "red": (1.0, 0.15, 0.12), "blue": (0.35, 0.55, 1.0)}


_FLUO_LASER = {"green": "488 nm", "red": "594 nm", "blue": "405 nm"}


def _draw_fluo(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Fluorescence: black field, ``count`` separated cells in one channel colour, scale bar.

    Cell size and placement, background and out-of-focus haze, uneven illumination, exposure,
    camera noise, the scale bar and a channel label vary per image (the hue never does).
    """
    a = p.attrs
    slots = [((0.27 + 0.46 * (i // 2)) * g.hu, (0.27 + 0.46 * (i % 2)) * g.wu) for i in range(4)]
    cells = np.zeros((g.h, g.w), np.float32)
    r_lo = rng.uniform(0.1, 0.14)
    for i in rng.permutation(4)[: a["count"]]:
        cy, cx = slots[int(i)]
        cy, cx = cy + rng.normal(0, 0.04), cx + rng.normal(0, 0.04)
        r = rng.uniform(r_lo, r_lo + 0.04)
        body = _blob(g, rng, cy, cx, r, irregular=True, soft=0.02)
        nucleus = _blob(
            g, rng, cy + rng.normal(0, 0.02), cx + rng.normal(0, 0.02), r * 0.4, irregular=False, soft=0.015
        )
        cells = np.maximum(cells, body * (0.55 + 0.25 * nucleus))
    texture = 0.75 + 0.25 * np.clip(_noise(rng, g, 0.02), -1, 1)
    light = _shading(rng, g, 0.4, 0.6) * rng.uniform(0.75, 1.0)
    haze = rng.uniform(0.0, 0.05) * np.clip(_noise(rng, g, 0.35) + 1.0, 0.0, 2.0)
    intensity = cells * texture * light + rng.uniform(0.01, 0.05) + haze
    intensity = np.clip(_grain(rng, intensity, rng.uniform(0.01, 0.035)), 0, 1) ** rng.uniform(0.8, 1.2)
    img = _rgb(intensity, _FLUO_RGB[a["colour"]])
    s = min(g.h, g.w)
    if rng.random() < 0.85:
        bar = _scale_bar_fn(
            g, rng.uniform(0.1, 0.25), left=rng.random() < 0.3, thick=rng.uniform(0.012, 0.03), margin=0.05
        )
        img = _overlay(img, bar, (1.0, 1.0, 1.0))
    if rng.random() < 0.4:
        size = round(rng.uniform(0.05, 0.075) * s)
        label = _text_fn([(0.04 * s, 0.03 * s, _FLUO_LASER[a["colour"]])], size)
        img = _overlay(img, label, (1.0, 1.0, 1.0))
    return np.clip(img, 0.0, 1.0)


def _draw_fundus(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Colour fundus photo: orange-red disc on black, yellow optic disc, dark vessels, lesions.

    Camera field of view (circle size, centring, flat top/bottom when the circle is cropped),
    fixation (disc/macula position), pigmentation, exposure, uneven illumination and the camera's
    text (eye, date) vary per image.
    """
    a = p.attrs
    cy = g.hu / 2 + rng.normal(0, 0.02)
    cx = g.wu / 2 + float(np.clip(rng.normal(0, 0.05), -0.1, 0.1))
    R = rng.uniform(0.43, 0.56) * g.hu
    side = 1.0 if p.extras["eye"] == "right" else -1.0
    fov = _ellipse(g, cy, cx, R, R, 0.01)
    rr2 = ((g.y - cy) ** 2 + (g.x - cx) ** 2) / (R * R)
    tex = 0.04 * _noise(rng, g, 0.05)
    base = rng.uniform((0.72, 0.26, 0.05), (0.92, 0.42, 0.16)).astype(np.float32)
    fall = rng.uniform(0.15, 0.35)
    light = _shading(rng, g, 0.5, 0.6) * rng.uniform(0.8, 1.15)
    img = np.stack(
        [
            (base[0] - fall * rr2 + tex) * light,
            (base[1] - fall * 0.64 * rr2 + tex * 0.5) * light,
            base[2] * light,
        ],
        axis=-1,
    )
    mac_y, mac_x = cy + rng.normal(0, 0.03), cx - side * rng.uniform(0.02, 0.08)
    macula = np.exp(-((g.y - mac_y) ** 2 + (g.x - mac_x) ** 2) / (2 * 0.06**2))
    img = img * (1.0 - 0.35 * macula[..., None])
    dy, dx = cy + rng.normal(0, 0.04), cx + side * rng.uniform(0.22, 0.32) * g.hu
    img = _blend(img, _fundus_vessels(rng, g, (dy, dx), side), (0.42, 0.04, 0.03))
    dr = rng.uniform(0.85, 1.15)
    img = _blend(img, _ellipse(g, dy, dx, 0.07 * dr, 0.065 * dr, 0.012), (1.0, 0.86, 0.55))
    img = _blend(img, _ellipse(g, dy, dx, 0.03 * dr, 0.028 * dr, 0.01), (1.0, 0.96, 0.82))
    if a["finding"] == "haemorrhage":
        img = _blend(
            img,
            _spots(rng, g, (mac_y, mac_x), (0.08, 0.3), int(rng.integers(4, 9)), (0.014, 0.028)),
            (0.38, 0.03, 0.02),
        )
    elif a["finding"] == "exudate":
        img = _blend(
            img,
            _spots(rng, g, (mac_y, mac_x), (0.07, 0.16), int(rng.integers(6, 14)), (0.008, 0.015)),
            (1.0, 0.9, 0.45),
        )
    img = np.clip(_grain(rng, img * fov[..., None], rng.uniform(0.005, 0.02)), 0.0, 1.0)
    if rng.random() < 0.6:
        s = min(g.h, g.w)
        eye = "OD" if side > 0 else "OS"
        blocks = [[eye], [_date(rng)], [_pick(rng, ("45°", "50°", "TRC-50DX", "CR-2", "FF450"))]]
        size = round(rng.uniform(0.045, 0.07) * s)
        items = _corner_text(rng, g, blocks[: int(rng.integers(1, 4))], size, margin=0.02)
        img = _overlay(img, _text_fn(items, size), (0.9, 0.9, 0.9))
    return img


def _fundus_vessels(rng: np.random.Generator, g: _Grid, disc: tuple[float, float], side: float) -> np.ndarray:
    """Four vessel arcades leaving the disc up/down and bending temporally (around the macula) or nasally."""
    s = min(g.h, g.w)
    mask = Image.new("L", (g.w, g.h), 0)
    d = ImageDraw.Draw(mask)
    t = np.linspace(0.0, 1.0, 16)
    for v in (-1.0, 1.0):
        for tx, length, width, bend in ((-side, 0.55, 0.02, 0.42), (side, 0.3, 0.014, 0.25)):
            start = v * math.pi / 2 + rng.normal(0, 0.08)
            theta = start + (v * (math.pi / 2 - tx * bend * math.pi) - start) * t
            step = length / len(t)
            xs = disc[1] + np.cumsum(np.cos(theta)) * step
            ys = disc[0] + np.cumsum(np.sin(theta)) * step
            pts = [(disc[1] * s, disc[0] * s)] + [
                (float(x * s), float(y * s)) for x, y in zip(xs, ys, strict=True)
            ]
            d.line(pts, fill=255, width=max(1, round(width * s)), joint="curve")
    return _smooth(np.asarray(mask, np.float32) / 255.0, 1.3) * 0.9


def _spots(
    rng: np.random.Generator,
    g: _Grid,
    centre: tuple[float, float],
    ring: tuple[float, float],
    n: int,
    radius: tuple[float, float],
) -> np.ndarray:
    """``n`` small irregular spots at random angles within a ring around ``centre``."""
    mask = np.zeros((g.h, g.w), np.float32)
    for _ in range(n):
        th, dist = rng.uniform(0, 2 * math.pi), rng.uniform(*ring)
        cy, cx = centre[0] + dist * math.sin(th), centre[1] + dist * math.cos(th)
        mask = np.maximum(mask, _blob(g, rng, cy, cx, rng.uniform(*radius), irregular=True, soft=0.004))
    return mask


_BLOT_PROTEINS = ("p-ERK", "ERK", "GAPDH", "actin", "p53", "LC3", "p-AKT", "AKT", "HIF-1α", "vinculin")


def _draw_blot(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Western blot: light strips with dark horizontal bands per lane (separable band profiles).

    Lane and strip counts, margins, strip tone and outline, band position, thickness, width and
    doublets, membrane shading, lane headers and molecular-weight marks vary per image.
    """
    s = min(g.h, g.w)
    n_lanes = int(rng.integers(3, 11))
    n_rows = _pickw(rng, (1, 2, 3, 4), (0.1, 0.35, 0.35, 0.2))  # target(s) + loading control
    kda = rng.random() < 0.45
    left = rng.uniform(0.17, 0.3) * g.wu
    right = g.wu - (rng.uniform(0.14, 0.2) * g.wu if kda else rng.uniform(0.03, 0.1))
    lane_w = (right - left) / n_lanes
    centres = left + lane_w * (np.arange(n_lanes) + 0.5)
    n_heads = int(rng.integers(1, 3))
    head_h = 0.075 * n_heads + rng.uniform(0.01, 0.04)
    usable = g.hu - head_h - rng.uniform(0.01, 0.05)
    gap = rng.uniform(0.0, 0.04)
    strip_h = usable / n_rows
    first_top = head_h + (usable - strip_h * n_rows) * rng.uniform(0.0, 1.0)
    bg = rng.uniform(0.95, 1.0)
    img = np.full((g.h, g.w), bg, np.float32)
    xs = g.x[0][None, :]
    in_lanes = ((g.x > left - 0.01) & (g.x < right + 0.01)).astype(np.float32)
    labels, marks, boxes = [], [], []
    strip_tone, outline = rng.uniform(0.74, 0.92), rng.random() < 0.3
    for row in range(n_rows):
        top, bottom = first_top + row * strip_h + gap / 2, first_top + (row + 1) * strip_h - gap / 2
        strip = ((g.y > top) & (g.y < bottom)).astype(np.float32) * in_lanes
        tone = strip_tone + rng.normal(0, 0.02) + 0.04 * _noise(rng, g, 0.3)
        img = img * (1 - strip) + tone * strip
        width = rng.uniform(0.3, 0.48) * lane_w
        for _ in range(1 if rng.random() < 0.7 else 2):  # doublets: e.g. phospho/total forms
            inten = rng.uniform(0.15, 1.0, n_lanes).astype(np.float32)
            profile = (inten[:, None] * np.exp(-(np.abs((xs - centres[:, None]) / width) ** 4))).sum(0)
            yc = top + (bottom - top) * rng.uniform(0.3, 0.7)
            thick = min(rng.uniform(0.1, 0.2) * (bottom - top), 0.035)
            band = np.exp(-(((g.y[:, 0] - yc) / thick) ** 2))
            img = img - rng.uniform(0.55, 0.85) * np.outer(band, profile) * strip
        labels.append((0.02 * s, ((top + bottom) / 2 - 0.03) * s, _pick(rng, _BLOT_PROTEINS)))
        if kda:
            weight = f"- {int(rng.integers(15, 180))}"
            marks.append(((right + 0.02) * s, ((top + bottom) / 2 - 0.03) * s, weight))
        if outline:
            boxes.append(((left - 0.01) * s, top * s, (right + 0.01) * s, bottom * s))
    heads = []
    for k in range(n_heads):
        y = (0.02 + 0.075 * k) * s
        signs = [_pick(rng, ("+", "-")) for _ in centres] if k == 0 or rng.random() < 0.5 else None
        heads += [
            (float(c * s) - 0.02 * s, y, signs[i] if signs else str(i + 1)) for i, c in enumerate(centres)
        ]
    if kda:
        heads.append(((right + 0.02) * s, 0.02 * s, "kDa"))
    img = _smooth(img, 1.3) * _shading(rng, g, 0.08, 0.15)
    text = _text_fn(labels + heads + marks, round(rng.uniform(0.055, 0.075) * s))

    def draw(d: ImageDraw.ImageDraw) -> None:
        for box in boxes:
            d.rectangle(box, outline=255, width=max(1, round(0.006 * s)))
        text(d)

    img = _overlay(img, draw, 0.0)
    return np.clip(_grain(rng, img, rng.uniform(0.005, 0.02)), 0.0, 1.0)


_CHART_RGB = {"red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 119, 180)}


_CHART_YLABELS = (
    "Relative expression",
    "Tumour volume (mm³)",
    "Viability (%)",
    "Body weight (g)",
    "IL-6 (pg/ml)",
    "Fold change",
)
_CHART_TITLES = ("Expression", "Tumour growth", "Viability", "Weight", "Serum IL-6", "Response")
_CHART_GREYS = ((110, 110, 110), (40, 40, 40), (170, 170, 170))


def _draw_chart(rng: np.random.Generator, g: _Grid, p: _Panel) -> np.ndarray:
    """Plot on white: axes with ticks and labels, bars with error bars or a line with markers.

    Plotting styles differ between labs: margins, axis label and title, tick count and range,
    full frame or two spines, grid lines, a grey ggplot-like panel, grouped bars, data points,
    extra grey series and legends are drawn per image (the labelled colour always dominates).
    """
    a, s = p.attrs, min(g.h, g.w)
    im = Image.new("RGB", (g.w, g.h), "white")
    d = ImageDraw.Draw(im)
    ylabel, title = rng.random() < 0.6, rng.random() < 0.35
    x0 = rng.uniform(0.2, 0.26) * g.w if ylabel else rng.uniform(0.13, 0.19) * g.w
    y1 = rng.uniform(0.14, 0.2) * g.h if title else rng.uniform(0.05, 0.12) * g.h
    x1, y0 = rng.uniform(0.9, 0.98) * g.w, rng.uniform(0.8, 0.88) * g.h
    lw = max(1, round(rng.uniform(0.005, 0.011) * s))
    font = _font(round(rng.uniform(0.045, 0.065) * s))
    colour = tuple(
        int(c) for c in np.clip(np.asarray(_CHART_RGB[a["colour"]]) + rng.integers(-15, 16, 3), 0, 255)
    )
    panel = rng.random() < 0.12
    if panel:
        d.rectangle([x0, y1, x1, y0], fill=(232, 232, 232))
    grid = panel or rng.random() < 0.3
    n_ticks = int(rng.integers(3, 7))
    top_value = _pick(rng, (1, 1.5, 2, 4, 50, 100, 150, 200, 400))
    for i in range(n_ticks):
        yy = y0 + (y1 - y0) * i / (n_ticks - 1)
        if grid:
            d.line([(x0, yy), (x1, yy)], fill=(255, 255, 255) if panel else (225, 225, 225), width=1)
        d.line([(x0 - 0.02 * s, yy), (x0, yy)], fill="black", width=lw)
        value = top_value * i / (n_ticks - 1)
        label = f"{value:.0f}" if top_value >= 50 else f"{value:.1f}"
        d.text((x0 - 0.03 * s - float(font.getlength(label)), yy - 0.03 * s), label, fill="black", font=font)
    greys = [_CHART_GREYS[int(k)] for k in rng.permutation(3)]
    if a["chart_type"] == "bar chart":
        series = _chart_bars(rng, d, (x0, y0, x1, y1), colour, greys, lw, font)
    else:
        series = _chart_line(rng, d, (x0, y0, x1, y1), colour, greys, lw, font)
    if rng.random() < 0.25:
        d.rectangle([x0, y1, x1, y0], outline="black", width=lw)
    else:
        d.line([(x0, y1), (x0, y0), (x1, y0)], fill="black", width=lw)
    if series > 1 or rng.random() < 0.2:
        _chart_legend(rng, d, (x0, y0, x1, y1), [colour, *greys][:series], font)
    if title:
        text = _pick(rng, _CHART_TITLES)
        d.text(((x0 + x1 - float(font.getlength(text))) / 2, 0.02 * g.h), text, fill="black", font=font)
    if ylabel:
        _chart_ylabel(im, _pick(rng, _CHART_YLABELS), font, (0.01 * g.w, (y0 + y1) / 2))
    return np.asarray(im, np.float32) / 255.0


def _chart_ylabel(im: Image.Image, text: str, font: Any, anchor: tuple[float, float]) -> None:
    """Vertical y-axis title, centred on ``anchor`` height (drawn on a strip, rotated, pasted)."""
    length = int(font.getlength(text)) + 2
    height = int(font.size * 1.3) if hasattr(font, "size") else 12
    strip = Image.new("L", (length, height), 0)
    ImageDraw.Draw(strip).text((1, 0), text, fill=255, font=font)
    strip = strip.rotate(90, expand=True)
    x, y = int(anchor[0]), int(anchor[1] - strip.height / 2)
    im.paste((0, 0, 0), (x, y, x + strip.width, y + strip.height), strip)


def _chart_legend(
    rng: np.random.Generator,
    d: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    colours: Sequence[tuple[int, ...]],
    font: Any,
) -> None:
    """Legend with colour swatches in the upper left or right of the plot area."""
    x0, y0, x1, y1 = box
    size = font.size if hasattr(font, "size") else 10
    names = [_pick(rng, ("Control", "Treated", "WT", "KO", "Vehicle", "Drug", "Sham")) for _ in colours]
    width = size * 1.5 + max(float(font.getlength(n)) for n in names)
    lx = x0 + size * 0.6 if rng.random() < 0.5 else x1 - width - size * 0.6
    for k, (col, name) in enumerate(zip(colours, names, strict=True)):
        ly = y1 + size * (0.4 + 1.3 * k)
        d.rectangle([lx, ly + size * 0.15, lx + size * 0.8, ly + size * 0.95], fill=col)
        d.text((lx + size * 1.2, ly), name, fill="black", font=font)


def _chart_bars(
    rng: np.random.Generator,
    d: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    colour: tuple[int, ...],
    greys: Sequence[tuple[int, ...]],
    lw: int,
    font: Any,
) -> int:
    """Bars (grouped with a grey bar sometimes), error bars, data points; returns the series count."""
    x0, y0, x1, y1 = box
    n = int(rng.integers(2, 7))
    per = 2 if rng.random() < 0.3 else 1
    slot = (x1 - x0) / n
    fill = rng.uniform(0.55, 0.8)
    names = ("Ctrl", "KO", "WT", "siRNA", "Drug", "Veh", "Tx")
    errors, dots = rng.random() < 0.85, rng.random() < 0.25
    bar_w = slot * fill / per
    for i in range(n):
        start = x0 + slot * (i + (1 - fill) / 2)
        for k in range(per):
            v = rng.uniform(0.2, 0.9)
            left, right = start + bar_w * k, start + bar_w * (k + 1)
            top = y0 + (y1 - y0) * v
            col = colour if k == 0 else greys[0]
            d.rectangle([left, top, right, y0], fill=col, outline="black", width=max(1, lw // 2))
            mid = (left + right) / 2
            err = (y0 - y1) * rng.uniform(0.03, 0.08)
            if errors:
                d.line([(mid, top - err), (mid, top + err)], fill="black", width=lw)
                cap = bar_w * 0.2
                d.line([(mid - cap, top - err), (mid + cap, top - err)], fill="black", width=lw)
            if dots:
                rad = max(1.0, 1.2 * lw)
                for px, py in zip(
                    rng.uniform(left + bar_w * 0.2, right - bar_w * 0.2, 4),
                    top + rng.normal(0, err + 1e-3, 4),
                    strict=True,
                ):
                    d.ellipse([px - rad, py - rad, px + rad, py + rad], outline="black", width=1)
        d.text(
            (start, y0 + 0.02 * (y0 - y1)), names[(i * 3 + int(rng.integers(7))) % 7], fill="black", font=font
        )
        if i and rng.random() < 0.4:
            d.text((start + slot * 0.2, top - err - 0.1 * (y0 - y1)), "*", fill="black", font=font)
    return per


def _chart_line(
    rng: np.random.Generator,
    d: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    colour: tuple[int, ...],
    greys: Sequence[tuple[int, ...]],
    lw: int,
    font: Any,
) -> int:
    """A coloured series plus up to two grey ones, markers and optional error bars; series count."""
    x0, y0, x1, y1 = box
    n = int(rng.integers(5, 12))
    xs = x0 + (x1 - x0) * (np.arange(n) + 0.5) / n
    series = [np.clip(np.cumsum(rng.normal(0.08, 0.1, n)) + rng.uniform(0.1, 0.3), 0.05, 0.95)]
    for _ in range(_pickw(rng, (0, 1, 2), (0.45, 0.45, 0.1))):
        series.append(np.clip(series[0] * rng.uniform(0.3, 0.9) + rng.normal(0, 0.04, n), 0.05, 0.95))
    square, errors = rng.random() < 0.35, rng.random() < 0.4
    for k, vals in enumerate(series):
        col = colour if k == 0 else greys[k - 1]
        pts = [(float(x), float(y0 + (y1 - y0) * v)) for x, v in zip(xs, vals, strict=True)]
        d.line(pts, fill=col, width=lw * 2, joint="curve")
        rad = 2.2 * lw
        for px, py in pts:
            if errors:
                err = (y0 - y1) * 0.04
                d.line([(px, py - err), (px, py + err)], fill=col, width=max(1, lw // 2))
            marker = [px - rad, py - rad, px + rad, py + rad]
            if square:
                d.rectangle(marker, fill=col)
            else:
                d.ellipse(marker, fill=col)
    for i in range(0, n, 2):
        d.text((xs[i] - 0.01 * (x1 - x0), y0 + 0.02 * (y0 - y1)), str(i * 2), fill="black", font=font)
    return len(series)


_RENDERERS: dict[str, Callable[[np.random.Generator, _Grid, _Panel], np.ndarray]] = {
    "chest_xray": _draw_cxr,
    "brain_mri": _draw_mri,
    "ultrasound": _draw_us,
    "histopathology": _draw_histo,
    "fluorescence": _draw_fluo,
    "fundus": _draw_fundus,
    "western_blot": _draw_blot,
    "chart": _draw_chart,
}


def _render_panel(rng: np.random.Generator, panel: _Panel, h: int, w: int) -> np.ndarray:
    return _RENDERERS[panel.modality.id](rng, _grid(h, w), panel)


def _panel_aspect(rng: np.random.Generator, mod: Modality) -> float:
    return float(rng.uniform(*mod.aspect))


def _long_side(rng: np.random.Generator, image_size: int) -> int:
    """Usual long side ≈ ``image_size``; ~5 % are 2.3–3.2× larger (≤ 800 px) to exercise resize caps."""
    if rng.random() < 0.05:
        return max(image_size, min(800, round(image_size * rng.uniform(2.3, 3.2))))
    return round(image_size * rng.uniform(0.9, 1.0))


def _render_figure(rng: np.random.Generator, fig: _FigSpec, image_size: int) -> np.ndarray:
    """Whole figure: a single panel, or (A)/(B) panels side by side on white with panel letters."""
    long_side = _long_side(rng, image_size)
    aspects = [_panel_aspect(rng, p.modality) for p in fig.panels]
    if not fig.compound:
        w, h = _fit(aspects[0], long_side)
        return _render_panel(rng, fig.panels[0], h, w)
    gap = 0.04
    total = sum(aspects) + gap
    ph = max(48, round(min(long_side * 1.9, 1000) / total))
    arrays = [
        _as_rgb(_render_panel(rng, p, ph, max(16, round(ph * asp))))
        for p, asp in zip(fig.panels, aspects, strict=True)
    ]
    gap_px = max(2, round(gap * ph))
    spacer = np.ones((ph, gap_px, 3), np.float32)
    canvas = np.concatenate([arrays[0], spacer, arrays[1]], axis=1)
    return _panel_letters(canvas, ph, arrays[0].shape[1] + gap_px)


def _panel_letters(arr: np.ndarray, ph: int, second_x: int) -> np.ndarray:
    """Black panel letters on white boxes in the top-left corner of each panel."""
    size = max(8, round(0.1 * ph))
    corners = ((0, "A"), (second_x, "B"))

    def boxes(d: ImageDraw.ImageDraw) -> None:
        for x, _ in corners:
            d.rectangle([x, 0, x + size * 1.1, size * 1.25], fill=255)

    arr = _overlay(arr, boxes, (1.0, 1.0, 1.0))
    return _overlay(
        arr, _text_fn([(x + size * 0.15, 0, letter) for x, letter in corners], size), (0.0, 0.0, 0.0)
    )


def _fit(aspect: float, long_side: int) -> tuple[int, int]:
    """(w, h) with the given w/h aspect whose longer side is ``long_side``."""
    if aspect >= 1:
        return long_side, max(16, round(long_side / aspect))
    return max(16, round(long_side * aspect)), long_side


def _as_rgb(arr: np.ndarray) -> np.ndarray:
    return arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, axis=2)
