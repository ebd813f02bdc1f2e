"""Evaluation data in the layouts people actually have, behind one small interface.

Classification (zero-shot, linear probe):

* **image folder** — ``ROOT/<class>/<image>``, or with splits ``ROOT/{train,val,test}/<class>/<image>``;
* **CSV** — header ``path,label[,split]`` (``image``/``file`` also name the path column; any other
  names via :class:`~biomedclip.io.columns.CsvColumns`, the CLI's ``--path-col``/``--label-col``/
  ``--split-col``), paths relative to the CSV's folder, several labels of one image separated by
  ``|`` (multi-label);
* **MedMNIST-style .npz** — ``{train,val,test}_images`` ([N,H,W] grey, [N,H,W,3] RGB or [N,D,H,W]
  volumes, any dtype) and ``{split}_labels`` ([N] / [N,1] class ids, [N,C] 0/1 multi-label).

Retrieval: our **shards** (``DIR/<split>/*.tar`` from ``biomedclip data build``; pairs sharing an
image — same sha256 in their metadata — become one image with several captions) or a **CSV**
``path,caption[,split]`` (repeat a path for several captions; ``--caption-col`` names another column).

Images are read lazily through :mod:`biomedclip.io.medical`, so DICOM and NIfTI files work
anywhere a path does (with the same :class:`~biomedclip.io.medical.ReadOptions`). An
unreadable image is not fatal: embedding skips it, counts it and names it in the results.

Every dataset has a :meth:`fingerprint` per split that changes when the data does (file names,
sizes and modification times, or the array bytes for .npz) and when the reading options do; it
keys the feature cache.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from biomedclip.errors import BiomedclipError
from biomedclip.io.columns import CsvColumns, find_column
from biomedclip.io.medical import (
    DICOM_SUFFIXES,
    NIFTI_SUFFIXES,
    MedicalImageError,
    ReadOptions,
    load_image,
    load_image_bytes,
)
from biomedclip.io.pixels import array_to_rgb

__all__ = [
    "IMAGE_SUFFIXES",
    "ArrayImages",
    "ClassificationData",
    "DatasetError",
    "FileImages",
    "ImageSource",
    "LabeledSplit",
    "MemoryImages",
    "RetrievalData",
    "load_classification",
    "load_retrieval",
]

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", *DICOM_SUFFIXES, *NIFTI_SUFFIXES,
)
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}
MULTI_LABEL_SEPARATOR = "|"


class DatasetError(BiomedclipError, ValueError):
    """The dataset as a whole cannot be used; the message names the file and what to change."""


class ImageSource(Protocol):
    """Indexable images loaded on demand; ``load`` raises :class:`MedicalImageError` for a bad item."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> Image.Image: ...

    def describe(self, index: int) -> str: ...

    def fingerprint(self) -> str: ...

    def subset(self, indices: Sequence[int]) -> ImageSource: ...


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


@dataclass
class FileImages:
    """Image files on disk (any format :func:`biomedclip.io.medical.load_image` reads)."""

    paths: list[Path]
    options: ReadOptions = field(default_factory=ReadOptions)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        return load_image(self.paths[index], self.options)

    def describe(self, index: int) -> str:
        return str(self.paths[index])

    def fingerprint(self) -> str:
        """Names, sizes and modification times of every file (a changed file changes the key)."""
        h = hashlib.sha256(self.options.key().encode())
        for path in self.paths:
            try:
                st = path.stat()
                h.update(f"{path.resolve()}\x00{st.st_size}\x00{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}\x00missing\n".encode())
        return h.hexdigest()

    def subset(self, indices: Sequence[int]) -> FileImages:
        return FileImages([self.paths[i] for i in indices], self.options)


@dataclass
class ArrayImages:
    """Images stored as one numpy array (MedMNIST): grey [N,H,W], RGB [N,H,W,3] or volumes [N,D,H,W]."""

    array: np.ndarray
    label: str = "array"
    options: ReadOptions = field(default_factory=ReadOptions)
    _digest: str | None = None

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def load(self, index: int) -> Image.Image:
        item = np.asarray(self.array[index])
        if item.ndim == 3 and item.shape[-1] not in (3, 4):  # a volume: the middle (or chosen) slice
            depth = item.shape[0]
            chosen = depth // 2 if self.options.slice_index is None else self.options.slice_index
            if not -depth <= chosen < depth:
                raise MedicalImageError(self.describe(index), f"slice {chosen} out of range (depth {depth})")
            item = item[chosen]
        return array_to_rgb(item, self.options.window)  # the pixel rules of every other reader

    def describe(self, index: int) -> str:
        return f"{self.label}[{index}]"

    def fingerprint(self) -> str:
        if self._digest is None:
            arr = np.ascontiguousarray(self.array)
            self._digest = _digest(arr.dtype.str, arr.shape, self.options.key(), hashlib.sha256(arr.data).hexdigest())
        return self._digest

    def subset(self, indices: Sequence[int]) -> ArrayImages:
        return ArrayImages(self.array[np.asarray(indices, dtype=np.int64)], f"{self.label}(subset)", self.options)


