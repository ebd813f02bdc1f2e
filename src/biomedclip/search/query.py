"""Query an index with text or an image and get back what each hit is: score, key, caption, source.

The query is embedded with the same model that made the collection's vectors (recorded in the
index; pass another only if it shares the embedding space) through the model runtime
(:class:`biomedclip.models.runtime.ModelRunner`), then looked up in the FAISS index. Hits carry the row's
metadata from the index folder's ``metadata.parquet``, including the byte range of the image in
its shard, so a caller (the web page) can show the image itself.
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from biomedclip.errors import BiomedclipError
from biomedclip.io.medical import ReadOptions, load_image
from biomedclip.models.runtime import ModelLike, ModelRunner, as_runner
from biomedclip.search.index import INDEX_METADATA, VectorIndex
from biomedclip.search.items import Item

HIT_COLUMNS: tuple[str, ...] = ("key", "source", "offset", "size", "caption", "pmcid", "split", "meta")


class QueryError(BiomedclipError, ValueError):
    """A query that cannot be run (empty text, an index without its model or with broken metadata)."""


@dataclass
class Hit:
    """One search result."""

    rank: int
    id: int
    score: float
    key: str
    caption: str | None
    source: str
    pmcid: str | None = None
    split: str | None = None
    offset: int = -1
    size: int = -1
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The hit as CLI and server print it: no null fields and no -1 sentinels.

        ``offset``/``size`` (the image's byte range in its shard) appear only for shard members;
        ``caption``, ``pmcid`` and ``split`` only when the collection knows them.
        """
        data = asdict(self)
        if self.offset < 0:
            del data["offset"], data["size"]
        return {k: v for k, v in data.items() if v is not None}

    def item(self) -> Item:
        """The collection item behind the hit (to read its image)."""
        return Item(key=self.key, source=self.source, offset=self.offset, size=self.size, caption=self.caption,
                    pmcid=self.pmcid, split=self.split, meta=json.dumps(self.meta) if self.meta else None)


class Searcher:
    """An index plus the model to embed queries with; thread-safe for concurrent queries.

    Args:
        index: index folder from :func:`biomedclip.search.index.build_index`.
        model: a :class:`~biomedclip.models.runtime.ModelRunner` (or a LoadedModel, or a model
            name/path); default: the model recorded in the index, loaded on first use.
        device, precision: where a model given by name is loaded (``auto`` = CUDA if present).
    """

    def __init__(self, index: str | Path | VectorIndex, model: ModelLike | None = None, *, device: str = "auto",
                 precision: str = "auto") -> None:
        self.index = index if isinstance(index, VectorIndex) else VectorIndex(index)
        meta_path = self.index.path / INDEX_METADATA
        self._meta = None
        if meta_path.is_file():
            import pyarrow.parquet as pq

            self._meta = pq.read_table(meta_path, columns=["id", *HIT_COLUMNS])
            if self._meta.num_rows != self.index.count:
                raise QueryError(f"{meta_path}: {self._meta.num_rows} rows for an index of {self.index.count}")
        self._model = model
        self._runtime = (device, precision)
        self.model_warning: str | None = None
        self._weights_checked = False
        self._lock = threading.Lock()

    @property
    def model(self) -> ModelRunner:
        """The query model (loaded on first use)."""
        with self._lock:
            if not isinstance(self._model, ModelRunner):
                if self._model is None and not self.index.info.model:
                    raise QueryError("the index does not record its model; pass model= (--model)")
                device, precision = self._runtime
                source = self._model or self.index.info.model
                assert source is not None  # checked above
                self._model = as_runner(source, device=device, precision=precision)
            if not self._weights_checked:
                self._weights_checked = True
                self.model_warning = self._check_weights(self._model)
            return self._model

    def _check_weights(self, runner: ModelRunner) -> str | None:
        """A warning when the query model is not the one that made the index's vectors.

        Same width is not same space: another model's queries rank the collection at random.
        """
        recorded = self.index.info.weights_sha256
        if not recorded or recorded == runner.weights_sha256():
            return None
        message = (f"the query model {runner.identity()} is not the model that made this index "
                   f"({self.index.info.model}, weights sha256 {recorded[:12]}…): rankings are meaningless "
                   "unless both share one embedding space")
        warnings.warn(message, stacklevel=3)
        return message

    def rows(self, ids: list[int]) -> list[dict[str, Any]]:
        """Metadata rows for collection ids (empty dicts when the index has no metadata)."""
        if self._meta is None:
            return [{} for _ in ids]
        return self._meta.take(ids).to_pylist()

    def item(self, id_: int) -> Item:
        """The collection item with id ``id_``."""
        if not 0 <= id_ < self.index.count:
            raise KeyError(f"no item {id_}; ids are 0..{self.index.count - 1}")
        return Item.from_row(self.rows([id_])[0])

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Hits for each row of ``queries`` (unit-norm vectors of the index's dimension)."""
        scores, ids = self.index.search(queries, k)
        results: list[list[Hit]] = []
        for score_row, id_row in zip(scores, ids, strict=True):
            valid = [(float(s), int(i)) for s, i in zip(score_row, id_row, strict=True) if i >= 0]
            rows = self.rows([i for _, i in valid])
            hits = []
            for rank, ((score, id_), row) in enumerate(zip(valid, rows, strict=True), start=1):
                meta = json.loads(row["meta"]) if row.get("meta") else {}
                hits.append(Hit(rank=rank, id=id_, score=round(score, 6), key=row.get("key") or str(id_),
                                caption=row.get("caption"), source=row.get("source") or "",
                                pmcid=row.get("pmcid"), split=row.get("split"),
                                offset=int(row["offset"]) if row.get("offset") is not None else -1,
                                size=int(row["size"]) if row.get("size") is not None else -1, meta=meta))
            results.append(hits)
        return results

    def embed_text(self, text: str) -> np.ndarray:
        """[1, D] unit-norm query vector for a text."""
        if not text.strip():
            raise QueryError("the query text is empty")
        model = self.model
        with self._lock:
            return model.encode_texts([text])

    def embed_image(self, image: Image.Image) -> np.ndarray:
        """[1, D] unit-norm query vector for an RGB image."""
        model = self.model
        with self._lock:
            return model.encode_images([image])

    def search_text(self, text: str, k: int = 10) -> list[Hit]:
        """Top-``k`` collection items for a text query."""
        return self.search_vectors(self.embed_text(text), k)[0]

    def search_image(self, image: Image.Image | str | Path, k: int = 10,
                     read_options: ReadOptions | None = None) -> list[Hit]:
        """Top-``k`` items for an image (a PIL image, or a file read with ``read_options``: DICOM/NIfTI too)."""
        if not isinstance(image, Image.Image):
            image = load_image(image, read_options)
        return self.search_vectors(self.embed_image(image), k)[0]
