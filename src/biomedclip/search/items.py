"""What to embed: turn the user's INPUT arguments into one ordered work list, and read an item back.

An :class:`Item` names its bytes without holding them — a file path, or a byte range inside a
WebDataset shard (``source`` + ``offset`` + ``size``) — so the work list of a million-image
collection is a small Parquet table, DataLoader workers can open any item on their own, and the
search server can show a result image later straight from the shard.

Accepted inputs (any mix, in the order given):

* an image folder, searched recursively (JPEG, PNG, TIFF, BMP, GIF, WebP, DICOM, NIfTI; files
  without a suffix are kept when they carry the DICOM/NIfTI magic bytes);
* a file list: ``.txt``/``.lst`` with one path per line, or ``.csv`` with a ``path`` column (another
  name with :class:`~biomedclip.io.columns.CsvColumns`, the CLI's ``--path-col``/``--caption-col``; an
  optional ``caption`` column and any other columns become metadata); relative paths are relative
  to the list file;
* our shards: a build folder (``manifest.parquet`` + ``<split>/NNNNN.tar``), a split folder, or
  ``.tar`` files; ``split`` picks splits of a build folder;
* single image files, DICOM and NIfTI included.

For text embedding, :func:`discover_texts` reads captions from a ``.txt`` file (one per line), a
``.jsonl``/``.csv``/``.parquet`` table with a ``caption`` (or ``text``, or ``--caption-col``) column, or shards.
"""

from __future__ import annotations

import csv
import json
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from biomedclip.errors import BiomedclipError
from biomedclip.io.columns import CsvColumns, find_column

if TYPE_CHECKING:
    from biomedclip.io.medical import ReadOptions

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp",
                                   ".dcm", ".dicom", ".nii", ".nii.gz")
LIST_SUFFIXES: tuple[str, ...] = (".txt", ".lst", ".csv")
SHARD_IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "tif", "tiff")
TEXT_TABLE_COLUMNS: tuple[str, ...] = ("caption", "text")

ITEM_COLUMNS: tuple[str, ...] = ("key", "source", "offset", "size", "caption", "pmcid", "split", "meta")


class InputError(BiomedclipError, ValueError):
    """An INPUT that cannot be turned into a work list; the message names it and says why."""


@dataclass(frozen=True)
class Item:
    """One thing to embed: where its bytes are, and what to report about it.

    ``offset`` is -1 for a whole file; otherwise the bytes are ``source[offset:offset + size]``
    (a member of a WebDataset tar). ``meta`` is the sample's JSON metadata as a string.
    """

    key: str
    source: str
    offset: int = -1
    size: int = -1
    caption: str | None = None
    pmcid: str | None = None
    split: str | None = None
    meta: str | None = None

    def to_row(self) -> dict[str, Any]:
        """The stored row (Parquet metadata): every column, ``offset``/``size`` -1 for a whole file."""
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """The item as JSON answers show it (``GET /items/ID``), shaped like a search hit.

        No null fields and no -1 sentinels: ``offset``/``size`` only for shard members; ``meta``
        as an object, not the stored JSON string.
        """
        data: dict[str, Any] = {"key": self.key, "source": self.source}
        if self.offset >= 0:
            data.update(offset=self.offset, size=self.size)
        data.update({k: v for k, v in (("caption", self.caption), ("pmcid", self.pmcid), ("split", self.split))
                     if v is not None})
        data["meta"] = json.loads(self.meta) if self.meta else {}
        return data

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Item:
        return cls(**{k: row.get(k) for k in ITEM_COLUMNS})


# -- reading an item --------------------------------------------------------------------------------

def read_item_bytes(item: Item) -> bytes:
    """The raw bytes of an item (whole file, or its byte range in a shard)."""
    with open(item.source, "rb") as fh:
        if item.offset < 0:
            return fh.read()
        fh.seek(item.offset)
        data = fh.read(item.size)
    if len(data) != item.size:
        raise OSError(f"{item.source}: shard member {item.key} is truncated ({len(data)} of {item.size} bytes)")
    return data


