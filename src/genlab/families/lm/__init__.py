"""Language models: a GPT (Radford et al. 2018) and an LSTM/GRU baseline, trained by next-token prediction.

- ``gpt.py``: the decoder-only transformer; ``rnn.py``: the recurrent baseline; ``sampling.py``: decoding.
- ``model.py``: the ``gpt`` and ``rnnlm`` models; ``data.py``: ``tinyshakespeare`` and ``synthetic-text``.
- ``metrics.py``: the source's entropy rate beside the model's NLL; ``figures.py``: attention maps, the text of
  ``genlab sample``.
- ``experiments.py``: RNN vs transformer cost, the anatomy of attention, GPT on Shakespeare, teacher forcing
  against free running.
"""
from genlab.catalog import lazy_exports

MODELS = {"gpt": "model", "rnnlm": "model"}
DATASETS = {"tinyshakespeare": "data", "synthetic-text": "data"}
EXPERIMENTS = {name: "experiments" for name in ("rnn-vs-transformer", "attention-anatomy", "gpt-shakespeare",
                                                       "teacher-forcing-vs-free-running")}
METRICS = {"text": "metrics"}
FIGURES = ["figures"]

__getattr__ = lazy_exports(__name__, {
    "GPT": "gpt", "GPTConfig": "gpt", "RNNLM": "rnn", "RNNLMConfig": "rnn",
    "filter_logits": "sampling", "next_token": "sampling", "token_nll": "sampling"})
