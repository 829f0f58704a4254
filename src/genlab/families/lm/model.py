"""``genlab train gpt`` and ``genlab train rnnlm``: the language models as genlab models.

Both learn p(x_1 .. x_T) = prod_t p(x_t | x_<t) by teacher forcing on random windows of a token stream:
inputs x [B, T], targets y [B, T] = x shifted by one (Radford et al. 2018, Eq. 1), loss = mean_t -log p(y_t | x_<=t).
Evaluation averages the same NLL per token (``nll_nats``) and derives ``bits_per_token`` = nll / ln 2
(``bits_per_char`` too for a character tokenizer) and ``perplexity`` = exp(nll).
``genlab sample RUN --prompt "ROMEO:" -n 200 --temperature 0.8 --top-k 40 --top-p 0.95 --seed 1`` prints text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlab.abilities import HasAttentionMaps
from genlab.config import field, require
from genlab.data.registry import DataInfo
from genlab.data.tokenizers import tokenizer_from_dict
from genlab.errors import ConfigError, GenlabError
from genlab.families.lm.gpt import GPT, GPTConfig
from genlab.families.lm.rnn import RNNLM, RNNLMConfig
from genlab.families.lm.sampling import token_nll
from genlab.model import Avg, GenerativeModel, register_model


@dataclass
class TextSampleConfig:
    prompt: str = field("\n", "text the generation continues (its characters must be in the vocabulary)")
    temperature: float = field(1.0, "softmax temperature; 0 is greedy decoding")
    top_k: int | None = field(None, "sample among the k most likely tokens only")
    top_p: float | None = field(None, "sample from the smallest set of tokens whose probability reaches p (nucleus)")

    def validate(self):
        require(self.temperature >= 0, f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        require(self.top_k is None or self.top_k >= 1, f"top-k must be at least 1, got {self.top_k}")
        require(self.top_p is None or 0 < self.top_p <= 1, f"top-p must be in (0, 1], got {self.top_p}")
        require(len(self.prompt) > 0, "the prompt is empty; give at least one character, e.g. --prompt $'\\n'")


class LanguageModel(GenerativeModel):
    """What GPT and the RNN share: the tokenizer from the data, the teacher-forced loss, metrics, text."""

    def __init__(self, config, data_info: DataInfo):
        super().__init__(config, data_info)
        extras = data_info.extras
        if data_info.kind != "text" or "tokenizer" not in extras:
            raise ConfigError(f"a language model needs a text dataset (tinyshakespeare, synthetic-text), "
                              f"got data of kind {data_info.kind!r}; pass --data synthetic-text")
        self.tokenizer = tokenizer_from_dict(extras["tokenizer"])
        self.net = self.build(config, extras["vocab_size"])

    def build(self, config, vocab_size: int) -> torch.nn.Module:
        raise NotImplementedError

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T] token ids -> [B, T, V] next-token logits."""
        raise NotImplementedError

    def batch_hints(self) -> dict:
        return {"block_size": self.config.block_size}

    def loss(self, batch, phase: str = "main"):
        x, y = batch
        nll = token_nll(self.logits(x), y)                    # [B, T] nats per token
        loss = nll.mean()
        return loss, {"nll_nats": loss.detach()}

    def eval_metrics(self, batch, **options):
        x, y = batch
        return {"nll_nats": Avg.of(token_nll(self.logits(x), y))}

    def finalize_metrics(self, means: dict[str, float]) -> dict[str, float]:
        out = dict(means)
        if "nll_nats" not in means:                           # a split shorter than one window
            return out
        nll = means["nll_nats"]
        out["bits_per_token"] = nll / math.log(2)
        if self.tokenizer.kind == "char":
            out["bits_per_char"] = out["bits_per_token"]
        out["perplexity"] = math.exp(min(nll, 700.0))
        return out

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        ids = self.tokenizer.encode(prompt)
        if not ids:
            raise GenlabError("the prompt encodes to no tokens; give a longer --prompt")
        return torch.tensor([ids], dtype=torch.long, device=next(self.parameters()).device)

    @torch.no_grad()
    def generate_text(self, prompt: str, n: int, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, seed: int = 0) -> str:
        """The prompt followed by ``n`` generated tokens, decoded."""
        g = torch.Generator(device=next(self.parameters()).device).manual_seed(seed)
        idx = self.net.generate(self.encode_prompt(prompt), n, temperature, top_k, top_p, generator=g)
        return self.tokenizer.decode(idx[0].tolist())


@register_model("gpt", GPTConfig, "GPT language model (decoder-only transformer, KV-cache generation)",
                default_data="synthetic-text", sample_config=TextSampleConfig, sample="figures:sample_text",
                abilities={HasAttentionMaps}, data_kinds=("text",))
class GPTLanguageModel(LanguageModel):
    def build(self, config: GPTConfig, vocab_size: int) -> GPT:
        return GPT(config, vocab_size)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention weights alpha_ij of every block and head for one sequence: [1, T] -> [L, nh, T, T]."""
        modules = [blk.attn for blk in self.net.blocks]
        for m in modules:
            m.record_weights = True
        try:
            self.net(idx)
            return torch.stack([m.weights[0] for m in modules])                 # L x [nh, T, T] -> [L, nh, T, T]
        finally:
            for m in modules:
                m.record_weights, m.weights = False, None


@register_model("rnnlm", RNNLMConfig, "recurrent language model (--cell lstm|gru)",
                default_data="synthetic-text", sample_config=TextSampleConfig, sample="figures:sample_text",
                data_kinds=("text",))
class RNNLanguageModel(LanguageModel):
    def build(self, config: RNNLMConfig, vocab_size: int) -> RNNLM:
        return RNNLM(config, vocab_size)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]
