"""Input encodings of the radiance field (Mildenhall et al. 2020, Fig. 2b).

Positional encoding (Mildenhall et al. 2020, Eq. 4), applied to each coordinate p separately:

    gamma(p) = (sin(2^0 pi p), cos(2^0 pi p), ..., sin(2^{L-1} pi p), cos(2^{L-1} pi p)),

L = 10 for positions and L = 4 for directions in the paper. It lets a ReLU MLP represent high-frequency
detail (Tancik et al. 2020 explain why). The raw input p is kept in front, as in the reference code.

Real spherical harmonics up to degree 2 (9 functions), the view-dependent colour basis of PlenOctrees
(Yu et al. 2021, Eq. 5) and Plenoxels (Fridovich-Keil et al. 2022): an orthonormal basis of functions on
the unit sphere, Y_l^m(d) with the usual real normalisation (int Y Y' dOmega = delta).
"""
from __future__ import annotations

import math

import torch

# The constants sqrt((2l + 1) / 4 pi ...) of the real spherical harmonics in Cartesian form.
SH_C0 = 0.5 / math.sqrt(math.pi)                       # Y_0^0
SH_C1 = math.sqrt(3.0 / (4.0 * math.pi))               # Y_1^{-1,0,1} / (y, z, x)
SH_C2 = (0.5 * math.sqrt(15.0 / math.pi),              # xy, yz, xz
         0.25 * math.sqrt(5.0 / math.pi),              # 3z^2 - 1
         0.25 * math.sqrt(15.0 / math.pi))             # x^2 - y^2


def encoded_size(dim: int, n_freqs: int, include_input: bool = True) -> int:
    """Width of gamma(x) for x of width ``dim``: dim (2 L + 1) with the input kept, else 2 L dim."""
    return dim * (2 * n_freqs + int(include_input))


def positional_encoding(x: torch.Tensor, n_freqs: int, include_input: bool = True) -> torch.Tensor:
    """gamma(x) of Eq. 4 for x [..., D] -> [..., D (2L + 1)] (or [..., 2 L D] without the input).

    Layout: [x, sin(2^0 pi x), cos(2^0 pi x), sin(2^1 pi x), ...], each block of width D.
    """
    freqs = math.pi * 2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)      # [L]
    xf = x[..., None, :] * freqs[:, None]                                                # [..., D] -> [..., L, D]
    enc = torch.stack([torch.sin(xf), torch.cos(xf)], dim=-2)                           # [..., L, 2, D]
    enc = enc.flatten(-3)                                                       # [..., L, 2, D] -> [..., 2 L D]
    return torch.cat([x, enc], dim=-1) if include_input else enc


def sh_basis(d: torch.Tensor, degree: int = 2) -> torch.Tensor:
    """Real spherical harmonics of unit directions d [..., 3] -> [..., (degree + 1)^2], degree 0, 1 or 2.

    Order: (l, m) = (0, 0), (1, -1), (1, 0), (1, 1), (2, -2), (2, -1), (2, 0), (2, 1), (2, 2).
    """
    if degree not in (0, 1, 2):
        raise ValueError(f"sh_basis supports degree 0, 1 or 2, got {degree}")
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [SH_C1 * y, SH_C1 * z, SH_C1 * x]
    if degree >= 2:
        out += [SH_C2[0] * x * y, SH_C2[0] * y * z, SH_C2[1] * (3 * z * z - 1),
                SH_C2[0] * x * z, SH_C2[2] * (x * x - y * y)]
    return torch.stack(out, dim=-1)                                                      # [..., (deg + 1)^2]