def load_item_image(item: Item, options: ReadOptions | None = None) -> Image.Image:
    """Decode an item to RGB; DICOM/NIfTI (by magic or suffix) go through :mod:`biomedclip.io.medical`."""
    from biomedclip.io.medical import load_image, load_image_bytes

    if item.offset < 0:
        return load_image(item.source, options)
    # shard members are ordinary images; the format comes from their magic bytes
    return load_image_bytes(read_item_bytes(item), item.key, options)


# -- discovery ------------------------------------------------------------------------------------

def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return True
    if "." not in name:  # DICOM files often have no suffix at all
        from biomedclip.io.medical import is_medical

        return is_medical(path)
    return False


def _folder_items(folder: Path) -> list[Item]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and _is_image_file(p))
    return [Item(key=p.relative_to(folder).as_posix(), source=str(p.resolve())) for p in files]


def _list_items(list_file: Path, columns: CsvColumns | None = None) -> list[Item]:
    base = list_file.parent
    items: list[Item] = []
    if list_file.suffix.lower() == ".csv":
        with list_file.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            # a file list's defaults are exactly path and caption (other columns are metadata)
            path_col = find_column(header, "path", columns, list_file, error=InputError, candidates=("path",))
            caption_col = find_column(header, "caption", columns, list_file, required=False, error=InputError,
                                      candidates=("caption",))
            for row in reader:
                path = (base / row[path_col]).resolve()
                extra = {k: v for k, v in row.items() if k not in (path_col, caption_col) and k is not None}
                items.append(Item(key=row[path_col], source=str(path),
                                  caption=(row.get(caption_col) or None) if caption_col else None,
                                  meta=json.dumps(extra, ensure_ascii=False) if extra else None))
        return items
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            items.append(Item(key=line, source=str((base / line).resolve())))
    return items


def shard_files(path: Path, split: Sequence[str] | None = None) -> list[Path] | None:
    """The ``.tar`` shards a path stands for, or None when it is not a shard path.

    A build folder (:class:`~biomedclip.data.build_folder.BuildFolder`) gives its splits' tars
    (``split`` picks them, in that order; without it all splits, by name, as embeddings made
    before kept them); a folder holding ``*.tar`` gives those; a ``.tar`` file gives itself.
    """
    from biomedclip.data.build_folder import BuildFolder

    if path.is_file():
        return [path] if path.name.endswith(".tar") else None
    if not path.is_dir():
        return None
    own = sorted(path.glob("*.tar"))
    if own and not (path / "manifest.parquet").is_file():
        return own  # a split folder
    if not BuildFolder.holds_build(path):
        return None
    build = BuildFolder(path)
    names = list(split) if split else sorted(build.splits())
    if not names:
        raise InputError(f"{path}: a build folder without shards (the build kept no pairs); nothing to embed")
    for name in names:
        if not build.shards(name):
            raise InputError(build.missing_split(name))
    return own + [tar for name in names for tar in build.shards(name)]


