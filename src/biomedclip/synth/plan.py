"""Article metadata and figure planning: ids, labels, panels, formats, file names, breakage.

Everything an article will contain is decided here, from the article's RNG, before captions are
written or pixels drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biomedclip.synth.sampling import _pick, _pickw
from biomedclip.synth.specs import _FigSpec, _sample_attrs
from biomedclip.synth.vocab import _FIGURE_BROKEN_KINDS, MODALITIES


@dataclass(frozen=True)
class _Config:
    """Per-run settings shipped to worker processes (picklable, small)."""

    out: str
    seed: int
    package_fraction: float
    broken_fraction: float
    image_size: int


# Media format per modality (choices, weights), mixed as in PMC; encode._encode writes each one.
_FORMATS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "chest_xray": (("jpg", "tif16", "png", "jpg_rgb"), (0.5, 0.25, 0.15, 0.1)),
    "brain_mri": (("jpg", "tif16", "png", "png_p"), (0.4, 0.3, 0.2, 0.1)),
    "ultrasound": (("jpg", "png", "jpg_rgb"), (0.7, 0.2, 0.1)),
    "histopathology": (("jpg", "jpg_cmyk", "tif", "png"), (0.75, 0.1, 0.1, 0.05)),
    "fluorescence": (("jpg", "png", "tif"), (0.6, 0.25, 0.15)),
    "fundus": (("jpg", "jpg_cmyk", "png"), (0.8, 0.1, 0.1)),
    "western_blot": (("jpg", "png", "png_p", "tif"), (0.5, 0.2, 0.15, 0.15)),
    "chart": (("png_p", "jpg", "png"), (0.5, 0.3, 0.2)),
    "compound": (("jpg", "png", "jpg_cmyk"), (0.75, 0.15, 0.1)),
}
_EXT = {
    "jpg": "jpg",
    "jpg_rgb": "jpg",
    "jpg_cmyk": "jpg",
    "png": "png",
    "png_p": "png",
    "tif": "tif",
    "tif16": "tif",
}
_JOURNALS = (
    ("J Synth Med", "Journal of Synthetic Medicine", "jsm", "Synthetic Press"),
    ("Synth Radiol Rep", "Synthetic Radiology Reports", "srr", "Imaginary Health Publishing"),
    ("Front Simul Biol", "Frontiers in Simulated Biology", "fsb", "Open Mock Science"),
    ("Case Rep Artif Imaging", "Case Reports in Artificial Imaging", "crai", "Synthetic Press"),
    ("Synth Cell Biol", "Synthetic Cell Biology", "scb", "Open Mock Science"),
    (
        "Int J Fict Pathol",
        "International Journal of Fictional Pathology",
        "ijfp",
        "Imaginary Health Publishing",
    ),
)
_LICENSES = (
    (
        "cc-by",
        "https://creativecommons.org/licenses/by/4.0/",
        "Creative Commons Attribution 4.0 International License",
        0.5,
    ),
    ("cc-by", "http://creativecommons.org/licenses/by/3.0/", "Creative Commons Attribution License", 0.1),
    (
        "cc-by-nc",
        "https://creativecommons.org/licenses/by-nc/4.0/",
        "Creative Commons Attribution-NonCommercial 4.0 International License",
        0.2,
    ),
    (
        "cc0",
        "https://creativecommons.org/publicdomain/zero/1.0/",
        "Creative Commons CC0 public domain dedication",
        0.12,
    ),
    (
        "cc-by-nc-nd",
        "https://creativecommons.org/licenses/by-nc-nd/4.0/",
        "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 License",
        0.08,
    ),
)


@dataclass
class _Meta:
    """Article-level facts shared by the XML, the file layout and the label rows."""

    index: int
    pmcid: str
    pmid: str
    doi: str
    journal: tuple[str, str, str, str]
    year: int
    month: int
    day: int
    license: tuple[str, str, str, float]
    article_type: str
    kind: str
    stem: str
    wrapper: str
    id_style: str
    label_style: str
    malformed: bool
    ascii_refs: bool
    floats_at_end: bool


def _pmc_number(seed: int, index: int) -> int:
    """Unique within a corpus (index), different across seeds (offset) — 8 digits like today's PMCIDs."""
    return 10_000_000 + (seed % 89) * 1_000_000 + index


