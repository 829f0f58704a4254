"""Tokenizers for language models: characters, bytes, and byte-level BPE.

API
---
* ``build_tokenizer(kind, text, vocab_size=512) -> Tokenizer``: ``kind`` is ``"char"`` (the characters of
  ``text``, sorted), ``"byte"`` (the 256 UTF-8 byte values; ``text`` unused) or ``"bpe"`` (byte-level BPE,
  Sennrich et al. 2016, trained on ``text`` with the ``tokenizers`` library to ``vocab_size`` tokens).
* ``tok.encode(str) -> list[int]``, ``tok.decode(list[int]) -> str``, ``tok.vocab_size``, ``tok.kind``.
  ``encode`` of characters the tokenizer does not know raises ``GenlabError`` naming them.
* ``tok.to_dict()`` / ``tokenizer_from_dict(d)``, ``save_tokenizer(tok, path)`` / ``load_tokenizer(path)``:
  JSON, saved with a run so that sampling and evaluation use the same vocabulary.

All three round-trip: ``decode(encode(s)) == s`` for any text the tokenizer can encode (any text at all
for ``byte`` and ``bpe``).
"""
from __future__ import annotations

import json
from pathlib import Path

from genlab.errors import ConfigError, DataError, GenlabError

TOKENIZERS = ("char", "byte", "bpe")


class CharTokenizer:
    """One token per character of the training text (the vocabulary of char-rnn / nanoGPT's shakespeare_char)."""
    kind = "char"

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            raise GenlabError(f"the text has characters the model's vocabulary lacks: "
                              f"{', '.join(map(repr, unknown))}; use only characters of its training data "
                              f"({''.join(self.chars)!r})") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


class ByteTokenizer:
    """One token per UTF-8 byte: 256 tokens, any text (decoding replaces invalid byte sequences)."""
    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"kind": self.kind}


class BPETokenizer:
    """Byte-level byte-pair encoding (Sennrich et al. 2016; GPT-2's byte-level variant, Radford et al. 2019)
    trained with the ``tokenizers`` library: merges of frequent adjacent pairs, starting from the 256 bytes."""
    kind = "bpe"

    def __init__(self, tok):
        self.tok = tok

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        if vocab_size < 257:
            raise ConfigError(f"a BPE vocabulary needs more than the 256 byte tokens, got vocab_size={vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        lines = text.splitlines(keepends=True)
        tok.train_from_iterator(("".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000)), trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.tok.to_str())}


Tokenizer = CharTokenizer | ByteTokenizer | BPETokenizer


def build_tokenizer(kind: str, text: str, vocab_size: int = 512) -> Tokenizer:
    """A tokenizer of ``kind`` fitted to ``text`` (the training split)."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size)
    raise ConfigError(f"unknown tokenizer {kind!r}; use one of {', '.join(TOKENIZERS)}")


def tokenizer_from_dict(d: dict) -> Tokenizer:
    if not isinstance(d, dict):
        raise DataError("a saved tokenizer is not a JSON object; was it written by genlab?")
    kind = d.get("kind")
    if kind == "char":
        chars = d.get("chars")
        if (not isinstance(chars, (list, str)) or not chars
                or not all(isinstance(c, str) and len(c) == 1 for c in chars) or len(set(chars)) != len(chars)):
            raise DataError(f"a saved character tokenizer has no valid 'chars' (got {type(chars).__name__}: "
                            f"{str(chars)[:40]!r}); the run's config.json was edited or damaged")
        return CharTokenizer(chars)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        from tokenizers import Tokenizer as HFTokenizer
        return BPETokenizer(HFTokenizer.from_str(json.dumps(d["tokenizer"])))
    raise DataError(f"unknown tokenizer kind {kind!r} in a saved tokenizer; was it written by genlab?")


def save_tokenizer(tok: Tokenizer, path: str | Path) -> None:
    Path(path).write_text(json.dumps(tok.to_dict(), ensure_ascii=False))


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: tokenizer file not found; the run folder is incomplete")
    try:
        return tokenizer_from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError) as e:
        raise DataError(f"{path}: not a genlab tokenizer file ({e})") from None
