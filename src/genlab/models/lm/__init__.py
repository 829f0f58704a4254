"""Language models: GPT (decoder-only transformer) and an LSTM/GRU baseline, their tokenizers and decoding."""
from .gpt import GPT, GPTConfig
from .rnn import RNNLM, RNNLMConfig
from .sampling import filter_logits, next_token, token_nll

__all__ = ["GPT", "GPTConfig", "RNNLM", "RNNLMConfig", "filter_logits", "next_token", "token_nll"]
