"""Per-layer gradient norms: one number per encoder/decoder layer per step.

For layer l with parameters theta_l the logged value is the Euclidean norm of its whole gradient,
||dL/dtheta_l||_2 = sqrt(sum_p ||dL/dp||_2^2) over the layer's parameters p. Xiong et al. 2020
("On Layer Normalization in the Transformer Architecture", Theorem 1 and Fig. 3) predict that at
initialization the gradients of a post-norm model grow towards the last layers, while a pre-norm
model's stay flat; these are the curves the per-layer norms show.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def layer_grad_norms(layers: Sequence[nn.Module]) -> torch.Tensor:
    """A float tensor ``[L]``: the 2-norm of all parameter gradients of each layer (0 when none)."""
    norms = []
    for layer in layers:
        grads = [p.grad.detach() for p in layer.parameters() if p.grad is not None]
        if not grads:
            norms.append(torch.zeros((), dtype=torch.float32))
            continue
        per_param = torch._foreach_norm(grads)                     # one 2-norm per parameter
        norms.append(torch.linalg.vector_norm(torch.stack(per_param).float()).cpu())
    return torch.stack(norms) if norms else torch.zeros(0)


def grad_norm_hook(trainer) -> None:
    """A training-loop step hook: append one ``{"split": "grad", "step", "layers", "grad_norm"}`` row
    to the run's ``metrics.jsonl`` after every optimizer step (gradients are still in place then;
    with ``--grad-clip`` they are the clipped ones). ``grad_norm`` is the list of per-layer norms, to 6
    significant digits (post-norm layers reach 1e-7 and below)."""
    model = trainer.model
    norms = model.layer_grad_norms()
    trainer.logger.log({"split": "grad", "epoch": trainer.state.epoch, "step": trainer.state.global_step,
                        "layers": model.layer_names(), "grad_norm": [float(f"{float(v):.6g}") for v in norms]})
