"""The inverse-square-root learning-rate schedule with linear warm-up (a pure function of the step).

Vaswani et al. 2017, "Attention Is All You Need", Eq. 3:
    lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
It rises linearly for ``warmup`` steps and then decays as 1/sqrt(step). ``inverse_sqrt_factor``
is the same curve rescaled to peak at 1 (at step = warmup), so it multiplies a peak learning rate
``lr``: lr_t = lr * min(step / warmup, sqrt(warmup / step)). ``warmup = 0`` means no warm-up and no
decay: the factor is 1 at every step (the "no warm-up" arm of Xiong et al. 2020, Sec. 3).
Steps count from 1 (the first optimizer update); step 0 is treated as step 1.
"""
from __future__ import annotations

import math


def noam_lr(step: int, d_model: int, warmup: int) -> float:
    """Vaswani et al. 2017, Eq. 3 (``warmup`` > 0)."""
    step = max(int(step), 1)
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def inverse_sqrt_factor(step: int, warmup: int) -> float:
    """Multiplier of the peak learning rate: min(step / warmup, sqrt(warmup / step)); 1 if warmup = 0."""
    if warmup <= 0:
        return 1.0
    step = max(int(step), 1)
    return min(step / warmup, math.sqrt(warmup / step))
