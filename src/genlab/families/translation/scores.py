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


# ----------------------------------------------------------------- corpus scores from batch statistics
# Corpus BLEU and chrF are functions of statistics summed over sentences (BLEU: hypothesis and
# reference lengths, matched and total n-grams per order; chrF: character/word n-gram matches and
# totals). Evaluation walks a split batch by batch, so each batch contributes its sums and the
# corpus score is computed once from the split's totals. Both scores depend only on ratios of these
# sums, so the per-sentence means the evaluator hands back give the same score -- except that
# sacrebleu's "exp" smoothing of an n-gram order with no match at all uses the absolute count
# (BLEU is then near 0 either way).
def sentence_stats(hyps: list[str], refs: list[str]) -> dict[str, list[float]]:
    """Sums over these sentences of sacrebleu's BLEU and chrF statistics, as ``stat/bleu/i`` and
    ``stat/chrf/i``."""
    from sacrebleu.metrics import BLEU, CHRF
    _check(hyps, refs)
    out = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        rows = metric._extract_corpus_statistics(list(hyps), [list(refs)])
        for i, column in enumerate(zip(*rows)):
            out[f"stat/{name}/{i}"] = float(sum(column))
    return out


def corpus_scores_from_stats(stats: dict[str, float]) -> dict:
    """``bleu``, ``chrf`` and their sacrebleu signatures from summed (or averaged) statistics."""
    from sacrebleu.metrics import BLEU, CHRF
    out: dict = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        keys = sorted((k for k in stats if k.startswith(f"stat/{name}/")), key=lambda k: int(k.rsplit("/", 1)[1]))
        if not keys:
            continue
        out[name] = float(metric._compute_score_from_stats([stats[k] for k in keys]).score)
        metric.corpus_score(["x"], [["x"]])   # sets the reference count (1) the signature reports
        out[f"{name}_signature"] = str(metric.get_signature())
    return out
