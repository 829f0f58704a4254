"""Learning-rate schedules as pure functions of the step: lr(step) = lr * factor(step).

Pure functions of the step (not stateful schedulers) keep resume exact: the factor is recomputed
from the checkpointed step (and epoch: epochs may differ in length, so the epoch is passed, not
derived from the step).
"""
from __future__ import annotations

import math


def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1,
              gamma: float = 0.95, epoch: int = 0) -> float:
    """The multiplier of the peak lr at optimizer step ``step`` (0-based), in epoch ``epoch`` (0-based).

    * ``constant``: linear warm-up from 1/warmup to 1, then 1.
    * ``warmup-cosine``: linear warm-up, then cosine from 1 to ``min_lr_ratio`` at ``total_steps``
      (Loshchilov & Hutter 2017, Eq. 5).
    * ``inverse-sqrt``: min((s+1)/w, sqrt(w/(s+1))) -- the schedule of Vaswani et al. 2017, Eq. 3,
      normalised so its peak (at s+1 = w) is 1; without warm-up 1/sqrt(s+1).
    * ``exponential``: gamma ** epoch.
    """
    s = step + 1
    warm = min(1.0, s / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "constant":
        return warm
    if schedule == "warmup-cosine":
        if s <= warmup_steps:
            return warm
        progress = min(1.0, (s - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "inverse-sqrt":
        return min(s / warmup_steps, math.sqrt(warmup_steps / s)) if warmup_steps > 0 else 1 / math.sqrt(s)
    if schedule == "exponential":
        return warm * gamma ** epoch
    raise ValueError(f"unknown schedule {schedule!r}")
