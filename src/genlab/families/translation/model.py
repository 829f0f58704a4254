"""The encoder-decoder translation transformer (Vaswani et al. 2017, "Attention Is All You Need").

Reads top-down: the configs (model, eval, sample), the label-smoothed loss, the batching of sentence
pairs, the model (``genlab train translator``), and the incremental decoding step that greedy and beam
search drive (``genlab sample RUN --text ...`` is written by ``figures.sample_translation``). The model
declares no ``Encodes``/``Decodes``: its ``encode`` returns a memory and a mask, not a latent code.

    src ids --embed*sqrt(C)+PE--> [EncoderBlock] x N --(norm if pre)--> memory
    tgt ids (shifted right, <bos> first) --embed*sqrt(C)+PE--> [DecoderBlock: causal self-attn,
        cross-attn to memory, MLP] x N --(norm if pre)--> W_out --> logits over the joint vocabulary

Blocks are the shared ones of ``genlab.nn.transformer`` with the pre/post-norm switch:
post-norm  x_{l+1} = LayerNorm(x_l + A(x_l))   (Vaswani et al. 2017; Xiong et al. 2020, Fig. 1a)
pre-norm   x_{l+1} = x_l + A(LayerNorm(x_l))   (Xiong et al. 2020, Fig. 1b)
A pre-norm stack ends with one more LayerNorm; a post-norm stack does not need one.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.config import field, require
from genlab.data.batches import pad_batch
from genlab.data.registry import DataInfo
from genlab.errors import ConfigError, GenlabError
from genlab.families.translation.data import BOS, EOS, PAD, SubwordTokenizer, SyntheticPairsConfig, synthetic_pair
from genlab.families.translation.decode import beam_search, greedy_decode
from genlab.families.translation.gradnorms import grad_norm_hook, layer_grad_norms
from genlab.families.translation.scores import corpus_scores
from genlab.model import Avg, GenerativeModel, Texts, register_model
from genlab.nn.attention import padding_mask
from genlab.nn.norms import make_norm
from genlab.nn.positions import SinusoidalPositions
from genlab.nn.transformer import BlockConfig, DecoderBlock, EncoderBlock, LayerCache

MAX_BEAM = 64   # beam search keeps this many hypotheses per sentence; published systems use 4..12


@dataclass
class TranslatorConfig:
    d_model: int = field(256, "model width C (embeddings and residual stream)")
    heads: int = field(8, "attention heads (d_model must be divisible by heads)")
    layers: int = field(3, "encoder layers, and decoder layers unless --decoder-layers is given")
    decoder_layers: int | None = field(None, "decoder layers (default: same as --layers)")
    mlp_ratio: float = field(2.0, "hidden width of the feed-forward sublayer as a multiple of d_model")
    dropout: float = field(0.1, "dropout on embeddings, attention weights and sublayer outputs")
    norm: Literal["pre", "post"] = field("pre", "pre-norm x+A(LN(x)) or post-norm LN(x+A(x)) (Xiong et al. 2020)")
    activation: Literal["relu", "gelu"] = field("relu", "feed-forward activation")
    tie_embeddings: bool = field(True, "share source embedding, target embedding and output projection "
                                       "(one joint subword vocabulary; Press and Wolf 2017)")
    label_smoothing: float = field(0.1, "label smoothing epsilon of the training loss (Szegedy et al. 2016)")
    log_grad_norms: bool = field(True, "log the gradient 2-norm of every encoder/decoder layer at every step "
                                       "(measure with gradient clipping off)")

    def validate(self):
        require(self.d_model > 0 and self.heads > 0, "d_model and heads must be positive")
        require(self.d_model % self.heads == 0,
                f"d_model {self.d_model} is not divisible by heads {self.heads}; choose values that divide")
        require(self.layers >= 1, f"layers must be at least 1, got {self.layers}")
        require(self.decoder_layers is None or self.decoder_layers >= 1,
                f"decoder_layers must be at least 1, got {self.decoder_layers}")
        require(self.mlp_ratio > 0, f"mlp_ratio must be positive, got {self.mlp_ratio}")
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        require(0.0 <= self.label_smoothing < 1.0, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass
class TranslatorEvalConfig:
    beam: int = field(4, "beam size for the BLEU/chrF translations (1 = greedy)")
    length_penalty: float = field(0.6, "alpha of the GNMT length penalty ((5+|Y|)/6)^alpha (Wu et al. 2016)")
    decode: bool = field(True, "translate the split for BLEU and chrF (--no-decode: per-token NLL only)")

    def validate(self):
        require(1 <= self.beam <= MAX_BEAM, f"beam must be in 1..{MAX_BEAM} (it keeps beam hypotheses per "
                                            f"sentence), got {self.beam}")
        require(self.length_penalty >= 0, f"length_penalty must be >= 0, got {self.length_penalty}")


@dataclass
class TranslatorSampleConfig:
    text: str = field("", "the sentence to translate, in the run's source language (training prints one)")
    beam: int = field(4, "beam size (1 = greedy)")
    length_penalty: float = field(0.6, "alpha of the GNMT length penalty (Wu et al. 2016)")

    def validate(self):
        require(1 <= self.beam <= MAX_BEAM, f"beam must be in 1..{MAX_BEAM} (it keeps beam hypotheses per "
                                            f"sentence), got {self.beam}")


# ----------------------------------------------------------------- the loss
def label_smoothed_nll(logits: torch.Tensor, target: torch.Tensor, eps: float,
                       ignore_index: int = PAD) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sums over non-ignored tokens of the label-smoothed loss and of the plain NLL, and their count.

    Szegedy et al. 2016 ("Rethinking the Inception Architecture", Sec. 7): the target distribution is
    q'(k) = (1 - eps) 1[k = y] + eps / V, so the cross-entropy is
        H(q', p) = (1 - eps) (-log p_y) + eps * (1/V) sum_k (-log p_k).
    ``logits`` [..., V], ``target`` [...]. Returns (smoothed sum, nll sum, number of tokens).
    """
    logp = F.log_softmax(logits.float(), dim=-1)                      # [..., V]
    keep = target != ignore_index
    safe = target.masked_fill(~keep, 0)
    nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)            # [..., V] -> [...]
    uniform = -logp.mean(dim=-1)                                      # (1/V) sum_k -log p_k
    smoothed = (1.0 - eps) * nll + eps * uniform
    zero = torch.zeros((), device=logits.device)
    return (torch.where(keep, smoothed, zero).sum(), torch.where(keep, nll, zero).sum(), keep.sum())


