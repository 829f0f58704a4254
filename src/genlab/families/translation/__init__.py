"""The translation transformer (Vaswani et al. 2017): encoder-decoder, subwords, decoding, BLEU.

- ``data.py``: ``multi30k`` and ``synthetic-pairs``, the subword tokenizer.
- ``model.py``: the ``translator`` model; ``decode.py``: greedy and beam search; ``schedule.py``: warm-up.
- ``scores.py``: BLEU and chrF through sacreBLEU; ``gradnorms.py``: per-layer gradient norms.
- ``figures.py``: curves and gradient norms, the translations ``genlab sample`` prints; ``experiments.py``:
  pre-norm vs post-norm.
"""
from genlab.catalog import lazy_exports

MODELS = {"translator": "model"}
DATASETS = {"multi30k": "data", "synthetic-pairs": "data"}
EXPERIMENTS = {"prenorm-vs-postnorm": "experiments", "prenorm-vs-postnorm-toy": "experiments"}
FIGURES = ["figures"]

__getattr__ = lazy_exports(__name__, {
    **{name: "data" for name in ("BOS", "EOS", "PAD", "UNK", "SubwordTokenizer")},
    **{name: "decode" for name in ("beam_search", "greedy_decode", "length_penalty")},
    **{name: "gradnorms" for name in ("grad_norm_hook", "layer_grad_norms")},
    **{name: "model" for name in ("DecodeStep", "Translator", "TranslatorConfig", "TranslatorEvalConfig",
                                  "TranslatorSampleConfig", "label_smoothed_nll", "make_batch", "pad_batch")},
    **{name: "schedule" for name in ("inverse_sqrt_factor", "noam_lr")},
    **{name: "scores" for name in ("bleu", "chrf", "corpus_scores")}})