@dataclass
class MemoryImages:
    """Encoded image files held in memory (shard samples): (name, bytes) pairs."""

    items: list[tuple[str, bytes]]
    options: ReadOptions = field(default_factory=ReadOptions)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Image.Image:
        name, data = self.items[index]
        return load_image_bytes(data, name, self.options)

    def describe(self, index: int) -> str:
        return self.items[index][0]

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.options.key().encode())
        for name, data in self.items:
            h.update(f"{name}\x00{hashlib.sha256(data).hexdigest()}\n".encode())
        return h.hexdigest()

    def subset(self, indices: Sequence[int]) -> MemoryImages:
        return MemoryImages([self.items[i] for i in indices], self.options)


# -- classification -----------------------------------------------------------------------------------

@dataclass
class LabeledSplit:
    """Images with labels: class indices [N] into ``label_names``, or multi-hot [N, C]."""

    images: ImageSource
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> LabeledSplit:
        idx = np.asarray(indices, dtype=np.int64)
        return LabeledSplit(self.images.subset(idx.tolist()), self.labels[idx])


@dataclass
class ClassificationData:
    """A labelled image dataset with named splits (``train``/``val``/``test`` where present)."""

    path: Path
    kind: str  # folder | csv | npz
    label_names: list[str]
    splits: dict[str, LabeledSplit]
    multilabel: bool = False
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> LabeledSplit:
        key = SPLIT_ALIASES.get(name.lower(), name)
        if key not in self.splits:
            raise DatasetError(f"{self.path} has no {name!r} split (it has: {', '.join(self.splits) or 'none'})")
        return self.splits[key]

    def fingerprint(self, split: str) -> str:
        part = self.split(split)
        return _digest("classification", self.kind, self.label_names, self.multilabel,
                       np.ascontiguousarray(part.labels).tobytes(), part.images.fingerprint())

    def with_labels(self, label_names: list[str], mapping: np.ndarray) -> ClassificationData:
        """The same data with labels renumbered: old index ``i`` becomes ``mapping[i]``."""
        splits = {}
        for name, part in self.splits.items():
            if self.multilabel:
                new = np.zeros((len(part.labels), len(label_names)), dtype=np.int64)
                for old, target in enumerate(mapping):  # several old labels may merge into one
                    new[:, target] |= part.labels[:, old]
            else:
                new = mapping[part.labels]
            splits[name] = LabeledSplit(part.images, new)
        return replace(self, label_names=list(label_names), splits=splits)

    def limited(self, limit: int | None, seed: int = 0) -> ClassificationData:
        """At most ``limit`` items per split, a seeded random subset (for quick runs and tests)."""
        if limit is None:
            return self
        splits = {}
        for name, part in self.splits.items():
            if len(part) <= limit:
                splits[name] = part
            else:
                rng = np.random.default_rng(seed)
                splits[name] = part.subset(np.sort(rng.choice(len(part), size=limit, replace=False)))
        return replace(self, splits=splits, notes=[*self.notes, f"limited to {limit} items per split (seed {seed})"])


def _only_for_csv(path: Path, columns: CsvColumns | None) -> None:
    """Column flags name CSV columns; on a folder, .npz or shards they would be silently ignored."""
    if columns is not None and not columns.is_default():
        raise DatasetError(f"{path}: {', '.join(columns.flags())} name CSV columns, but this dataset is not a .csv")