def _sample_meta(rng: np.random.Generator, cfg: _Config, index: int) -> _Meta:
    journal = _pick(rng, _JOURNALS)
    year = int(rng.integers(2012, 2025))
    elocation = int(rng.integers(100000, 999999))
    lic = _pickw(rng, _LICENSES, [x[3] for x in _LICENSES])
    num = _pmc_number(cfg.seed, index)
    stem = f"{journal[2]}-{year % 100:02d}-{elocation}"
    return _Meta(
        index=index,
        pmcid=f"PMC{num}",
        pmid=str(30_000_000 + (cfg.seed % 61) * 100_000 + index),
        doi=f"10.5555/{journal[2]}.{year}.{index:06d}",
        journal=journal,
        year=year,
        month=int(rng.integers(1, 13)),
        day=int(rng.integers(1, 29)),
        license=lic,
        article_type=_pickw(rng, ("research-article", "case-report", "review-article"), (0.7, 0.22, 0.08)),
        kind="package" if rng.random() < cfg.package_fraction else "folder",
        stem=stem,
        wrapper=_pickw(rng, ("bare", "articleset", "oai"), (0.75, 0.15, 0.1)),
        id_style=_pick(rng, ("F{n}", "F{n}", "fig{n}", "f{n}", stem + "-F{n}")),
        label_style=_pickw(rng, ("Figure {n}", "Fig. {n}", "FIGURE {n}"), (0.7, 0.2, 0.1)),
        malformed=bool(rng.random() < cfg.broken_fraction / 4),
        ascii_refs=bool(rng.random() < 0.4),
        floats_at_end=bool(rng.random() < 0.2),
    )


def _n_figures(rng: np.random.Generator) -> int:
    return int(_pickw(rng, (0, 1, 2, 3, 4), (0.06, 0.3, 0.3, 0.2, 0.14)))


def _plan_figures(rng: np.random.Generator, cfg: _Config, meta: _Meta) -> list[_FigSpec]:
    """Decide ids, labels, panels, formats, file names and breakage for every figure."""
    n = _n_figures(rng)
    group_at = int(rng.integers(0, n - 1)) if n >= 2 and rng.random() < 0.12 else -1
    figs: list[_FigSpec] = []
    number, seq, i = 0, 0, 0
    while i < n:
        number += 1
        members = 2 if i == group_at else 1
        for j in range(members):
            seq += 1
            suffix = "" if members == 1 else "AB"[j]
            figs.append(_plan_one(rng, cfg, meta, number, suffix, seq))
            if members == 2:
                figs[-1].group = meta.id_style.format(n=number)
        i += members
    return figs


def _plan_one(
    rng: np.random.Generator, cfg: _Config, meta: _Meta, number: int, suffix: str, seq: int
) -> _FigSpec:
    """One figure: modality drawn uniformly (first figure cycles by article index for coverage)."""
    mod = MODALITIES[meta.index % len(MODALITIES)] if seq == 1 else _pick(rng, MODALITIES)
    panels = [_sample_attrs(rng, mod)]
    if rng.random() < 0.12:
        other = mod if rng.random() < 0.5 else _pick(rng, MODALITIES)
        panels.append(_sample_attrs(rng, other))
    broken = _pick(rng, _FIGURE_BROKEN_KINDS) if rng.random() < cfg.broken_fraction else None
    formats, weights = _FORMATS["compound" if len(panels) > 1 else mod.id]
    fmt = _pickw(rng, formats, weights)
    if broken == "corrupt_image" and fmt.startswith("tif"):
        fmt = "jpg"  # truncated uncompressed TIFF strips can still half-decode; keep corruption detectable
    media = f"{meta.stem}-g{seq:03d}.{_EXT[fmt]}"
    href = media.rsplit(".", 1)[0] if rng.random() < 0.7 else media
    fig_id = meta.id_style.format(n=number) + (suffix.lower() if meta.id_style != "F{n}" else suffix)
    label = meta.label_style.format(n=number) + suffix
    return _FigSpec(fig_id, label, panels, media, href, fmt, broken)
