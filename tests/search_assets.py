"""Shared, cached set-up for the search/serve tests: the trained tiny model, its embeddings and index
of the ``learn_data`` test split, image files per modality, and a running server.

Test modules wrap these in their own fixtures; the module-level cache makes every asset exist once
per session however many modules ask for it (pytest would build a fixture imported into several
modules once per module).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

_CACHE: dict[str, Any] = {}
MODALITIES_WITH_FILES = ("chest X-ray", "brain MRI", "histopathology", "fundus photograph",
                         "fluorescence microscopy", "ultrasound")


def bundle(trained_run: tuple[Path, dict]) -> str:
    """The trained model as a model name."""
    return f"local-dir:{trained_run[0] / 'bundle'}"


def loaded_model(trained_run: tuple[Path, dict]) -> Any:
    """The trained tiny model, loaded once."""
    if "model" not in _CACHE:
        from biomedclip.models.runtime import load_runner

        _CACHE["model"] = load_runner(bundle(trained_run), device="cpu")
    return _CACHE["model"]


def modality_labels(learn_data: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Ground truth per figure key (modality, compound, broken) from the corpus's labels.jsonl."""
    if "labels" not in _CACHE:
        rows = [json.loads(line) for line in (learn_data["corpus"] / "labels.jsonl").read_text().splitlines() if line]
        _CACHE["labels"] = {r["key"]: r for r in rows}
    return _CACHE["labels"]


def modality_classes(learn_data: dict[str, Path]) -> tuple[list[str], list[str]]:
    """Modality class names and prompt templates from the corpus's classes.json."""
    spec = json.loads((learn_data["corpus"] / "classes.json").read_text())["modality"]
    return list(spec["classes"]), list(spec["templates"])


def indexed(learn_data: dict[str, Path], trained_run: tuple[Path, dict], root: Path) -> dict[str, Path]:
    """Embeddings and a flat index of the test split's images, made with the trained model."""
    if "indexed" not in _CACHE:
        from biomedclip.search.embed import embed_images
        from biomedclip.search.index import build_index

        emb, index = root / "emb_test", root / "index_test"
        embed_images([learn_data["shards"]], loaded_model(trained_run), emb, split=["test"], chunk_size=50)
        build_index(emb, index)
        _CACHE["indexed"] = {"emb": emb, "index": index}
    return _CACHE["indexed"]


def image_files(learn_data: dict[str, Path], root: Path, per_modality: int = 6) -> dict[str, list[Path]]:
    """Test-split images written as PNG/JPEG files, by modality (clean single-panel figures only)."""
    if "files" not in _CACHE:
        from biomedclip.evaluate.features import read_shard_pairs

        labels = modality_labels(learn_data)
        out = root / "images"
        out.mkdir(parents=True, exist_ok=True)
        files: dict[str, list[Path]] = {}
        for pair in read_shard_pairs(learn_data["shards"], "test"):
            truth = labels.get(pair.key, {})
            modality = truth.get("modality")
            if modality not in MODALITIES_WITH_FILES or truth.get("compound") or truth.get("broken"):
                continue
            bucket = files.setdefault(modality, [])
            if len(bucket) < per_modality:
                path = out / f"{pair.key}.{'png' if len(bucket) % 2 else 'jpg'}"
                pair.image.save(path)
                bucket.append(path)
        _CACHE["files"] = files
    return _CACHE["files"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``biomedclip serve`` in a subprocess on a free 127.0.0.1 port."""

    def __init__(self, model: str, index: Path | None, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "biomedclip.cli", "serve", "--model", model, "--port", str(self.port),
                "--log-level", "warning", *extra]
        if index is not None:
            args += ["--index", str(index)]
        self.log = log
        self._log_file = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT,
                                        env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not come up: {log.read_text()}")

    def alive(self) -> bool:
        return self.process.poll() is None and httpx.get(f"{self.url}/health", timeout=10).status_code == 200

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