def load_classification(path: str | Path, *, options: ReadOptions | None = None,
                        columns: CsvColumns | None = None) -> ClassificationData:
    """Folder, CSV or .npz classification data (see the module docstring for the layouts).

    ``columns`` picks the CSV's path, label and split columns (default: the usual names).
    """
    path = Path(path)
    options = options or ReadOptions()
    if not path.exists():
        raise DatasetError(f"{path}: not found; pass an image folder, a .csv or a MedMNIST-style .npz")
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".csv":
        return _load_csv(path, options, columns)
    _only_for_csv(path, columns)
    if path.is_dir():
        return _load_folder(path, options)
    if suffix == ".npz":
        return _load_npz(path, options)
    raise DatasetError(f"{path}: unknown dataset format {suffix!r}; use an image folder, .csv or .npz")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name.lower().endswith(IMAGE_SUFFIXES))


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load_folder(root: Path, options: ReadOptions) -> ClassificationData:
    children = _class_dirs(root)
    if not children:
        raise DatasetError(f"{root}: no sub-folders; an image-folder dataset has one sub-folder per class "
                           "(optionally inside train/ val/ test/)")
    if all(c.name.lower() in SPLIT_ALIASES for c in children):
        layout = {SPLIT_ALIASES[c.name.lower()]: c for c in children}
    else:
        layout = {"test": root}
    raw: dict[str, tuple[list[Path], list[str]]] = {}
    for split, folder in layout.items():
        paths, labels = [], []
        for class_dir in _class_dirs(folder):
            files = _image_files(class_dir)
            paths += files
            labels += [class_dir.name] * len(files)
        raw[split] = (paths, labels)
    names = sorted({label for _, labels in raw.values() for label in labels})
    if not names:
        raise DatasetError(f"{root}: the class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    index = {n: i for i, n in enumerate(names)}
    splits = {s: LabeledSplit(FileImages(p, options), np.array([index[x] for x in lab], dtype=np.int64))
              for s, (p, lab) in raw.items() if p}
    return ClassificationData(root, "folder", names, splits)


def read_csv_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read the CSV ({exc}); save it as UTF-8 with a header row") from exc
    if not header:
        raise DatasetError(f"{path}: empty CSV; the first row must be a header such as path,label")
    return header, rows


def _load_csv(path: Path, options: ReadOptions, columns: CsvColumns | None = None) -> ClassificationData:
    header, rows = read_csv_table(path)
    path_col = find_column(header, "path", columns, path, error=DatasetError)
    label_col = find_column(header, "label", columns, path, error=DatasetError)
    split_col = find_column(header, "split", columns, path, required=False, error=DatasetError)
    per_split: dict[str, tuple[list[Path], list[list[str]]]] = {}
    notes: list[str] = []
    multilabel = False
    for line, row in enumerate(rows, start=2):
        rel, label = (row.get(path_col) or "").strip(), (row.get(label_col) or "").strip()
        if not rel or not label:
            notes.append(f"{path}:{line}: skipped (empty path or label)")
            continue
        split = SPLIT_ALIASES.get((row.get(split_col) or "test").strip().lower()) if split_col else "test"
        if split is None:
            notes.append(f"{path}:{line}: skipped (unknown split {row.get(split_col)!r}; use train/val/test)")
            continue
        labels = [p.strip() for p in label.split(MULTI_LABEL_SEPARATOR) if p.strip()]
        multilabel |= len(labels) > 1
        image = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        paths, labs = per_split.setdefault(split, ([], []))
        paths.append(image)
        labs.append(labels)
    names = sorted({x for _, labs in per_split.values() for labels in labs for x in labels})
    if not names:
        raise DatasetError(f"{path}: no usable rows (need non-empty {path_col} and {label_col})")
    index = {n: i for i, n in enumerate(names)}
    splits = {}
    for split, (paths, labs) in per_split.items():
        if multilabel:
            y = np.zeros((len(labs), len(names)), dtype=np.int64)
            for r, labels in enumerate(labs):
                y[r, [index[x] for x in labels]] = 1
        else:
            y = np.array([index[labels[0]] for labels in labs], dtype=np.int64)
        splits[split] = LabeledSplit(FileImages(paths, options), y)
    return ClassificationData(path, "csv", names, splits, multilabel=multilabel, notes=notes)


def _load_npz(path: Path, options: ReadOptions) -> ClassificationData:
    try:
        archive = np.load(path, allow_pickle=False)
        keys = set(archive.files)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz ({exc})") from exc
    splits: dict[str, LabeledSplit] = {}
    multilabel: bool | None = None
    n_classes = 0
    for split in ("train", "val", "test"):
        if f"{split}_images" not in keys:
            continue
        if f"{split}_labels" not in keys:
            raise DatasetError(f"{path}: has {split}_images but no {split}_labels")
        try:
            images, labels = archive[f"{split}_images"], archive[f"{split}_labels"]
        except ValueError as exc:  # object arrays need pickle, which we refuse for untrusted files
            raise DatasetError(f"{path}: {split} arrays cannot be read without pickle ({exc})") from exc
        if images.ndim not in (3, 4) or len(images) != len(labels):
            raise DatasetError(f"{path}: {split}_images must be [N,H,W], [N,H,W,3] or [N,D,H,W] with one label "
                               f"row per image; got images {images.shape}, labels {labels.shape}")
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        is_multi = labels.ndim == 2
        if multilabel is not None and is_multi != multilabel:
            raise DatasetError(f"{path}: splits disagree on single- vs multi-label")
        multilabel = is_multi
        labels = labels.astype(np.int64)
        if labels.size and labels.min() < 0:
            raise DatasetError(f"{path}: {split}_labels has negative values")
        n_classes = max(n_classes, labels.shape[1] if is_multi else int(labels.max(initial=-1)) + 1)
        splits[split] = LabeledSplit(ArrayImages(images, f"{path.name}:{split}", options), labels)
    if not splits:
        raise DatasetError(f"{path}: no <split>_images arrays (expected train_images/val_images/test_images, "
                           f"found {sorted(keys)})")
    return ClassificationData(path, "npz", [str(i) for i in range(n_classes)], splits, multilabel=bool(multilabel))


# -- retrieval ------------------------------------------------------------------------------------------

@dataclass
class RetrievalData:
    """Images and captions; ``caption_image[j]`` is the index of caption j's image."""

    path: Path
    split: str
    images: ImageSource
    image_ids: list[str]
    captions: list[str]
    caption_image: np.ndarray

    def fingerprint(self) -> str:
        return _digest("retrieval", self.split, self.images.fingerprint(), json.dumps(self.captions),
                       self.caption_image.tobytes())

    def texts_fingerprint(self) -> str:
        return _digest("captions", json.dumps(self.captions))


def load_retrieval(path: str | Path, split: str = "test", *, limit: int | None = None,
                   options: ReadOptions | None = None, columns: CsvColumns | None = None) -> RetrievalData:
    """Shards (``DIR/<split>/*.tar``) or a CSV ``path,caption``; ``limit`` caps the number of images.

    ``columns`` picks the CSV's path, caption and split columns (default: the usual names).
    """
    path = Path(path)
    options = options or ReadOptions()
    if path.suffix.lower() == ".csv" and not path.is_dir():
        return _retrieval_csv(path, split, limit, options, columns)
    _only_for_csv(path, columns)
    if path.is_dir():
        return _retrieval_shards(path, split, limit, options)
    raise DatasetError(f"{path}: retrieval data must be a shard build folder (DIR/{split}/*.tar) or a CSV "
                       "with path,caption columns")


def _group(ids: list[str], captions: list[str], limit: int | None) -> tuple[list[int], list[str], list[int]]:
    """First occurrence of each image id → (first row per image, captions kept, caption → image index)."""
    first: dict[str, int] = {}
    rows, texts, owner = [], [], []
    for row, (image_id, caption) in enumerate(zip(ids, captions, strict=True)):
        if image_id not in first:
            if limit is not None and len(first) >= limit:
                continue
            first[image_id] = len(rows)
            rows.append(row)
        texts.append(caption)
        owner.append(first[image_id])
    return rows, texts, owner


def _retrieval_shards(root: Path, split: str, limit: int | None, options: ReadOptions) -> RetrievalData:
    from biomedclip.data.build_folder import BuildFolder, ShardReadError

    build = BuildFolder(root)
    if not build.shards(split):
        raise DatasetError(build.missing_split(split))
    ids, captions, items = [], [], []
    try:
        for sample in build.iter_samples(split):
            if sample.jpg is None or sample.txt is None:
                continue
            ids.append(str(sample.json.get("sha256") or sample.key))
            captions.append(sample.txt)
            items.append((f"{sample.key}.jpg", sample.jpg))
    except ShardReadError as exc:
        raise DatasetError(str(exc)) from exc
    rows, texts, owner = _group(ids, captions, limit)
    return RetrievalData(root, split, MemoryImages([items[r] for r in rows], options), [ids[r] for r in rows],
                         texts, np.array(owner, dtype=np.int64))


def _retrieval_csv(path: Path, split: str, limit: int | None, options: ReadOptions,
                   columns: CsvColumns | None = None) -> RetrievalData:
    header, rows = read_csv_table(path)
    path_col = find_column(header, "path", columns, path, error=DatasetError)
    text_col = find_column(header, "caption", columns, path, error=DatasetError)
    split_col = find_column(header, "split", columns, path, required=False, error=DatasetError)
    ids, captions = [], []
    wanted = SPLIT_ALIASES.get(split, split)
    for row in rows:
        if split_col and SPLIT_ALIASES.get((row.get(split_col) or "").strip().lower()) != wanted:
            continue
        rel, text = (row.get(path_col) or "").strip(), (row.get(text_col) or "").strip()
        if rel and text:
            ids.append(str(Path(rel) if Path(rel).is_absolute() else path.parent / rel))
            captions.append(text)
    if not ids:
        where = f" in split {split!r}" if split_col else ""
        raise DatasetError(f"{path}: no rows with both {path_col} and {text_col}{where}")
    first_rows, texts, owner = _group(ids, captions, limit)
    image_ids = [ids[r] for r in first_rows]
    return RetrievalData(path, split, FileImages([Path(i) for i in image_ids], options), image_ids, texts,
                         np.array(owner, dtype=np.int64))