def _wds_key(name: str) -> tuple[str, str]:
    """WebDataset's split of a member name: key = up to the first dot of the base name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def shard_items(tar_path: Path, *, with_images: bool = True) -> list[Item]:
    """One item per sample of a WebDataset shard: image byte range, caption and metadata.

    Reads member headers and the small ``.txt``/``.json`` members only; images stay on disk.
    Samples without an image are skipped when ``with_images`` (they cannot be embedded).
    """
    samples: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    source = str(tar_path.resolve())
    try:
        with tarfile.open(tar_path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = _wds_key(info.name)
                if key not in samples:
                    samples[key] = {}
                    order.append(key)
                entry = samples[key]
                if ext in SHARD_IMAGE_EXTENSIONS and "image" not in entry:
                    entry["image"] = (info.offset_data, info.size)
                elif ext in ("txt", "json"):
                    fh = tar.extractfile(info)
                    entry[ext] = fh.read().decode("utf-8") if fh is not None else ""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{tar_path}: not a readable shard ({exc})") from exc
    items: list[Item] = []
    for key in order:
        entry = samples[key]
        if with_images and "image" not in entry:
            continue
        offset, size = entry.get("image", (-1, -1))
        meta = json.loads(entry["json"]) if entry.get("json") else {}
        items.append(Item(key=key, source=source, offset=offset, size=size, caption=entry.get("txt"),
                          pmcid=meta.get("pmcid"), split=meta.get("split"),
                          meta=json.dumps(meta, ensure_ascii=False, sort_keys=True)))
    return items


def discover_images(inputs: Iterable[str | Path], *, split: Sequence[str] | None = None,
                    columns: CsvColumns | None = None) -> list[Item]:
    """The ordered work list for image embedding (see the module docstring for what INPUT may be).

    ``columns`` names the path and caption columns of ``.csv`` file lists.
    """
    items = _discover(inputs, split, shard_items, lambda path: _image_path_items(path, columns))
    _check_unique(items)
    return items


def _discover(
    inputs: Iterable[str | Path],
    split: Sequence[str] | None,
    from_shard: Callable[[Path], list[Item]],
    from_path: Callable[[Path], list[Item]],
) -> list[Item]:
    """Items of every input in order: shards (a build, split folder or .tar) or another path."""
    items: list[Item] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        tars = shard_files(path, split)
        if tars is not None:
            for tar in tars:
                items += from_shard(tar)
        else:
            items += from_path(path)
    return items


def _image_path_items(path: Path, columns: CsvColumns | None = None) -> list[Item]:
    if path.is_dir():
        return _folder_items(path)
    if path.suffix.lower() in LIST_SUFFIXES:
        return _list_items(path, columns)
    return [Item(key=path.name, source=str(path.resolve()))]


def _check_unique(items: list[Item]) -> None:
    seen: set[tuple[str, str, int]] = set()
    for item in items:
        ident = (item.source, item.key, item.offset)
        if ident in seen:
            raise InputError(f"{item.key} ({item.source}) is listed twice; each input may appear once")
        seen.add(ident)


def _table_texts(path: Path, columns: CsvColumns | None = None) -> list[Item]:
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    table = (pq.read_table(path) if suffix == ".parquet" else
             pacsv.read_csv(path) if suffix == ".csv" else pajson.read_json(path))
    column = find_column(table.column_names, "caption", columns, path, error=InputError,
                         candidates=TEXT_TABLE_COLUMNS, kind="table")
    assert column is not None  # required: find_column raised otherwise
    rows = table.to_pylist()
    items = []
    for i, row in enumerate(rows):
        text = row.get(column)
        if text is None or not str(text).strip():  # as blank lines of a .txt: nothing to embed
            continue
        key = str(row.get("key") or f"{path.stem}:{i}")
        extra = {k: v for k, v in row.items() if k not in (column, "key")}
        items.append(Item(key=key, source=str(path.resolve()), caption=str(text), pmcid=_str(row.get("pmcid")),
                          split=_str(row.get("split")), meta=json.dumps(extra, default=str) if extra else None))
    return items


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def discover_texts(inputs: Iterable[str | Path], *, split: Sequence[str] | None = None,
                   columns: CsvColumns | None = None) -> list[Item]:
    """The ordered work list for text embedding; ``Item.caption`` holds the text (``columns.caption`` names it)."""
    return _discover(inputs, split, _shard_texts, lambda path: _text_path_items(path, columns))


def _shard_texts(tar: Path) -> list[Item]:
    return [item for item in shard_items(tar, with_images=False) if item.caption is not None]


def _text_path_items(path: Path, columns: CsvColumns | None = None) -> list[Item]:
    if path.suffix.lower() in (".parquet", ".csv", ".jsonl", ".json"):
        return _table_texts(path, columns)
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        return [Item(key=f"{path.stem}:{n}", source=str(path.resolve()), caption=line)
                for n, line in enumerate(lines, start=1) if line.strip()]
    raise InputError(f"{path}: a folder without shards; text input is a .txt/.jsonl/.csv/.parquet file or shards")
