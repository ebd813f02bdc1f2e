"""JSON answers of the CLI and the server have one shape: no nulls, no -1 sentinels, probabilities as [{label, p}].

A random-init tiny model exported once as a bundle is enough: these tests check shapes and that
CLI and server give the same numbers, not whether the model is any good (that needs the slow
trained model and lives in test_classify.py / test_serve.py).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from biomedclip.cli import app
from biomedclip.models.prompts import DEFAULT_TEMPLATES

runner = CliRunner()


def _invoke(*args: object) -> Any:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result


def _no_nulls(value: Any) -> bool:
    if isinstance(value, dict):
        return all(v is not None and _no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_nulls(v) for v in value)
    return True


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bundle, a folder of 4 PNGs and a shard of 3 samples, embedded and indexed together."""
    from biomedclip.models.factory import export_bundle, load_model

    root = tmp_path_factory.mktemp("shapes")
    bundle = export_bundle(load_model("biomedclip-tiny", seed=0), root / "bundle")
    rng = np.random.default_rng(0)
    (root / "folder").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / "folder" / f"f{i}.png")
    with tarfile.open(root / "000000.tar", "w") as tar:
        for i in range(3):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(buf, format="JPEG")
            for ext, data in (("jpg", buf.getvalue()), ("txt", f"caption {i}".encode()),
                              ("json", json.dumps({"pmcid": f"PMC{i}", "split": "test"}).encode())):
                info = tarfile.TarInfo(f"PMC{i}_fig1.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    _invoke("embed", root / "folder", root / "000000.tar", "-m", bundle, "-o", root / "emb", "--workers", 0,
            "--device", "cpu")
    _invoke("index", root / "emb", "-o", root / "index")
    return {"root": root, "bundle": bundle, "index": root / "index", "image": root / "folder" / "f1.png"}


@pytest.fixture(scope="module")
def client(collection: dict[str, Path]) -> Any:
    from biomedclip.serve.app import create_app

    with TestClient(create_app(str(collection["bundle"]), collection["index"], device="cpu")) as c:
        yield c


def test_search_hits_have_no_nulls_or_sentinels(collection: dict[str, Path], client: Any) -> None:
    cli = json.loads(_invoke("search", collection["index"], "a figure", "-k", 7, "--json", "--device", "cpu").output)
    assert cli["mode"] == "text" and cli["query"] == "a figure" and "image" not in cli
    assert len(cli["hits"]) == 7 and _no_nulls(cli)
    by_key = {h["key"]: h for h in cli["hits"]}
    shard, whole = by_key["PMC1_fig1"], by_key["f1.png"]
    assert shard["offset"] > 0 and shard["size"] > 0 and shard["pmcid"] == "PMC1" and shard["caption"] == "caption 1"
    assert "offset" not in whole and "size" not in whole and "caption" not in whole and "pmcid" not in whole
    server = client.get("/search", params={"q": "a figure", "k": 7}).json()
    assert server["mode"] == "text" and server["query"] == "a figure" and "image" not in server and _no_nulls(server)
    # the server's hits are the CLI's, plus the thumbnail URL
    for ours, theirs in zip(cli["hits"], server["hits"], strict=True):
        assert {k: v for k, v in theirs.items() if k != "image_url"} == ours
        assert theirs["image_url"] == f"/items/{ours['id']}/image"
    item = client.get(f"/items/{whole['id']}").json()
    assert item == {"id": whole["id"], "key": "f1.png", "source": whole["source"], "meta": {}}
    item = client.get(f"/items/{shard['id']}").json()
    assert item["offset"] == shard["offset"] and item["meta"] == {"pmcid": "PMC1", "split": "test"}
    image_cli = json.loads(_invoke("search", collection["index"], "--image", collection["image"], "-k", 2, "--json",
                                   "--device", "cpu").output)
    assert image_cli["mode"] == "image" and image_cli["image"] == str(collection["image"]) and "query" not in image_cli
    with collection["image"].open("rb") as fh:
        image_server = client.post("/search", files={"file": ("f1.png", fh.read(), "image/png")},
                                   data={"k": "2"}).json()
    assert image_server["mode"] == "image" and image_server["image"] == "f1.png" and "query" not in image_server
    assert [h["key"] for h in image_server["hits"]] == [h["key"] for h in image_cli["hits"]]


def test_classify_cli_and_server_give_one_shape(collection: dict[str, Path], client: Any, tmp_path: Path) -> None:
    labels = ["chest X-ray", "brain MRI", "western blot"]
    cli = json.loads(_invoke("classify", collection["image"], "--labels", *labels, "-m", collection["bundle"],
                             "--json", "--device", "cpu").output)
    # the templates actually used are printed, also when none were given
    assert cli["labels"] == labels and cli["templates"] == list(DEFAULT_TEMPLATES) and _no_nulls(cli)
    (row,) = cli["results"]
    assert set(row) == {"file", "prediction", "probabilities"}
    assert [e["label"] for e in row["probabilities"]] == labels
    assert sum(e["p"] for e in row["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert row["prediction"] == max(row["probabilities"], key=lambda e: e["p"])["label"]
    with collection["image"].open("rb") as fh:
        server = client.post("/classify", files={"file": ("f1.png", fh.read(), "image/png")},
                             data={"labels": labels}).json()
    assert server["labels"] == labels and server["templates"] == list(DEFAULT_TEMPLATES)
    assert [e["label"] for e in server["probabilities"]] == labels and set(server["probabilities"][0]) == {"label", "p"}
    np.testing.assert_allclose([e["p"] for e in server["probabilities"]], [e["p"] for e in row["probabilities"]],
                               atol=1e-5)
    assert server["prediction"] == row["prediction"]
    # an unreadable file: {file, error}, no null prediction or probabilities
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    bad = runner.invoke(app, ["classify", str(broken), "--labels", "a", "b", "-m", str(collection["bundle"]),
                              "--json", "--device", "cpu"])
    assert bad.exit_code == 1
    (failed,) = json.loads(bad.output)["results"]
    assert set(failed) == {"file", "error"} and failed["error"]
