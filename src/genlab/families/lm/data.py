"""Text corpora for language models: Tiny Shakespeare and a synthetic corpus of known entropy rate.

* ``tinyshakespeare`` -- Karpathy's char-rnn corpus (1,115,394 characters), downloaded from its canonical
  location with a sha256 check into ``$GENLAB_CACHE/tinyshakespeare/input.txt``, or read from a local
  folder laid out as ``DIR/tinyshakespeare/input.txt``. Split as nanoGPT: the first 90% of the characters
  train, the last 10% validate. nanoGPT has no third split, so ``test`` is the same last 10%.
* ``synthetic-text`` -- English-looking sentences drawn offline from a hidden word-level Markov source
  (:class:`WordMarkovSource`). The source is *unifilar*: the text determines the word sequence, so its
  entropy rate per character has a closed form and the exact log-probability of any text is computable.
  That gives ``data_nll_nats``: the best per-token loss any model can reach on the data.

Both are :class:`TokenStream` s of a tokenizer (``--tokenizer char|byte|bpe``: characters of the
corpus's whole alphabet, so every split encodes; BPE trained on the training split) whose JSON travels
in ``DataInfo.extras["tokenizer"]``, saved with every run.
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np
import torch

from genlab.config import field, require
from genlab.data.idx import fix_advice, locate
from genlab.data.registry import DataInfo, TokenStream, register_dataset
from genlab.data.tokenizers import build_tokenizer
from genlab.errors import DataError

# ------------------------------------------------------------------ Tiny Shakespeare
TINYSHAKESPEARE = {
    "filename": "input.txt",
    "urls": ["https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"],
    "sha256": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "chars": 1115394,
}
TRAIN_FRACTION = 0.9


def read_tinyshakespeare(data_dir: str | None = None) -> str:
    """The whole corpus as a string, from ``data_dir`` (or ``$GENLAB_DATA``) or the download cache."""
    meta = TINYSHAKESPEARE
    path = locate("tinyshakespeare", meta["filename"], meta["urls"], meta["sha256"], data_dir)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}). {fix_advice(path)}") from None


def split_text(text: str, split: str, train_fraction: float = TRAIN_FRACTION) -> str:
    """nanoGPT's split: the first ``train_fraction`` of the characters for ``train``, the rest for
    ``val`` and ``test`` (the same text: the corpus has only two splits)."""
    n = int(len(text) * train_fraction)
    return text[:n] if split == "train" else text[n:]


# ------------------------------------------------------------------ the synthetic source
# Word classes of a tiny grammar, their words (most frequent first) and class-to-class transitions.
WORD_CLASSES: dict[str, list[str]] = {
    "det": ["the", "a", "my", "thy", "his", "her", "no"],
    "adj": ["good", "noble", "sweet", "old", "young", "fair", "poor", "gentle", "true"],
    "noun": ["king", "queen", "lord", "lady", "man", "heart", "love", "friend", "night", "sword",
             "crown", "world", "death", "blood"],
    "name": ["romeo", "juliet", "hamlet", "lear", "ophelia"],
    "verb": ["loves", "hates", "sees", "speaks", "takes", "holds", "fears", "knows", "calls", "keeps"],
    "prep": ["of", "with", "to", "from", "in", "for"],
    "conj": ["and", "but"],
    "end": [".", "!", "?"],
}
CLASS_TRANSITIONS: dict[str, dict[str, float]] = {
    "det": {"adj": 0.35, "noun": 0.65},
    "adj": {"adj": 0.1, "noun": 0.9},
    "noun": {"verb": 0.45, "prep": 0.2, "end": 0.25, "conj": 0.1},
    "name": {"verb": 0.6, "end": 0.2, "conj": 0.2},
    "verb": {"det": 0.6, "name": 0.3, "end": 0.1},
    "prep": {"det": 0.7, "name": 0.3},
    "conj": {"det": 0.5, "name": 0.5},
    "end": {"det": 0.5, "name": 0.5},
}


@dataclass(frozen=True)
class WordMarkovSource:
    """A first-order Markov chain over words, spelled out as characters.

    P(w' | w) = T[c(w), c(w')] * E[c(w')][w'], a class transition times a Zipf choice of word within
    the class (E[c][r] proportional to 1/(r+1)). The spelling of w' after w is " w'" within a sentence,
    "W'" (capitalized) at the start of a sentence (names are always capitalized) and "." + newline (or
    "!", "?") at its end; it depends
    on (w, w') only and the text parses back into words uniquely, so the character process is a
    unifilar hidden-Markov source. By the renewal-reward theorem its entropy rate per character is

        H = E_pi[-log P(w' | w)] / E_pi[len(spell(w, w'))],

    the expectations over the stationary pair distribution pi(w) P(w' | w) (Cover & Thomas 2006,
    Thm. 4.2.4 for the Markov chain's entropy rate -sum_w pi(w) sum_w' P(w'|w) log P(w'|w)).
    """

    classes: tuple[str, ...] = tuple(WORD_CLASSES)

    @cached_property
    def words(self) -> list[tuple[str, str]]:
        return [(c, w) for c in self.classes for w in WORD_CLASSES[c]]

    @cached_property
    def transition(self) -> np.ndarray:
        """[W, W] word transition matrix P(w' | w)."""
        emit = {c: np.array([1.0 / (r + 1) for r in range(len(WORD_CLASSES[c]))]) for c in self.classes}
        emit = {c: e / e.sum() for c, e in emit.items()}
        W = len(self.words)
        P = np.zeros((W, W))
        for i, (c, _) in enumerate(self.words):
            for j, (c2, _) in enumerate(self.words):
                r = WORD_CLASSES[c2].index(self.words[j][1])
                P[i, j] = CLASS_TRANSITIONS[c].get(c2, 0.0) * emit[c2][r]
        return P

    @cached_property
    def stationary(self) -> np.ndarray:
        """pi with pi P = pi: the left eigenvector of P for eigenvalue 1, normalized."""
        vals, vecs = np.linalg.eig(self.transition.T)
        v = np.real(vecs[:, np.argmin(np.abs(vals - 1.0))])
        return v / v.sum()

    def spell(self, prev: int, word: int) -> str:
        c, w = self.words[word]
        if c == "end":
            return w + "\n"
        if c == "name":
            w = w.capitalize()
        if self.words[prev][0] == "end":
            return w.capitalize()
        return " " + w

    @cached_property
    def spell_lengths(self) -> np.ndarray:
        W = len(self.words)
        return np.array([[len(self.spell(i, j)) for j in range(W)] for i in range(W)], dtype=float)

    def entropy_rate(self) -> float:
        """Nats per character, in closed form (see the class docstring)."""
        P, pi = self.transition, self.stationary
        with np.errstate(divide="ignore", invalid="ignore"):
            logP = np.where(P > 0, np.log(np.where(P > 0, P, 1.0)), 0.0)
        nats_per_word = -(pi[:, None] * P * logP).sum()
        chars_per_word = (pi[:, None] * P * self.spell_lengths).sum()
        return float(nats_per_word / chars_per_word)

    def sample_words(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n word indices of the chain, started at a sentence end (so the text begins a sentence)."""
        cum = np.cumsum(self.transition, axis=1)
        cum[:, -1] = 1.0
        u = rng.random(n)
        out = np.empty(n + 1, dtype=np.int64)
        out[0] = self.words.index(("end", "."))
        for t in range(n):
            out[t + 1] = np.searchsorted(cum[out[t]], u[t], side="right")
        return out

    def text(self, words: np.ndarray) -> str:
        """Spell the words after the first (which only sets the context)."""
        return "".join(self.spell(a, b) for a, b in zip(words[:-1], words[1:]))

    def sample_text(self, n_words: int, rng: np.random.Generator) -> str:
        return self.text(self.sample_words(n_words, rng))

    def parse(self, text: str) -> list[int]:
        """The word indices of a text that starts a sentence (the inverse of :meth:`text`)."""
        index = {w: i for i, (_, w) in enumerate(self.words)}
        tokens = re.findall(r"[A-Za-z]+|[.!?]\n", text)
        if "".join(tokens).replace(" ", "") != text.replace(" ", "") or not tokens:
            raise DataError("text is not from the synthetic source (it does not parse into its words)")
        try:
            return [index[t.strip().lower()] for t in tokens]
        except KeyError as e:
            raise DataError(f"word {e} is not in the synthetic source's vocabulary") from None

    def log_prob(self, text: str) -> float:
        """Exact log p(text | a sentence starts), in nats: sum_t log P(w_t | w_{t-1})."""
        words = [self.words.index(("end", "."))] + self.parse(text)
        if self.text(np.array(words)) != text:
            raise DataError("text is not from the synthetic source (its spelling differs)")
        P = self.transition
        return float(sum(math.log(P[a, b]) for a, b in zip(words[:-1], words[1:])))


SOURCE = WordMarkovSource()
SYNTHETIC_WORDS = {"train": 200_000, "val": 20_000, "test": 20_000}


def synthetic_text(split: str, seed: int = 0, n_words: int | None = None) -> str:
    """The ``synthetic-text`` corpus: each split its own stream, deterministic per (seed, split)."""
    n = n_words or SYNTHETIC_WORDS[split]
    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    return SOURCE.sample_text(n, rng)


# ------------------------------------------------------------------ registered datasets
@dataclass
class TextDataConfig:
    tokenizer: Literal["char", "byte", "bpe"] = field("char", "tokens: characters, UTF-8 bytes, or byte-level BPE "
                                                      "trained on the training split")
    vocab_size: int = field(512, "BPE vocabulary size (tokenizer bpe)")
    data_dir: str | None = field(None, "local folder holding tinyshakespeare/input.txt (else $GENLAB_DATA, "
                                       "else download into the cache)")

    def validate(self):
        require(self.vocab_size > 256, f"vocab_size must exceed the 256 byte tokens, got {self.vocab_size}")


@dataclass
class SyntheticTextConfig:
    tokenizer: Literal["char", "byte", "bpe"] = field("char", "tokens: characters, UTF-8 bytes, or byte-level BPE "
                                                      "trained on the training split")
    vocab_size: int = field(512, "BPE vocabulary size (tokenizer bpe)")
    words: int = field(200_000, "words in the training split (validation and test: a tenth each)")
    corpus_seed: int = field(0, "seed of the generated text; each split draws its own stream")

    def validate(self):
        require(self.vocab_size > 256, f"vocab_size must exceed the 256 byte tokens, got {self.vocab_size}")
        require(self.words >= 100, f"words must be at least 100, got {self.words}")


def _split_words(cfg: SyntheticTextConfig, split: str) -> int:
    return cfg.words if split == "train" else max(cfg.words // 10, 100)


def corpus_text(name: str, cfg, split: str) -> str:
    """The raw text of one split of ``tinyshakespeare`` or ``synthetic-text``."""
    if name == "tinyshakespeare":
        return split_text(read_tinyshakespeare(cfg.data_dir), split)
    return synthetic_text(split, cfg.corpus_seed, _split_words(cfg, split))


def corpus_alphabet(name: str, cfg) -> str:
    """Every character the corpus can hold, so a character vocabulary covers each split: for
    ``tinyshakespeare`` the characters of the whole text (as nanoGPT's shakespeare_char builds its
    vocabulary); for ``synthetic-text`` every spelling of the source (a small training split need not
    show each capital letter its validation split has)."""
    if name == "tinyshakespeare":
        return read_tinyshakespeare(cfg.data_dir)
    i, j = np.nonzero(SOURCE.transition)                       # the word pairs the source can emit
    return "".join(SOURCE.spell(a, b) for a, b in zip(i.tolist(), j.tolist()))


@lru_cache(maxsize=8)
def _tokenizer(name: str, cfg_items: tuple):
    """The tokenizer fitted to the training split (built once per process and configuration); a
    character vocabulary is the corpus's whole alphabet (:func:`corpus_alphabet`)."""
    cfg = (TextDataConfig if name == "tinyshakespeare" else SyntheticTextConfig)(**dict(cfg_items))
    if cfg.tokenizer == "char":
        return build_tokenizer("char", corpus_alphabet(name, cfg))
    return build_tokenizer(cfg.tokenizer, corpus_text(name, cfg, "train"), cfg.vocab_size)


def token_stream(name: str, cfg, split: str) -> TokenStream:
    """Encode one split with the tokenizer fitted to the training split."""
    tok = _tokenizer(name, tuple(sorted(vars(cfg).items())))
    text = corpus_text(name, cfg, split)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    extras = {"dataset": name, "tokenizer": tok.to_dict(), "vocab_size": tok.vocab_size,
              "split_chars": len(text), "split_tokens": len(ids)}
    if name == "synthetic-text":
        extras["entropy_rate_nats_per_char"] = SOURCE.entropy_rate()
        extras["split_true_nll_nats"] = -SOURCE.log_prob(text)          # total nats of the split under the source
    return TokenStream(ids, DataInfo(kind="text", shape=(), extras=extras), tok)


@register_dataset("tinyshakespeare", TextDataConfig,
                  "Tiny Shakespeare (char-rnn), 1.1M characters; first 90% train, last 10% val = test (nanoGPT)",
                  group="text",
                  details=lambda cfg: {"source": TINYSHAKESPEARE["urls"][0], "sha256": TINYSHAKESPEARE["sha256"],
                                       "local layout": "DIR/tinyshakespeare/input.txt"}, kind="text")
def load_tinyshakespeare(cfg: TextDataConfig, split: str) -> TokenStream:
    return token_stream("tinyshakespeare", cfg, split)


@register_dataset("synthetic-text", SyntheticTextConfig,
                  "offline sentences from a hidden word-level Markov source of known entropy rate "
                  f"({SOURCE.entropy_rate() / math.log(2):.3f} bits/char)", group="text",
                  details=lambda cfg: {"entropy rate": f"{SOURCE.entropy_rate():.4f} nats/char",
                                       "words": f"{cfg.words} train, {_split_words(cfg, 'val')} val and test"},
                  kind="text")
def load_synthetic_text(cfg: SyntheticTextConfig, split: str) -> TokenStream:
    return token_stream("synthetic-text", cfg, split)
