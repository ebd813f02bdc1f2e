"""Domain WordPiece vocabularies: train one from captions, measure how captions fit a context.

BiomedCLIP's text tower is PubMedBERT, whose vocabulary was learnt from PubMed text instead of
inherited from general-domain BERT, so biomedical words stay whole ("pneumothorax" is one token,
not five). This module gives the same ability for our own corpus: read captions straight from the
WebDataset shards, train a lower-cased WordPiece vocab with HF ``tokenizers``, and write it as a
plain BERT tokenizer folder that ``transformers.AutoTokenizer`` and open_clip's ``HFTokenizer``
load offline.

Tokenizer folder contract (what every bundle and ``tokenizer_dir`` holds):

* ``vocab.txt`` — one token per line, line number = id. PubMedBERT's layout: ``[PAD]``=0,
  ``[UNK]``=1, ``[CLS]``=2, ``[SEP]``=3, ``[MASK]``=4. ``[PAD]`` must be 0 because open_clip's
  ``HFTextEncoder`` builds its attention mask from the BERT config's ``pad_token_id`` (0).
* ``tokenizer_config.json`` — ``tokenizer_class: BertTokenizer``, lower-casing, special tokens;
  AutoTokenizer refuses a folder holding only ``vocab.txt``.
* ``special_tokens_map.json`` — the special tokens again, for older readers.

No ``tokenizer.json`` is written on purpose: ``vocab.txt`` stays the single source of truth, and
transformers builds the fast tokenizer from it.

The paper picked a 256-token context because it covers ~90% of PMC captions;
:func:`tokenizer_stats` measures that coverage for our data and vocab.
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biomedclip.errors import BiomedclipError

log = logging.getLogger(__name__)


class TokenizerError(BiomedclipError, ValueError):
    """A vocabulary, tokenizer folder or caption input that cannot be used; the message says why."""


class TokenizerInputMissing(BiomedclipError, FileNotFoundError):
    """A tokenizer folder or shard input that is not there (still a ``FileNotFoundError``)."""

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""PubMedBERT's special tokens, in id order (``[PAD]`` = 0 … ``[MASK]`` = 4)."""

DEFAULT_CONTEXTS: tuple[int, ...] = (64, 77, 128, 256)
"""Context lengths whose caption coverage :func:`tokenizer_stats` reports (ours, CLIP's, 2×, paper's)."""

TOKENIZER_FILES: tuple[str, ...] = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")

_SPECIAL_MAP = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                "mask_token": "[MASK]"}


# -- writing a tokenizer folder -----------------------------------------------------------------

def write_tokenizer_folder(
    out_dir: str | Path,
    vocab: Sequence[str],
    *,
    do_lower_case: bool = True,
    strip_accents: bool | None = None,
    model_max_length: int = 512,
) -> Path:
    """Write ``vocab.txt`` + ``tokenizer_config.json`` + ``special_tokens_map.json`` to ``out_dir``.

    ``vocab`` must already be in id order; the special tokens are checked so a folder that would
    silently mis-pad (``[PAD]`` ≠ 0) is never written.
    """
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise TokenizerError(f"vocabulary lacks special tokens {missing}")
    if vocab[0] != "[PAD]":
        raise TokenizerError(f"[PAD] must be id 0 (open_clip masks padding by id 0), found {vocab[0]!r} at 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("".join(f"{tok}\n" for tok in vocab), encoding="utf-8")
    config: dict[str, Any] = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": do_lower_case,
        "strip_accents": strip_accents,
        "tokenize_chinese_chars": True,
        "do_basic_tokenize": True,
        "model_max_length": model_max_length,
        **_SPECIAL_MAP,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(_SPECIAL_MAP, indent=2) + "\n", encoding="utf-8")
    return out


def save_tokenizer(tokenizer: Any, out_dir: str | Path, *, model_max_length: int = 512) -> Path:
    """Write a loaded BERT-style HF tokenizer (or open_clip ``HFTokenizer``) as a tokenizer folder.

    Why not ``tokenizer.save_pretrained``: transformers 5 writes only ``tokenizer.json``, no
    ``vocab.txt``, and records load-time details (``local_files_only`` …) in the config.
    """
    hf = getattr(tokenizer, "tokenizer", tokenizer)  # open_clip HFTokenizer wraps the HF one
    vocab_map: dict[str, int] = hf.get_vocab()
    vocab = [tok for tok, _ in sorted(vocab_map.items(), key=lambda kv: kv[1])]
    if [vocab_map[t] for t in vocab] != list(range(len(vocab))):
        raise ValueError("tokenizer ids are not contiguous; cannot write vocab.txt")
    kwargs = getattr(hf, "init_kwargs", {})
    return write_tokenizer_folder(
        out_dir, vocab,
        do_lower_case=bool(getattr(hf, "do_lower_case", kwargs.get("do_lower_case", True))),
        strip_accents=kwargs.get("strip_accents"),
        model_max_length=model_max_length,
    )


