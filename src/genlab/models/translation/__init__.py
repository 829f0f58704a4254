"""The translation transformer (002 Questions 20-22): encoder-decoder, subwords, decoding, BLEU."""
from ...data.translation import BOS, EOS, PAD, UNK, SubwordTokenizer
from .decode import beam_search, greedy_decode, length_penalty
from .gradnorms import grad_norm_hook, layer_grad_norms
from .model import (
                    DecodeStep,
                    Translator,
                    TranslatorConfig,
                    TranslatorEvalConfig,
                    TranslatorSampleConfig,
                    label_smoothed_nll,
                    make_batch,
                    pad_batch,
)
from .schedule import inverse_sqrt_factor, noam_lr
from .scores import bleu, chrf, corpus_scores_from_stats, sentence_stats

__all__ = ["BOS", "EOS", "PAD", "UNK", "DecodeStep", "SubwordTokenizer", "Translator", "TranslatorConfig",
           "TranslatorEvalConfig", "TranslatorSampleConfig", "beam_search", "bleu", "chrf",
           "corpus_scores_from_stats", "grad_norm_hook", "greedy_decode", "inverse_sqrt_factor",
           "label_smoothed_nll", "layer_grad_norms", "length_penalty", "make_batch", "noam_lr", "pad_batch",
           "sentence_stats"]
