"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Real files written by nobody on this project live beside the repository (never copied into it).
_DEFAULT_REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real-data folder (override with BIOMEDCLIP_REALDATA); skips the test when absent."""
    path = Path(os.environ.get("BIOMEDCLIP_REALDATA", _DEFAULT_REALDATA))
    if not path.is_dir():
        pytest.skip(f"real data folder not found: {path}")
    return path


# ------------------------------------------------------------------------------------------------
# One small synthetic corpus and one tiny trained model per test session: several stages (training,
# evaluation, search, serving, the demo) need "a model that has really learned", and training it
# once keeps the whole suite inside its time budget. Tests must treat these folders as read-only.


@pytest.fixture(scope="session")
def learn_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic corpus (1400 articles) → shards split 0.8/0.1/0.1 → domain tokenizer.

    1400 articles (~2,300 training pairs): with half as many, the tiny text tower memorises the
    captions and zero-shot accuracy swung between 0.75 and 0.91 from run to run.

    Keys: root, corpus (with labels.jsonl and classes.json), shards, tokenizer.
    """
    from biomedclip.data.pipeline import BuildConfig, build
    from biomedclip.models.tokenizer import iter_captions, train_tokenizer
    from biomedclip.synth import synthesize

    root = tmp_path_factory.mktemp("learn")
    synthesize(root / "corpus", 1400, seed=11, workers=2)
    build(BuildConfig(sources=[str(root / "corpus" / "folders"), str(root / "corpus" / "packages")],
                      out=root / "shards", splits={"train": 0.8, "val": 0.1, "test": 0.1}, workers=2))
    train_tokenizer(iter_captions(root / "shards", split="train"), 3000, root / "tokenizer")
    return {"root": root, "corpus": root / "corpus", "shards": root / "shards", "tokenizer": root / "tokenizer"}


@pytest.fixture(scope="session")
def trained_run(learn_data: dict[str, Path]) -> tuple[Path, dict]:
    """biomedclip-tiny trained from scratch on ``learn_data``: (run folder, train summary).

    The run folder holds ``bundle/`` (trained, a local-dir: bundle) and ``init_bundle/`` (the same
    architecture untrained: the baseline every learning test compares against).
    """
    from biomedclip.train.launch import TrainConfig, train
    from biomedclip.train.recipe import Recipe

    out = learn_data["root"] / "run"
    summary = train(TrainConfig(data=learn_data["shards"], out=out, tokenizer=learn_data["tokenizer"],
                                recipe=Recipe(steps=640, batch_size=64, log_every_n_steps=10)))
    return out, summary
