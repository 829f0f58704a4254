"""Classifier-free guidance, negative prompts, and prompts by class name.

Classifier-free guidance (Ho & Salimans 2022, Eq. 6, written with w = 1 + their w):

    eps~(x_t, c) = eps(x_t, u) + w (eps(x_t, c) - eps(x_t, u))

where u is the null token (a class label dropped during training). A negative prompt replaces u by
the class to steer away from: the sample moves towards c and away from the negative class (the way
diffusers' Stable Diffusion pipeline uses ``negative_prompt``). w = 1 is the plain
conditional model; w = 0 the unconditional one (or the negative class).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from genlab.errors import ConfigError

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION_NAMES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot")
CLASS_NAMES = {"digits": DIGIT_NAMES, "mnist": DIGIT_NAMES, "fashion-mnist": FASHION_NAMES}
_ALIASES = {"t-shirt": 0, "tshirt": 0, "top": 0, "shirt/top": 0, "trousers": 1, "boot": 9, "ankle-boot": 9,
            "sneakers": 7, "sandals": 5}


def class_names(dataset: str, num_classes: int) -> tuple[str, ...]:
    """The names of a dataset's classes (digits for unknown datasets with 10 classes, else the indices)."""
    if dataset in CLASS_NAMES:
        return CLASS_NAMES[dataset]
    return DIGIT_NAMES if num_classes == 10 else tuple(str(i) for i in range(num_classes))


def resolve_prompt(prompt: str, names: tuple[str, ...]) -> int:
    """The class index of ``prompt``: its number ("7"), its name ("seven", "Ankle boot") or an alias."""
    key = prompt.strip().lower()
    if key.isdigit() and int(key) < len(names):
        return int(key)
    lowered = [n.lower() for n in names]
    if key in lowered:
        return lowered.index(key)
    if names is FASHION_NAMES and key in _ALIASES:
        return _ALIASES[key]
    raise ConfigError(f"unknown prompt {prompt!r}; this model knows: "
                      f"{', '.join(f'{i} ({n})' for i, n in enumerate(names))}")


def classifier_free_guidance(model: Callable[..., torch.Tensor], x: torch.Tensor, t, cond: torch.Tensor,
                             uncond: torch.Tensor, w: float) -> torch.Tensor:
    """eps(x, uncond) + w (eps(x, cond) - eps(x, uncond)), both branches in one batched call
    (Ho & Salimans 2022, Eq. 6; ``uncond`` is the null token or a negative prompt's class)."""
    out = model(torch.cat([x, x]), t, torch.cat([uncond, cond]))              # [2B, ...]
    out_u, out_c = out.chunk(2)                                               # [2B, ...] -> 2 x [B, ...]
    return out_u + w * (out_c - out_u)
