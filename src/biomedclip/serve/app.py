"""The HTTP service: classify, search and embed with one model loaded once, plus the web page.

Endpoints (OpenAPI docs at ``/docs``, schema at ``/openapi.json``):

* ``GET /health`` — model, embedding size, temperature, index size, upload limits;
* ``POST /classify`` — multipart ``file`` + ``labels`` (repeated fields, or one field with one label
  per line / comma-separated) [+ ``templates``] → class probabilities and a preview of the image;
* ``GET /search?q=…&k=…`` or ``POST /search`` (multipart ``q`` or image ``file``) → hits with score,
  caption, source and ``image_url``;
* ``POST /embed`` — multipart image ``file`` or ``text`` fields → unit-norm embeddings;
* ``GET /items/{id}`` and ``GET /items/{id}/image`` — an indexed item's metadata and thumbnail;
* ``GET /`` — the page (``static/``).

Safety: request bodies above the upload cap are refused by :class:`BodyLimit` before they are
parsed; uploads are checked by :mod:`.uploads` (type, size, pixel count) before decoding; every
refusal is a 4xx JSON ``{"detail": "…"}``. The model is not assumed to be thread-safe: FastAPI
runs these (sync) endpoints in a thread pool and every model call holds one lock, so concurrent
requests are served one forward pass at a time, in arrival order, while uploads are received and
checked in parallel. Class embeddings of recently used label sets are cached.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel

from biomedclip.models.runtime import ModelLike
from biomedclip.serve.uploads import UploadLimits, UploadRejected, decode_upload

STATIC_DIR = Path(__file__).with_name("static")
THUMBNAIL_SIDE = 320
PREVIEW_SIDE = 384
LABEL_CACHE_SIZE = 128
MAX_TEXTS = 256
MAX_K = 100


class BodyLimit:
    """ASGI middleware: 413 for request bodies larger than ``max_bytes`` (declared or streamed).

    The multipart parser would otherwise spool any amount to disk before an endpoint sees it.
    A declared-too-large body is drained (up to a bound) before answering so the client reads
    the 413 instead of a reset connection.
    """

    def __init__(self, app: Any, max_bytes: int, drain_limit: int = 64 * 2**20) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_limit = drain_limit

    async def _refuse(self, send: Any, message: str) -> None:
        body = json.dumps({"detail": message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        limit_msg = f"request body larger than the {self.max_bytes:,}-byte upload limit"
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            drained = 0
            while drained <= self.drain_limit:
                message = await receive()
                drained += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
            await self._refuse(send, limit_msg)
            return
        seen = 0
        too_big = False
        responded = False

        async def counted() -> dict:
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_big = True
                    raise UploadRejected(413, limit_msg)
            return message

        async def guarded(message: dict) -> None:
            # once the body overflowed, whatever the app answers (its parser turns our exception into
            # a 400) is replaced by the one 413 that says what happened
            nonlocal responded
            if too_big:
                if not responded:
                    responded = True
                    await self._refuse(send, limit_msg)
                return
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not too_big:
                raise
            if not responded:
                await self._refuse(send, limit_msg)


# -- response schemas (they document the API in /docs) ----------------------------------------------

class Health(BaseModel):
    status: str
    model: str
    embed_dim: int
    temperature: float
    device: str
    precision: str
    index: dict[str, Any] | None
    limits: dict[str, int]


class LabelProbability(BaseModel):
    label: str
    p: float


class ClassifyResult(BaseModel):
    labels: list[str]
    probabilities: list[LabelProbability]  # in label order; the CLI's `classify --json` uses the same shape
    prediction: str
    templates: list[str]
    temperature: float
    image: dict[str, Any]
    preview: str
    ms: float


class SearchHit(BaseModel):
    """A hit as `biomedclip search --json` prints it, plus the URL of its thumbnail.

    Fields that do not apply are left out, never null: caption/pmcid/split when unknown,
    offset/size (the image's bytes in its shard) for whole files.
    """

    rank: int
    id: int
    score: float
    key: str
    source: str
    caption: str | None = None
    pmcid: str | None = None
    split: str | None = None
    offset: int | None = None
    size: int | None = None
    meta: dict[str, Any] = {}
    image_url: str


class SearchResult(BaseModel):
    """``mode`` text with ``query``, or mode image with ``image`` (the upload's file name)."""

    mode: str
    query: str | None = None
    image: str | None = None
    k: int
    hits: list[SearchHit]
    ms: float


class EmbedResult(BaseModel):
    kind: str
    model: str
    dim: int
    embeddings: list[list[float]]


# -- the model behind the endpoints ------------------------------------------------------------------

class ModelService:
    """One loaded model (and optional index) shared by all requests; model calls hold ``lock``."""

    def __init__(self, model: ModelLike, index: str | Path | None = None, *, device: str | None = None,
                 precision: str | None = None) -> None:
        from biomedclip.models.runtime import as_runner

        runner = as_runner(model, device=device, precision=precision)
        self.runner = runner
        self.name = runner.identity()
        self.device = str(runner.device)
        self.precision = runner.precision
        self.temperature = runner.temperature
        self.embed_dim = runner.embed_dim
        self.lock = threading.Lock()
        self._labels: OrderedDict[tuple[tuple[str, ...], tuple[str, ...] | None], Any] = OrderedDict()
        self.searcher = None
        if index is not None:
            from biomedclip.search.query import QueryError, Searcher

            self.searcher = Searcher(index, runner)
            if self.searcher.index.dim != self.embed_dim:
                raise QueryError(f"index {index} holds {self.searcher.index.dim}-d vectors but the model makes "
                                 f"{self.embed_dim}-d ones: serve the model that built the index "
                                 f"({self.searcher.index.info.model})")
            self.searcher.model  # noqa: B018 - checks the index's recorded weights against ours

    def label_set(self, labels: list[str], templates: list[str] | None) -> Any:
        from biomedclip.search.classify import label_set

        key = (tuple(labels), tuple(templates) if templates else None)
        with self.lock:
            if key in self._labels:
                self._labels.move_to_end(key)
                return self._labels[key]
            chosen = label_set(self.runner, labels, templates)
            self._labels[key] = chosen
            if len(self._labels) > LABEL_CACHE_SIZE:
                self._labels.popitem(last=False)
            return chosen

    def image_features(self, image: Image.Image) -> np.ndarray:
        with self.lock:
            return self.runner.encode_images([image])

    def text_features(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            return self.runner.encode_texts(texts)

    def classify(self, image: Image.Image, labels: list[str], templates: list[str] | None) -> tuple[Any, np.ndarray]:
        chosen = self.label_set(labels, templates)
        return chosen, self.runner.probabilities(self.image_features(image), chosen.embeddings)[0]


# -- helpers --------------------------------------------------------------------------------------

def split_values(values: list[str] | None) -> list[str]:
    """Form values → items: each value may hold several, one per line; a lone value may be comma-separated."""
    out: list[str] = []
    for value in values or []:
        parts = value.splitlines() if "\n" in value else [value]
        if len(values or []) == 1 and len(parts) == 1 and "," in value:
            parts = value.split(",")
        out += [p.strip() for p in parts if p.strip()]
    return out


def _jpeg(image: Image.Image, side: int) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((side, side))
    buf = io.BytesIO()
    thumb.convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _read_upload(file: UploadFile, limits: UploadLimits) -> bytes:
    data = file.file.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise UploadRejected(413, f"file too large: more than the {limits.max_bytes:,}-byte limit")
    return data


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


# -- the app --------------------------------------------------------------------------------------

def create_app(model: ModelLike, index: str | Path | None = None, *, limits: UploadLimits | None = None,
               device: str | None = None, precision: str | None = None) -> FastAPI:
    """The FastAPI app; the model (and index) are loaded here, once, before the first request.

    ``model`` is a :class:`~biomedclip.models.runtime.ModelRunner`, a loaded model, or a name/path
    loaded on ``device`` with ``precision`` (both ``auto`` by default: CUDA if present).
    """
    limits = limits or UploadLimits()
    service = ModelService(model, index, device=device, precision=precision)
    app = FastAPI(title="BiomedCLIP", version="0.1.0",
                  description="Zero-shot classification, text/image search and embeddings with a BiomedCLIP model.")
    app.state.service = service
    app.state.limits = limits
    # multipart framing adds a little to the file itself
    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes + 64 * 1024)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(UploadRejected)
    async def rejected(_: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    def decode(file: UploadFile) -> Image.Image:
        return decode_upload(_read_upload(file, limits), file.filename or "", file.content_type, limits)

    def need_index() -> Any:
        if service.searcher is None:
            raise HTTPException(404, "no index loaded: start the server with --index INDEX to search")
        return service.searcher

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health", response_model=Health, summary="Is the server up, and with what")
    def health() -> Health:
        index = None
        if service.searcher is not None:
            info = service.searcher.index.info
            index = {"count": service.searcher.index.count, "kind": info.kind, "factory": info.factory,
                     "recall_at_10": info.recall_at_10, "model": info.model,
                     "model_matches": service.searcher.model_warning is None}
        return Health(status="ok", model=service.name, embed_dim=service.embed_dim, temperature=service.temperature,
                      device=service.device, precision=service.precision, index=index,
                      limits={"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                              "max_voxels": limits.max_voxels})

    @app.post("/classify", response_model=ClassifyResult, summary="Zero-shot class probabilities of an image")
    def classify(
        file: Annotated[UploadFile, File(description="PNG, JPEG, TIFF, DICOM or NIfTI image")],
        labels: Annotated[list[str], Form(description="Class names: repeated fields, or one per line")],
        templates: Annotated[list[str] | None, Form(description="Prompt templates with {} (optional)")] = None,
    ) -> ClassifyResult:
        from biomedclip.search.classify import LabelError, probability_list

        started = time.perf_counter()
        image = decode(file)
        names, chosen_templates = split_values(labels), split_values(templates) or None
        try:
            chosen, probs = service.classify(image, names, chosen_templates)
        except LabelError as exc:
            raise HTTPException(400, str(exc)) from exc
        preview = "data:image/jpeg;base64," + base64.b64encode(_jpeg(image, PREVIEW_SIDE)).decode()
        return ClassifyResult(labels=chosen.labels, probabilities=probability_list(chosen.labels, probs),
                              prediction=chosen.labels[int(np.argmax(probs))], templates=chosen.templates,
                              temperature=service.temperature,
                              image={"filename": file.filename, "width": image.width, "height": image.height},
                              preview=preview, ms=_ms(started))

    def run_search(vector: np.ndarray, asked: dict[str, str | None], k: int, started: float) -> SearchResult:
        hits = need_index().search_vectors(vector, min(k, MAX_K))[0]
        return SearchResult(**asked, k=k, ms=_ms(started),
                            hits=[SearchHit(**h.to_json(), image_url=f"/items/{h.id}/image") for h in hits])

    # exclude_none: a field that does not apply is left out (as in `biomedclip search --json`), not null
    @app.get("/search", response_model=SearchResult, response_model_exclude_none=True,
             summary="Text search of the index")
    def search_get(q: Annotated[str, Query(min_length=1, description="Text query")],
                   k: Annotated[int, Query(ge=1, le=MAX_K)] = 12) -> SearchResult:
        started = time.perf_counter()
        need_index()
        return run_search(service.text_features([q]), {"mode": "text", "query": q}, k, started)

    @app.post("/search", response_model=SearchResult, response_model_exclude_none=True,
              summary="Search the index by text or by an uploaded image")
    def search_post(q: Annotated[str | None, Form(description="Text query")] = None,
                    file: Annotated[UploadFile | None, File(description="Query image")] = None,
                    k: Annotated[int, Form(ge=1, le=MAX_K)] = 12) -> SearchResult:
        started = time.perf_counter()
        need_index()
        if file is not None:
            return run_search(service.image_features(decode(file)), {"mode": "image", "image": file.filename or ""},
                              k, started)
        if q and q.strip():
            return run_search(service.text_features([q]), {"mode": "text", "query": q}, k, started)
        raise HTTPException(400, "send a text query 'q' or an image 'file'")

    @app.post("/embed", response_model=EmbedResult, summary="Unit-norm embedding of an image or of texts")
    def embed(file: Annotated[UploadFile | None, File(description="Image to embed")] = None,
              text: Annotated[list[str] | None, Form(description="Text(s) to embed, repeated fields")] = None,
              ) -> EmbedResult:
        if (file is None) == (not text):
            raise HTTPException(400, "send either an image 'file' or one or more 'text' fields")
        if file is not None:
            vectors, kind = service.image_features(decode(file)), "image"
        else:
            texts = [t for t in text or [] if t.strip()]
            if not texts or len(texts) > MAX_TEXTS:
                raise HTTPException(400, f"send 1 to {MAX_TEXTS} non-empty texts")
            vectors, kind = service.text_features(texts), "text"
        return EmbedResult(kind=kind, model=service.name, dim=int(vectors.shape[1]),
                           embeddings=[[round(float(v), 7) for v in row] for row in vectors])

    def item(id_: int) -> Any:
        try:
            return need_index().item(id_)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from exc

    @app.get("/items/{item_id}", summary="Metadata of an indexed item")
    def item_meta(item_id: int) -> dict[str, Any]:
        return {"id": item_id, **item(item_id).to_json()}

    @app.get("/items/{item_id}/image", summary="Thumbnail of an indexed item",
             responses={200: {"content": {"image/jpeg": {}}}})
    def item_image(item_id: int) -> Response:
        from biomedclip.search.embed import ITEM_ERRORS
        from biomedclip.search.items import load_item_image

        try:
            image = load_item_image(item(item_id))
        except ITEM_ERRORS as exc:
            raise HTTPException(410, f"item {item_id} cannot be read any more: {exc}") from exc
        return Response(_jpeg(image, THUMBNAIL_SIDE), media_type="image/jpeg",
                        headers={"cache-control": "public, max-age=3600"})

    return app
