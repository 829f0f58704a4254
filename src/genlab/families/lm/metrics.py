"""Extra metrics of text runs: ``chars_per_token`` of the evaluated split and, on ``synthetic-text``,
``data_nll_nats``: the true source's negative log-likelihood per token of the split, -log p(text) /
tokens. Its expectation per character is the source's entropy rate, the best ``nll_nats`` any model can
reach (with a character tokenizer: per token = per character). Both describe the whole split, also when
``--limit`` evaluates the model on a part of it."""
from __future__ import annotations

import math

from genlab.eval.evaluate import register_metric


@register_metric("text", kinds=("text",), description="chars per token; the true source's NLL on synthetic-text")
def text_metrics(run, data, options) -> dict | None:
    extras = data.info.extras
    if "split_tokens" not in extras:
        return None
    tokens = extras["split_tokens"]
    out = {"chars_per_token": extras["split_chars"] / tokens}
    if "split_true_nll_nats" in extras:
        out["data_nll_nats"] = extras["split_true_nll_nats"] / tokens
        out["data_bits_per_token"] = out["data_nll_nats"] / math.log(2)
    return out
