"""Domain tokenizer: PubMedBERT special layout, offline loading, shard captions, length statistics."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from biomedclip.cli import app  # the project's app: its one error handler turns expected errors into exit 2
from biomedclip.models.tokenizer import (
    SPECIAL_TOKENS,
    iter_captions,
    list_shards,
    load_hf_tokenizer,
    plot_token_lengths,
    tokenizer_stats,
    train_tokenizer,
    write_placeholder_tokenizer,
)

FINDINGS = ["pneumothorax", "cardiomegaly", "adenocarcinoma", "glioblastoma", "hepatocellular carcinoma",
            "pleural effusion", "osteosarcoma", "atelectasis"]
MODALITIES = ["Chest X-ray", "Axial CT", "T2-weighted MRI", "H&E histopathology", "Ultrasound"]


def _captions(n: int) -> list[str]:
    """Deterministic biomedical captions of varied length (some long, like real PMC captions)."""
    out = []
    for i in range(n):
        text = f"{MODALITIES[i % 5]} showing {FINDINGS[i % 8]} in patient {i % 13}."
        if i % 4 == 0:
            text += " Arrows mark the lesion; scale bar 50 µm." * (1 + i % 7)
        out.append(text if i % 3 else text.upper())
    return out


CAPTIONS = _captions(240)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return train_tokenizer(CAPTIONS, 400, tmp_path_factory.mktemp("tok") / "vocab", min_frequency=2)


def _write_shard(path: Path, captions: list[str], start: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for i, caption in enumerate(captions, start):
            for ext, data in (("jpg", b"\xff\xd8\xff"), ("txt", caption.encode()), ("json", b"{}")):
                info = tarfile.TarInfo(f"PMC{i}_F1.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    _write_shard(root / "train" / "00000.tar", CAPTIONS[:100], 0)
    _write_shard(root / "train" / "00001.tar", CAPTIONS[100:], 100)
    _write_shard(root / "train" / "00002.tar.partial", ["unfinished shard"], 999)
    _write_shard(root / "val" / "00000.tar", ["validation caption"], 500)
    return root


def test_special_token_layout_and_files(tok_dir):
    vocab = (tok_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert tuple(vocab[:5]) == SPECIAL_TOKENS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert len(vocab) == len(set(vocab)) <= 400
    assert {p.name for p in tok_dir.iterdir()} == {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json"}
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertTokenizer" and config["do_lower_case"] is True


def test_autotokenizer_and_open_clip_load_it_offline(tok_dir):
    from open_clip.tokenizer import HFTokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0, 1, 2, 3, 4)
    ids = HFTokenizer(str(tok_dir), context_length=32)(["Chest X-ray showing pneumothorax"])[0]
    assert ids[0] == 2 and 3 in ids.tolist() and ids[-1] == 0


def test_biomedical_words_round_trip_lower_cased(tok_dir):
    tok = load_hf_tokenizer(tok_dir)
    for word in ("pneumothorax", "cardiomegaly", "adenocarcinoma", "glioblastoma"):
        assert tok.tokenize(word) == [word]  # frequent domain words stay whole
        assert tok.tokenize(word.upper()) == [word]
    text = "Axial CT showing Hepatocellular Carcinoma and pleural effusion."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text.lower()
    assert tok.unk_token_id not in ids


def test_train_rejects_empty_and_tiny_vocab(tmp_path):
    with pytest.raises(ValueError, match="no captions"):
        train_tokenizer([], 100, tmp_path / "a")
    with pytest.raises(ValueError, match="special"):
        train_tokenizer(CAPTIONS, 5, tmp_path / "b")


def test_placeholder_tokenizer_has_exact_size(tmp_path):
    folder = write_placeholder_tokenizer(tmp_path / "ph", 1000)
    tok = load_hf_tokenizer(folder)
    assert len(tok) == 1000 and tok.pad_token_id == 0
    assert tok.tokenize("CT") == ["c", "##t"]


def test_iter_captions_reads_finished_shards_of_a_split(shards):
    assert [p.name for p in list_shards(shards, "train")] == ["00000.tar", "00001.tar"]
    assert list(iter_captions(shards, "train")) == [c.strip() for c in CAPTIONS]
    assert list(iter_captions(shards, "val")) == ["validation caption"]
    assert list(iter_captions(shards / "val")) == ["validation caption"]  # split folder given directly
    assert len(list(iter_captions(str(shards / "train" / "*.tar")))) == len(CAPTIONS)  # glob
    assert len(list(iter_captions(shards / "train" / "00001.tar"))) == len(CAPTIONS) - 100  # one tar
    seen: list[Path] = []
    list(iter_captions(shards, on_shard=seen.append))
    assert [p.name for p in seen] == ["00000.tar", "00001.tar"]
    with pytest.raises(FileNotFoundError, match="test"):
        list_shards(shards, "test")


def test_stats_match_direct_computation(tok_dir):
    from transformers import AutoTokenizer

    stats = tokenizer_stats(CAPTIONS, tok_dir, contexts=(16, 32, 64, 256))
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    lengths = np.array([len(tok(c)["input_ids"]) for c in CAPTIONS])
    assert stats["captions"] == len(CAPTIONS)
    for key, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert stats[key] == pytest.approx(np.percentile(lengths, q))
    assert stats["max"] == lengths.max() and stats["mean"] == pytest.approx(lengths.mean())
    for ctx in (16, 32, 64, 256):
        assert stats["fits"][ctx] == pytest.approx(np.mean(lengths <= ctx))
    assert 0 < stats["fits"][32] < 1 and stats["fits"][256] == 1.0  # the data spans the contexts
    assert stats["vocab_size"] == len(tok) and stats["unk_rate"] == 0.0
    json.dumps(stats)  # JSON-ready


def test_plot_writes_png(tmp_path):
    target = plot_token_lengths(np.array([5, 9, 30, 70, 300]), tmp_path / "plots" / "lengths.png")
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_train_then_stats(shards, tmp_path):
    runner = CliRunner()
    out = tmp_path / "tok"
    result = runner.invoke(app, ["tokenizer", "train", str(shards), "--vocab-size", "300", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "vocab.txt").read_text().splitlines()[:5] == list(SPECIAL_TOKENS)
    assert "240 captions" in result.output
    png, js = tmp_path / "len.png", tmp_path / "stats.json"
    result = runner.invoke(app, ["tokenizer", "stats", str(shards), "--tokenizer", str(out), "--plot", str(png),
                                 "--json", str(js), "--context", "32", "--context", "256"])
    assert result.exit_code == 0, result.output
    assert "p99" in result.output and png.is_file()
    assert set(json.loads(js.read_text())["fits"]) == {"32", "256"}
    result = runner.invoke(app, ["tokenizer", "stats", str(tmp_path / "nowhere"), "--tokenizer", str(out)])
    assert result.exit_code == 2 and "no shard" in result.output
