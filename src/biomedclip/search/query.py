"""Query an index with text or an image and get back what each hit is: score, key, caption, source.

The query is embedded with the same model that made the collection's vectors (recorded in the
index; pass another only if it shares the embedding space), using the evaluation encoders in
:mod:`biomedclip.evaluate.features`, then looked up in the FAISS index. Hits carry the row's
metadata from the index folder's ``metadata.parquet``, including the byte range of the image in
its shard, so a caller (the web page) can show the image itself.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from biomedclip.search.index import INDEX_METADATA, VectorIndex
from biomedclip.search.items import Item

HIT_COLUMNS: tuple[str, ...] = ("key", "source", "offset", "size", "caption", "pmcid", "split", "meta")


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
        return asdict(self)

    def item(self) -> Item:
        """The collection item behind the hit (to read its image)."""
        return Item(key=self.key, source=self.source, offset=self.offset, size=self.size, caption=self.caption,
                    pmcid=self.pmcid, split=self.split, meta=json.dumps(self.meta) if self.meta else None)


class Searcher:
    """An index plus the model to embed queries with; thread-safe for concurrent queries.

    Args:
        index: index folder from :func:`biomedclip.search.index.build_index`.
        model: a LoadedModel or a model name/path; default: the model recorded in the index,
            loaded on first use.
        bf16: encode queries under bf16 autocast where the hardware supports it.
    """

    def __init__(self, index: str | Path | VectorIndex, model: Any = None, *, bf16: bool = True) -> None:
        self.index = index if isinstance(index, VectorIndex) else VectorIndex(index)
        meta_path = self.index.path / INDEX_METADATA
        self._meta = None
        if meta_path.is_file():
            import pyarrow.parquet as pq

            self._meta = pq.read_table(meta_path, columns=["id", *HIT_COLUMNS])
            if self._meta.num_rows != self.index.count:
                raise ValueError(f"{meta_path}: {self._meta.num_rows} rows for an index of {self.index.count}")
        self._model = model
        self.bf16 = bf16
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The query model (loaded on first use)."""
        with self._lock:
            if self._model is None or isinstance(self._model, str | Path):
                from biomedclip.models.factory import load_model

                name = self._model or self.index.info.model
                if not name:
                    raise ValueError("the index does not record its model; pass model=")
                self._model = load_model(name)
            return self._model

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
        from biomedclip.evaluate.features import encode_texts

        if not text.strip():
            raise ValueError("the query text is empty")
        model = self.model
        with self._lock:
            return encode_texts(model, [text], bf16=self.bf16)

    def embed_image(self, image: Image.Image) -> np.ndarray:
        """[1, D] unit-norm query vector for an RGB image."""
        from biomedclip.evaluate.features import encode_images

        model = self.model
        with self._lock:
            return encode_images(model, [image], bf16=self.bf16)

    def search_text(self, text: str, k: int = 10) -> list[Hit]:
        """Top-``k`` collection items for a text query."""
        return self.search_vectors(self.embed_text(text), k)[0]

    def search_image(self, image: Image.Image | str | Path, k: int = 10, **load_options: Any) -> list[Hit]:
        """Top-``k`` items for an image (a PIL image or a file, DICOM/NIfTI included)."""
        if not isinstance(image, Image.Image):
            from biomedclip.io.medical import load_image

            image = load_image(image, **load_options)
        return self.search_vectors(self.embed_image(image), k)[0]
