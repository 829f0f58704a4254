"""``data_nll_nats``: the true density's cross-entropy on the evaluated split, for toy sets whose
density is known (genlab.data.toy.KNOWN_DENSITY). It is -1/N sum_i log p(x_i), an estimate of the
entropy H(p): the best ``nll_nats`` any model can reach in expectation."""
from __future__ import annotations

from genlab.eval.evaluate import register_metric


@register_metric("data_nll")
def data_nll(run, data, options) -> dict | None:
    from genlab.data import toy
    extras = data.info.extras
    if data.info.kind != "points" or not extras.get("known_density"):
        return None
    x = data.tensors[0].double()
    log_p = toy.log_density(extras["dataset"], x, extras.get("noise"))
    return {"data_nll_nats": float(-log_p.mean())}