# ----------------------------------------------------------------- batching sentence pairs
def make_batch(src_ids: list[list[int]], tgt_ids: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
    """Tensors for one batch: ``src`` = x + <eos>; ``tgt`` = <bos> + y + <eos> (the decoder reads
    ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``: teacher forcing with targets shifted by one)."""
    batch = {"src": pad_batch([s + [EOS] for s in src_ids], PAD)}
    if tgt_ids is not None:
        batch["tgt"] = pad_batch([[BOS] + t + [EOS] for t in tgt_ids], PAD)
    return batch


# ----------------------------------------------------------------- the model
EXAMPLES = {"en": "A man is riding a bicycle.", "de": "Ein Mann fährt Fahrrad."}   # Multi30k-like, per language


def example_sentence(run) -> str:
    """A sentence in the run's source language: one of the synthetic grammar's for synthetic pairs (a fixed
    draw), else a Multi30k-like sentence in the direction's source language."""
    if isinstance(run.data_config, SyntheticPairsConfig):
        return synthetic_pair(random.Random(1), run.data_config)[0]
    return EXAMPLES.get(run.data_info.extras.get("src_lang", "en"), EXAMPLES["en"])


def sample_example(run) -> str:
    return f'--text "{example_sentence(run)}"'


@register_model("translator", TranslatorConfig,
                "encoder-decoder transformer for translation: pre/post-norm, beam search, BLEU",
                default_data="synthetic-pairs", eval_config=TranslatorEvalConfig,
                sample_config=TranslatorSampleConfig, sample="figures:sample_translation",
                sample_example=sample_example, data_kinds=("pairs",))
class Translator(GenerativeModel):
    """Encoder-decoder transformer over one joint subword vocabulary (Vaswani et al. 2017, Fig. 1).

    Built from ``DataInfo.extras["tokenizer"]`` (the data's tokenizer, saved with the run). A batch is
    ``(src [B, S], tgt [B, T])``: sources x + <eos>, targets <bos> + y + <eos>, padded with <pad>.
    """

    def __init__(self, cfg: TranslatorConfig, data_info: DataInfo):
        super().__init__(cfg, data_info)
        if "tokenizer" not in data_info.extras:
            raise ConfigError("the translator needs sentence-pair data with a subword tokenizer "
                              "(--data multi30k or synthetic-pairs)")
        self.cfg = cfg
        self.tokenizer = SubwordTokenizer.from_str(data_info.extras["tokenizer"])
        V, C = self.tokenizer.vocab_size, cfg.d_model
        block = BlockConfig(dim=C, n_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout,
                            activation=cfg.activation, norm=cfg.norm)
        self.src_embed = nn.Embedding(V, C, padding_idx=PAD)
        self.tgt_embed = self.src_embed if cfg.tie_embeddings else nn.Embedding(V, C, padding_idx=PAD)
        self.positions = SinusoidalPositions(C, max_len=256)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(block) for _ in range(cfg.layers))
        self.decoder = nn.ModuleList(DecoderBlock(block, cross=True)
                                     for _ in range(cfg.decoder_layers or cfg.layers))
        pre = cfg.norm == "pre"   # a pre-norm stack's output is un-normalized: one final LayerNorm each
        self.enc_norm = make_norm("layernorm", C) if pre else nn.Identity()
        self.dec_norm = make_norm("layernorm", C) if pre else nn.Identity()
        self.out = nn.Linear(C, V, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.out.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        """Xavier-uniform linear maps (as the reference implementations); embeddings N(0, 1/C) so that
        after the sqrt(C) scale of Vaswani et al. 2017 (Sec. 3.4) they have unit variance."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for emb in {id(self.src_embed): self.src_embed, id(self.tgt_embed): self.tgt_embed}.values():
            nn.init.normal_(emb.weight, std=self.cfg.d_model ** -0.5)
            with torch.no_grad():
                emb.weight[PAD].zero_()

    # -------------------------------------------------------- the network
    def _embed(self, emb: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = ids.shape[1]
        x = emb(ids) * math.sqrt(self.cfg.d_model) + self.positions(T, offset)   # [B, T] -> [B, T, C]
        return self.drop(x)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``src`` [B, S] ids -> (memory [B, S, C], "may attend" mask [B, 1, 1, S] hiding padding)."""
        mask = padding_mask(src == PAD)                        # [B, S] -> [B, 1, 1, S]
        x = self._embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, mask=mask)
        return self.enc_norm(x), mask

    def decoder_states(self, tgt_in: torch.Tensor, memory: torch.Tensor | None, memory_mask: torch.Tensor,
                       caches: list[LayerCache] | None = None, offset: int = 0) -> torch.Tensor:
        """``tgt_in`` [B, T] (shifted targets) -> the decoder's last states [B, T, C]. Padding at the end of a
        target needs no mask: the causal rule already hides later positions from every real token."""
        x = self._embed(self.tgt_embed, tgt_in, offset)
        for i, layer in enumerate(self.decoder):
            x = layer(x, memory=memory, memory_mask=memory_mask, cache=caches[i] if caches else None)
        return self.dec_norm(x)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor | None, memory_mask: torch.Tensor,
               caches: list[LayerCache] | None = None, offset: int = 0) -> torch.Tensor:
        """``tgt_in`` [B, T] -> logits [B, T, V] of the next token at every position."""
        return self.out(self.decoder_states(tgt_in, memory, memory_mask, caches, offset))   # [B, T, C] -> [B, T, V]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask)

    # -------------------------------------------------------- training and evaluation (models/base.py protocol)
    def loss_sums(self, batch) -> dict[str, torch.Tensor]:
        """Sums over target tokens of the label-smoothed loss and the NLL (nats), and the token count."""
        src, tgt = batch[0], batch[1]
        memory, mask = self.encode(src)
        h = self.decoder_states(tgt[:, :-1], memory, mask)    # teacher forcing: read y_<t, predict y_t
        target = tgt[:, 1:]
        real = target != PAD                                   # project only real target positions onto the
        logits = self.out(h[real])                             # vocabulary: [B, T, C] -> [N, C] -> [N, V]
        smoothed, nll, n = label_smoothed_nll(logits, target[real], self.cfg.label_smoothing)
        return {"loss_sum": smoothed, "nll_sum": nll, "tokens": n}

    def loss(self, batch, phase: str = "main"):
        """Label-smoothed cross-entropy per target token; logs the plain per-token NLL in nats."""
        out = self.loss_sums(batch)
        n = out["tokens"].clamp(min=1)
        return out["loss_sum"] / n, {"nll_nats": out["nll_sum"].detach() / n}

    def eval_metrics(self, batch, beam: int = 1, length_penalty: float = 0.6, decode: bool = True):
        """Per-token NLL (nats) and, when ``decode``, this batch's detokenized translations (beam ``beam``;
        greedy when 1) and references as ``Texts``; ``finalize_metrics`` scores the split's strings once.
        The references are the decoded target ids: the tokenizer gives back the raw sentence with its
        whitespace collapsed (``data.py``), which neither 13a BLEU nor chrF can tell from the raw text
        unless a character unseen in training became ``<unk>``."""
        out = self.loss_sums(batch)
        metrics: dict[str, torch.Tensor | Avg | Texts] = {"nll_nats": Avg(out["nll_sum"], out["tokens"])}
        if decode:
            src, tgt = batch[0], batch[1]
            metrics["hypotheses"] = Texts([self.tokenizer.decode(ids)
                                           for ids in self.translate_ids(src, beam, length_penalty)])
            metrics["references"] = Texts(self.tokenizer.decode_batch(tgt.tolist()))
        return metrics

    def finalize_metrics(self, means: dict) -> dict:
        """Perplexity exp(NLL per token) and, from the split's strings, corpus BLEU and chrF with their
        sacrebleu signatures (``scores.corpus_scores``: sacrebleu's ``corpus_score``, once per split)."""
        out = {k: v for k, v in means.items() if k not in ("hypotheses", "references")}
        out["perplexity"] = math.exp(min(means["nll_nats"], 700.0))
        if "hypotheses" in means:
            out |= corpus_scores(means["hypotheses"], means["references"])
        return out

    def batch_hints(self) -> dict:
        return {}

    # -------------------------------------------------------- per-layer gradient norms
    def grad_layers(self) -> list[nn.Module]:
        """The layers whose gradient norms are logged: encoder 0..N-1, then decoder 0..M-1."""
        return [*self.encoder, *self.decoder]

    def layer_names(self) -> list[str]:
        return [f"enc{i}" for i in range(len(self.encoder))] + [f"dec{i}" for i in range(len(self.decoder))]

    def layer_grad_norms(self) -> torch.Tensor:
        """[N + M] gradient 2-norm of every encoder and decoder layer (after ``backward``)."""
        return layer_grad_norms(self.grad_layers())

    def step_hooks(self) -> list:
        """Hooks the trainer runs after every optimizer step: the per-layer gradient-norm log."""
        return [grad_norm_hook] if self.cfg.log_grad_norms else []

    # -------------------------------------------------------- translation
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        for i, t in enumerate(texts):
            if not t or not t.strip():
                raise GenlabError(f"sentence {i + 1} is empty; give a sentence to translate, "
                                  f"e.g. --text \"A man is riding a bicycle.\"")
        return make_batch(self.tokenizer.encode_batch(texts))["src"]

    @torch.no_grad()
    def translate_ids(self, src: torch.Tensor, beam: int = 1, alpha: float = 0.6,
                      max_len: int | None = None) -> list[list[int]]:
        """Subword ids of the translations of ``src`` [B, S]: greedy when ``beam`` is 1, else beam search.
        A translation stops at <eos> or after ``max_len`` subwords (default: 1.5 x its own source length
        + 10, so no sentence's output depends on the others in its batch)."""
        was_training = self.training
        self.eval()
        try:
            memory, mask = self.encode(src)
            limit = max_len or [int(1.5 * n) + 10 for n in (src != PAD).sum(1).tolist()]
            step = DecodeStep(self, memory, mask)
            if beam <= 1:
                return greedy_decode(step, len(src), BOS, EOS, limit, device=src.device)
            return beam_search(step, len(src), BOS, EOS, limit, beam=beam, alpha=alpha, device=src.device)
        finally:
            self.train(was_training)

    def translate(self, texts: list[str], beam: int = 1, alpha: float = 0.6, batch_size: int = 64) -> list[str]:
        """Detokenized translations of ``texts`` (batched, longest first to limit padding)."""
        device = next(self.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[str] = [""] * len(texts)
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            src = self.encode_text([texts[i] for i in idx]).to(device)
            for i, ids in zip(idx, self.translate_ids(src, beam=beam, alpha=alpha)):
                out[i] = self.tokenizer.decode(ids)
        return out


class DecodeStep:
    """``step(prefix [N, t], rows [N]) -> log p(y_t | y_<t, x_row)`` [N, V] with a KV cache per decoder layer.

    On the first call the memory rows are gathered (beam search repeats each sentence K times) and the
    cross-attention keys/values computed once; later calls feed only the newest token. ``reorder`` keeps
    the caches in step with the surviving beams.
    """

    def __init__(self, model: Translator, memory: torch.Tensor, memory_mask: torch.Tensor):
        self.model, self.memory, self.memory_mask = model, memory, memory_mask
        self.caches: list[LayerCache] | None = None
        self.rows_mask: torch.Tensor | None = None

    def __call__(self, prefix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        t = prefix.shape[1]
        if self.caches is None or len(self.caches[0].self_attn) != t - 1:
            self.caches = [LayerCache() for _ in self.model.decoder]
            self.rows_mask = self.memory_mask[rows]            # [B, 1, 1, S] -> [N, 1, 1, S]
            logits = self.model.decode(prefix, self.memory[rows], self.rows_mask, self.caches, offset=0)
        else:
            logits = self.model.decode(prefix[:, -1:], None, self.rows_mask, self.caches, offset=t - 1)
        return F.log_softmax(logits[:, -1].float(), dim=-1)    # [N, t, V] -> [N, V]

    def reorder(self, index: torch.Tensor) -> None:
        for c in self.caches or []:
            c.self_attn.reorder(index)
            c.cross_attn.reorder(index)
        if self.rows_mask is not None:
            self.rows_mask = self.rows_mask[index]
