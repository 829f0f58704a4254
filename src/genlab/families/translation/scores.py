"""Corpus BLEU and chrF with sacrebleu on detokenized text, each with its reproducibility signature.

BLEU: Papineni et al. 2002 (geometric mean of modified 1-4-gram precisions times a brevity penalty),
computed with sacrebleu's standard 13a tokenization (Post 2018, "A Call for Clarity in Reporting
BLEU Scores"). chrF: Popovic 2015 (character n-gram F-score, beta = 2). Scores are in [0, 100].
"""
from __future__ import annotations

from genlab.errors import GenlabError


def _check(hyps: list[str], refs: list[str]) -> None:
    if len(hyps) != len(refs):
        raise GenlabError(f"{len(hyps)} translations but {len(refs)} references; give one reference per line")


def bleu(hyps: list[str], refs: list[str]) -> tuple[float, str]:
    """Corpus BLEU of ``hyps`` against one reference each, and sacrebleu's signature."""
    from sacrebleu.metrics import BLEU
    _check(hyps, refs)
    metric = BLEU()
    score = metric.corpus_score(list(hyps), [list(refs)])
    return float(score.score), str(metric.get_signature())


def chrf(hyps: list[str], refs: list[str]) -> tuple[float, str]:
    """Corpus chrF (character 6-grams, beta = 2) and sacrebleu's signature."""
    from sacrebleu.metrics import CHRF
    _check(hyps, refs)
    metric = CHRF()
    score = metric.corpus_score(list(hyps), [list(refs)])
    return float(score.score), str(metric.get_signature())


def corpus_scores(hyps: list[str], refs: list[str]) -> dict:
    """``bleu``, ``chrf`` and their sacrebleu signatures of detokenized ``hyps`` against ``refs``: the
    whole corpus scored once by sacrebleu's public ``corpus_score`` (what the ``sacrebleu`` command
    gives for the same two files)."""
    (b, b_sig), (c, c_sig) = bleu(hyps, refs), chrf(hyps, refs)
    return {"bleu": b, "bleu_signature": b_sig, "chrf": c, "chrf_signature": c_sig}
