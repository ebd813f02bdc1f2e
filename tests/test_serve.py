"""The real server (uvicorn subprocess on a free 127.0.0.1 port): every endpoint, bad uploads, load."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image
from search_assets import Server, bundle, image_files, indexed, loaded_model, modality_classes, modality_labels

from biomedclip.search.classify import classify_images
from biomedclip.search.store import open_embeddings

LIMIT_MB = 1


# The first test to ask for the session's trained model builds it (corpus, shards, training), which takes
# longer than pytest's default per-test timeout on a 2-core machine.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def assets(learn_data, trained_run, tmp_path_factory):
    return indexed(learn_data, trained_run, tmp_path_factory.mktemp("search"))


@pytest.fixture(scope="module")
def files(learn_data, tmp_path_factory):
    return image_files(learn_data, tmp_path_factory.mktemp("serve_images"))


@pytest.fixture(scope="module")
def server(assets, trained_run, tmp_path_factory):
    running = Server(bundle(trained_run), assets["index"], tmp_path_factory.mktemp("serve") / "server.log",
                     "--max-upload-mb", str(LIMIT_MB))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _upload(path, content_type: str | None = None) -> dict:
    return {"file": (path.name, path.read_bytes(), content_type or _type(path.suffix))}


def _type(suffix: str) -> str:
    return {".png": "image/png", ".jpg": "image/jpeg", ".tif": "image/tiff", ".dcm": "application/dicom"}.get(
        suffix, "application/octet-stream")


def test_health_docs_and_page(client, trained_run, assets):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"].endswith("bundle") and health["embed_dim"] == 128
    assert health["index"]["count"] == open_embeddings(assets["emb"]).count
    assert health["limits"]["max_bytes"] == LIMIT_MB * 2**20
    assert health["temperature"] == pytest.approx(loaded_model(trained_run).temperature,
                                                  rel=1e-5)
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/classify", "/search", "/embed", "/items/{item_id}/image"} <= set(paths)
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop-zone"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_classify(client, files, learn_data, trained_run, realdata, tmp_path):
    classes, templates = modality_classes(learn_data)
    model = loaded_model(trained_run)
    correct = []
    for modality in ("chest X-ray", "fundus photograph", "histopathology"):
        for path in files[modality][:3]:
            result = client.post("/classify", files=_upload(path), data={"labels": classes, "templates": templates})
            assert result.status_code == 200, result.text
            body = result.json()
            assert body["labels"] == classes and body["templates"] == templates
            # the served numbers are the library's
            expected = classify_images(model, [Image.open(path).convert("RGB")], classes, templates)[0]
            assert [e["label"] for e in body["probabilities"]] == classes  # [{label, p}], as classify --json
            np.testing.assert_allclose([e["p"] for e in body["probabilities"]], expected, atol=1e-4)
            assert body["preview"].startswith("data:image/jpeg;base64,")
            correct.append(body["prediction"] == modality)
    assert sum(correct) >= 6, correct  # chance: 1 in 8
    # one field with a label per line; custom templates
    body = client.post("/classify", files=_upload(files["chest X-ray"][0]),
                       data={"labels": "chest X-ray\nwestern blot", "templates": "a {} image"}).json()
    assert body["labels"] == ["chest X-ray", "western blot"] and body["templates"] == ["a {} image"]
    # TIFF (16-bit), DICOM, NIfTI
    grey = np.asarray(Image.open(files["brain MRI"][0]).convert("L"), dtype=np.uint16) * 257
    tiff = tmp_path / "scan16.tif"
    Image.fromarray(grey).save(tiff)
    for path in (tiff, realdata / "images" / "CT_small.dcm", realdata / "images" / "anatomical.nii"):
        response = client.post("/classify", files=_upload(path), data={"labels": ["brain MRI", "chest X-ray"]})
        assert response.status_code == 200, (path.name, response.text)
        assert response.json()["image"]["width"] > 0


def test_search_items_and_embed(client, files, learn_data, trained_run):
    labels = modality_labels(learn_data)
    body = client.get("/search", params={"q": "fundus photograph", "k": 5}).json()
    assert body["mode"] == "text" and len(body["hits"]) == 5
    assert sum(labels[h["key"]]["modality"] == "fundus photograph" for h in body["hits"]) >= 4
    image = client.get(body["hits"][0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(image.content)).size) <= 320
    meta = client.get(f"/items/{body['hits'][0]['id']}").json()
    assert meta["key"] == body["hits"][0]["key"] and meta["caption"] == body["hits"][0]["caption"]
    # shard members carry their byte range; nothing is null and no -1 stands in for "none"
    assert meta["offset"] == body["hits"][0]["offset"] > 0 and isinstance(meta["meta"], dict)
    assert all(v is not None for h in body["hits"] for v in h.values())
    assert client.get("/items/100000/image").status_code == 404
    query = files["histopathology"][1]
    by_image = client.post("/search", files=_upload(query), data={"k": "3"}).json()
    assert by_image["mode"] == "image" and by_image["hits"][0]["key"] == query.stem
    assert client.post("/search", data={"q": "chest X-ray"}).json()["mode"] == "text"
    assert client.post("/search", data={}).status_code == 400
    assert client.get("/search", params={"q": "x", "k": 0}).status_code == 422
    model = loaded_model(trained_run)
    vector = client.post("/embed", files=_upload(query)).json()
    assert vector["kind"] == "image" and vector["dim"] == 128
    expected = model.encode_images([Image.open(query).convert("RGB")])[0]
    assert float(np.dot(vector["embeddings"][0], expected)) > 0.999
    texts = client.post("/embed", data={"text": ["chest X-ray", "brain MRI"]}).json()
    assert texts["kind"] == "text" and len(texts["embeddings"]) == 2
    reference = model.encode_texts(["chest X-ray", "brain MRI"])
    assert (np.asarray(texts["embeddings"]) * reference).sum(axis=1).min() > 0.999
    assert client.post("/embed", data={}).status_code == 400


def _bomb_png() -> bytes:
    """A genuine 10,000 × 10,000 PNG of ~10 kB: 100 M pixels once decoded (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_bad_uploads_get_clear_4xx_and_the_server_stays_up(client, server, files, learn_data):
    labels = {"labels": ["chest X-ray", "brain MRI"]}
    jpeg = files["chest X-ray"][0].read_bytes() if files["chest X-ray"][0].suffix == ".jpg" else \
        files["chest X-ray"][1].read_bytes()
    bomb = _bomb_png()
    assert len(bomb) < 100_000
    cases = {
        "truncated": (("cut.jpg", jpeg[: len(jpeg) // 3], "image/jpeg"), 422, "truncated"),
        "wrong type": (("notes.txt", b"hello, I am text", "text/plain"), 415, "content type"),
        "not an image": (("fake.png", b"%PDF-1.7 " + bytes(500), "image/png"), 415, "not an image"),
        "oversized": (("big.jpg", jpeg[:3] + bytes(int(1.5 * 2**20)), "image/jpeg"), 413, "limit"),
        "bomb": (("bomb.png", bomb, "image/png"), 413, "pixels"),
        "empty": (("empty.png", b"", "image/png"), 400, "empty"),
    }
    for name, (upload, status, words) in cases.items():
        response = client.post("/classify", files={"file": upload}, data=labels)
        assert response.status_code == status, (name, response.status_code, response.text)
        assert words in response.json()["detail"], (name, response.json())
        assert server.alive(), name
    one_label = client.post("/classify", files=_upload(files["chest X-ray"][0]), data={"labels": ["only"]})
    assert one_label.status_code == 400 and "at least two" in one_label.json()["detail"]
    no_labels = client.post("/classify", files=_upload(files["chest X-ray"][0]))
    assert no_labels.status_code == 422
    no_file = client.post("/classify", data=labels)
    assert no_file.status_code == 422
    # a body streamed without Content-Length is cut off once it passes the limit
    boundary = "biomedclipboundary"

    def chunked():
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
               "Content-Type: image/png\r\n\r\n").encode()
        for _ in range(2 * LIMIT_MB * 16):
            yield bytes(64 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = client.post("/embed", content=chunked(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert streamed.status_code == 413 and "limit" in streamed.json()["detail"]
    assert server.alive()
    for path in ("/search", "/embed"):  # image endpoints share the guards
        response = client.post(path, files={"file": cases["bomb"][0]})
        assert response.status_code == 413, path
    assert server.alive()
    assert "Traceback" not in server.log.read_text()


def test_concurrent_load_every_answer_correct(client, server, files, learn_data):
    """200 requests, 8 at a time, mixed classify and search: each answer equals the one served alone."""
    classes, templates = modality_classes(learn_data)
    images = [f for fs in files.values() for f in fs][:12]
    queries = ["chest X-ray", "fundus photograph", "histopathology", "fluorescence microscopy"]

    def classify(path):
        r = client.post("/classify", files=_upload(path), data={"labels": classes, "templates": templates})
        assert r.status_code == 200, r.text
        return [e["p"] for e in r.json()["probabilities"]]

    def search(text):
        r = client.get("/search", params={"q": text, "k": 8})
        assert r.status_code == 200, r.text
        return [h["id"] for h in r.json()["hits"]]

    expected_probs = {p: classify(p) for p in images}
    expected_hits = {q: search(q) for q in queries}
    jobs = [("c", images[i % len(images)]) if i % 2 else ("s", queries[i % len(queries)]) for i in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda job: classify(job[1]) if job[0] == "c" else search(job[1]), jobs))
    for (kind, arg), answer in zip(jobs, answers, strict=True):
        if kind == "c":
            np.testing.assert_allclose(answer, expected_probs[arg], atol=1e-6)
        else:
            assert answer == expected_hits[arg]
    assert server.alive()