def check_tokenizer_folder(path: str | Path) -> Path:
    """Fail early, with the reason, when ``path`` is not a usable BERT tokenizer folder."""
    folder = Path(path)
    if not (folder / "vocab.txt").is_file():
        raise TokenizerInputMissing(f"{folder} is not a tokenizer folder: vocab.txt missing "
                                "(train one with `biomedclip tokenizer train`)")
    if not (folder / "tokenizer_config.json").is_file():
        raise TokenizerInputMissing(
            f"{folder}: tokenizer_config.json missing (AutoTokenizer needs it besides vocab.txt)")
    with (folder / "vocab.txt").open(encoding="utf-8") as fh:
        first = fh.readline().rstrip("\n")
    if first != "[PAD]":
        raise TokenizerError(f"{folder}/vocab.txt: [PAD] must be id 0, found {first!r}")
    return folder


def load_hf_tokenizer(tokenizer_dir: str | Path) -> Any:
    """``AutoTokenizer`` for a tokenizer folder, offline, without length warnings on long captions."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(check_tokenizer_folder(tokenizer_dir)), local_files_only=True)
    tok.model_max_length = 1 << 30  # we measure full lengths; truncation is the model's business
    return tok


# -- training -----------------------------------------------------------------------------------

def train_tokenizer(
    captions: Iterable[str],
    vocab_size: int,
    out_dir: str | Path,
    *,
    min_frequency: int = 2,
    limit_alphabet: int = 1000,
    model_max_length: int = 512,
) -> Path:
    """Train a lower-cased WordPiece vocab on ``captions`` and write a tokenizer folder.

    The normaliser is BERT-uncased's (lower-case, strip accents, split CJK/punctuation), matching
    what ``BertTokenizer(do_lower_case=True)`` applies at use time, so training and use see the
    same text. On a small corpus the vocab can come out smaller than ``vocab_size`` (WordPiece
    stops when no pair is frequent enough); the actual size is ``len(vocab.txt)``.
    """
    from tokenizers import BertWordPieceTokenizer

    if vocab_size <= len(SPECIAL_TOKENS):
        raise TokenizerError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    wordpiece = BertWordPieceTokenizer(lowercase=True, strip_accents=None, clean_text=True,
                                       handle_chinese_chars=True)
    wordpiece.train_from_iterator(
        (c for c in captions if c and c.strip()),
        vocab_size=vocab_size, min_frequency=min_frequency, limit_alphabet=limit_alphabet,
        special_tokens=list(SPECIAL_TOKENS), show_progress=False, wordpieces_prefix="##",
    )
    vocab_map = wordpiece.get_vocab()
    vocab = [tok for tok, _ in sorted(vocab_map.items(), key=lambda kv: kv[1])]
    if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
        raise RuntimeError(f"trainer put special tokens at unexpected ids: {vocab[:len(SPECIAL_TOKENS)]}")
    if len(vocab) == len(SPECIAL_TOKENS):
        raise TokenizerError("no captions to train on (the caption iterator was empty)")
    return write_tokenizer_folder(out_dir, vocab, do_lower_case=True, model_max_length=model_max_length)


_PLACEHOLDER_CHARS = (
    "abcdefghijklmnopqrstuvwxyz0123456789"
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    "αβγδεζηθικλμνξπρστυφχψωΔΣΩ°±×µ·–—‘’“”≤≥≈→←↑↓"
)


def write_placeholder_tokenizer(out_dir: str | Path, vocab_size: int, *, model_max_length: int = 512) -> Path:
    """Write a character-level BERT vocab of exactly ``vocab_size`` tokens, built without any data.

    A randomly initialised built-in model still needs *some* tokenizer to run; this one splits
    every word into characters (``p ##n ##e …``) and pads the id space with ``[unusedN]`` like
    BERT's own vocab, so its size matches the model's embedding table. It is a stand-in for
    smoke tests and shape checks — train a real vocab with :func:`train_tokenizer` for training.
    """
    chars = list(dict.fromkeys(_PLACEHOLDER_CHARS))
    tokens = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    if vocab_size < len(tokens):
        raise ValueError(f"placeholder vocab needs at least {len(tokens)} ids, model has {vocab_size}")
    tokens += [f"[unused{i}]" for i in range(vocab_size - len(tokens))]
    return write_tokenizer_folder(out_dir, tokens, model_max_length=model_max_length)


# -- captions from shards -----------------------------------------------------------------------

def list_shards(shards: str | Path, split: str = "train") -> list[Path]:
    """The finished shard tars of ``split``, in order.

    ``shards`` may be a build folder (``<out>/<split>/NNNNN.tar``), a split folder holding the tars,
    a single ``.tar``, or a glob pattern (``"data/train/*.tar"``). Unfinished ``*.tar.partial``
    files are never matched.
    """
    from biomedclip.data.build_folder import BuildFolder

    text = str(shards)
    path = Path(text)
    if BuildFolder.holds_build(path):
        build = BuildFolder(path)
        found = build.shards(split)
        if not found:
            raise TokenizerInputMissing(build.missing_split(split))
        return found
    if path.is_dir():  # a split folder holding the tars itself
        found = sorted(path.glob("*.tar"))
    elif path.is_file():
        found = [path]
    else:
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if p.endswith(".tar"))
    if not found:
        raise TokenizerInputMissing(f"no shard .tar files for split {split!r} under {text!r} "
                                "(expected <folder>/<split>/NNNNN.tar, a .tar file or a glob)")
    return found


def iter_captions(
    shards: str | Path,
    split: str = "train",
    *,
    on_shard: Callable[[Path], None] | None = None,
) -> Iterator[str]:
    """Yield every caption (``<key>.txt`` member) of the split's shards, streaming.

    Tars are streamed (:func:`biomedclip.data.build_folder.read_shard`: no index, no image decoding), so a shard costs
    one sequential read. ``on_shard`` is called after each shard — a hook for progress bars.
    """
    from biomedclip.data.build_folder import read_shard

    for shard in list_shards(shards, split):
        for sample in read_shard(shard):
            caption = (sample.txt or "").strip()
            if caption:
                yield caption
        if on_shard is not None:
            on_shard(shard)


# -- statistics ---------------------------------------------------------------------------------

@dataclass
class TokenMeasurements:
    """Per-caption token lengths (with ``[CLS]``/``[SEP]``, untruncated) and ``[UNK]`` count."""

    lengths: np.ndarray
    unk_tokens: int
    vocab_size: int

    def stats(self, contexts: Sequence[int] = DEFAULT_CONTEXTS) -> dict[str, Any]:
        """JSON-ready summary: :func:`length_stats` plus ``vocab_size`` and ``unk_rate``."""
        out = length_stats(self.lengths, contexts)
        content = int(self.lengths.sum()) - 2 * int(self.lengths.size)
        out["vocab_size"] = self.vocab_size
        out["unk_rate"] = float(self.unk_tokens / content) if content > 0 else 0.0
        return out


def measure_tokens(
    captions: Iterable[str], tokenizer_dir: str | Path, *, batch_size: int = 512,
) -> TokenMeasurements:
    """Tokenise ``captions`` once, in batches, exactly as the model's tokenizer will."""
    tok = load_hf_tokenizer(tokenizer_dir)
    unk = tok.unk_token_id
    lengths: list[int] = []
    unk_tokens = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal unk_tokens
        if batch:
            for ids in tok(batch, add_special_tokens=True, truncation=False)["input_ids"]:
                lengths.append(len(ids))
                unk_tokens += ids.count(unk)
            batch.clear()

    for caption in captions:
        batch.append(caption)
        if len(batch) >= batch_size:
            flush()
    flush()
    return TokenMeasurements(np.asarray(lengths, dtype=np.int64), unk_tokens, len(tok))


def length_stats(lengths: np.ndarray, contexts: Sequence[int] = DEFAULT_CONTEXTS) -> dict[str, Any]:
    """Percentiles of token lengths and the share of captions that fit each context (untruncated)."""
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        raise TokenizerError("no captions to measure")
    p50, p90, p95, p99 = (float(v) for v in np.percentile(lengths, [50, 90, 95, 99]))
    return {
        "captions": int(lengths.size),
        "mean": float(lengths.mean()),
        "p50": p50, "p90": p90, "p95": p95, "p99": p99,
        "max": int(lengths.max()),
        "fits": {int(c): float((lengths <= c).mean()) for c in contexts},
    }


def tokenizer_stats(
    captions: Iterable[str],
    tokenizer_dir: str | Path,
    *,
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
) -> dict[str, Any]:
    """Token-length percentiles (p50/p90/p95/p99/max), mean, and ``fits[context]`` coverage shares.

    Also reports the vocab size and ``unk_rate`` (share of caption tokens that are ``[UNK]``),
    which shows whether the vocab's alphabet covers the corpus.
    """
    return measure_tokens(captions, tokenizer_dir).stats(contexts)


def plot_token_lengths(
    lengths: np.ndarray,
    target: str | Path,
    *,
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    title: str = "Caption length in tokens",
) -> Path:
    """Write a PNG histogram of token lengths with each context length and its coverage marked.

    Uses matplotlib's object API with the Agg canvas, so it never touches the global backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lengths = np.asarray(lengths)
    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if lengths.size:
        bins = min(80, max(10, int(np.sqrt(lengths.size))))
        ax.hist(lengths, bins=bins, color="#3b7dd8", edgecolor="white")
        colors = ("#d8453b", "#e0a526", "#4caf50", "#7e57c2", "#555555")
        for i, ctx in enumerate(contexts):
            share = float((lengths <= ctx).mean())
            ax.axvline(ctx, color=colors[i % len(colors)], linestyle="--", label=f"{ctx}: {share:.1%} fit")
        ax.legend()
    ax.set_xlabel("tokens per caption (incl. [CLS], [SEP])")
    ax.set_ylabel("captions")
    ax.set_title(f"{title} (n = {lengths.size})")
    fig.tight_layout()
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
