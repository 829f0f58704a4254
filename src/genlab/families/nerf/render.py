"""Discrete volume rendering and its gradient (Mildenhall et al. 2020, Eq. 3).

Along a ray with samples t_1 < ... < t_N, densities sigma_i >= 0, colours c_i and spacings delta_i:

    alpha_i = 1 - exp(-sigma_i delta_i)                       opacity of segment i
    T_i     = exp(-sum_{j<i} sigma_j delta_j)                 transmittance up to segment i
    w_i     = T_i alpha_i                                     weight of sample i
    C_hat   = sum_i w_i c_i + T_{N+1} b                       colour over background b      (Eq. 3)
    depth   = sum_i w_i t_i,    opacity A = sum_i w_i = 1 - T_{N+1}

(without a background, b = 0: the rendering of Eq. 3 exactly). The loss over a batch of rays is
L = sum_r |C_hat(r) - C(r)|^2 (Eq. 6).

Its gradient, derived by hand by the chain rule, with g = dL/dC_hat (= 2 (C_hat - C) for that loss):

    dL/dc_i     = g w_i                                                              (grad c)
    dL/dsigma_i = delta_i [ T_{i+1} g.c_i - sum_{k>i} w_k g.c_k - T_{N+1} g.b ]        (grad sigma)

using d alpha_i / d sigma_i = delta_i (1 - alpha_i), T_i (1 - alpha_i) = T_{i+1} and
d T_k / d sigma_i = -delta_i T_k for k > i (the background term is zero when b = 0, which gives the
form T_i delta_i (1 - alpha_i) c_i - delta_i sum_{k>i} T_k alpha_k c_k).

``VolumeRenderColor`` is an autograd Function whose backward is these two formulas: it keeps only its
inputs (sigma, c, delta, b) and recomputes T in the backward pass, where autograd's graph keeps every
intermediate of the forward pass (alpha, the cumulative sums, T, w, w c).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rendered:
    """What the renderer returns for R rays of N samples."""
    rgb: torch.Tensor          # [R, 3] colour over the background
    depth: torch.Tensor        # [R] expected termination distance sum_i w_i t_i (0 where nothing is hit)
    opacity: torch.Tensor      # [R] accumulated opacity A = sum_i w_i
    weights: torch.Tensor      # [R, N] w_i = T_i alpha_i


# ----------------------------------------------------------------- Eq. 3, term by term
def alphas(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """alpha_i = 1 - exp(-sigma_i delta_i), [R, N]."""
    return -torch.expm1(-sigma * deltas)


def transmittance(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """T_1..T_{N+1}, [R, N] -> [R, N+1]: exp of minus the exclusive cumulative optical depth."""
    tau = torch.cumsum(sigma * deltas, dim=-1)                                       # [R, N]
    return torch.exp(-torch.cat([torch.zeros_like(tau[..., :1]), tau], dim=-1))    # [R, N+1]


def render_weights(sigma: torch.Tensor, deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w [R, N], T_{N+1} [R]) with w_i = T_i alpha_i."""
    T = transmittance(sigma, deltas)
    return T[..., :-1] * alphas(sigma, deltas), T[..., -1]


def _background(background, rgb: torch.Tensor) -> torch.Tensor:
    """b as [R, 3] (zeros when None)."""
    if background is None:
        return rgb.new_zeros(rgb.shape[0], 3)
    b = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    return b.expand(rgb.shape[0], 3)


def volume_render(sigma: torch.Tensor, rgb: torch.Tensor, deltas: torch.Tensor, t: torch.Tensor | None = None,
                  background=None) -> Rendered:
    """Eq. 3 with autograd: sigma [R, N], rgb [R, N, 3], deltas [R, N], t [R, N], background [3] or [R, 3]."""
    w, t_last = render_weights(sigma, deltas)
    b = _background(background, rgb)
    color = (w[..., None] * rgb).sum(dim=-2) + t_last[..., None] * b             # [R, N, 3] -> [R, 3]
    depth = (w * t).sum(dim=-1) if t is not None else torch.zeros_like(t_last)
    return Rendered(color, depth, 1.0 - t_last, w)


# ----------------------------------------------------------------- the hand-derived gradient
def grad_color(sigma: torch.Tensor, deltas: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """dL/dc_i = g w_i, [R, N, 3] (grad c), for an upstream gradient g = dL/dC_hat [R, 3]."""
    w, _ = render_weights(sigma, deltas)
    return w[..., None] * g[..., None, :]


def grad_sigma(sigma: torch.Tensor, rgb: torch.Tensor, deltas: torch.Tensor, g: torch.Tensor,
               background=None) -> torch.Tensor:
    """dL/dsigma_i = delta_i [T_{i+1} g.c_i - sum_{k>i} w_k g.c_k - T_{N+1} g.b], [R, N] (grad sigma)."""
    T = transmittance(sigma, deltas)                                             # [R, N+1]
    w = T[..., :-1] * alphas(sigma, deltas)                                     # [R, N]
    gc = (rgb * g[..., None, :]).sum(dim=-1)                                     # g.c_i, [R, N]
    wgc = w * gc
    after = torch.flip(torch.cumsum(torch.flip(wgc, [-1]), dim=-1), [-1]) - wgc  # sum_{k>i} w_k g.c_k, [R, N]
    gb = (_background(background, rgb) * g).sum(dim=-1, keepdim=True)            # g.b, [R, 1]
    return deltas * (T[..., 1:] * gc - after - T[..., -1:] * gb)


def mse_loss_grads(sigma: torch.Tensor, rgb: torch.Tensor, deltas: torch.Tensor, target: torch.Tensor,
                   background=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The hand-derived (dL/dc_i, dL/dsigma_i) for L = sum_r |C_hat(r) - C(r)|^2: g = 2 (C_hat - C)."""
    w, t_last = render_weights(sigma, deltas)
    c_hat = (w[..., None] * rgb).sum(dim=-2) + t_last[..., None] * _background(background, rgb)
    g = 2.0 * (c_hat - target)                                                   # dL/dC_hat, [R, 3]
    return grad_color(sigma, deltas, g), grad_sigma(sigma, rgb, deltas, g, background)


class VolumeRenderColor(torch.autograd.Function):
    """C_hat of Eq. 3 whose backward pass is the analytic gradient (grad c), (grad sigma).

    Saves sigma, rgb, deltas and b; the transmittance is recomputed in backward. No gradient flows to
    deltas or to the background.
    """

    @staticmethod
    def forward(ctx, sigma, rgb, deltas, background):
        with torch.no_grad():
            w, t_last = render_weights(sigma, deltas)
            color = (w[..., None] * rgb).sum(dim=-2) + t_last[..., None] * background   # [R, 3]
        ctx.save_for_backward(sigma, rgb, deltas, background)
        return color

    @staticmethod
    def backward(ctx, g):
        sigma, rgb, deltas, background = ctx.saved_tensors
        T = transmittance(sigma, deltas)                                         # recomputed, [R, N+1]
        w = T[..., :-1] - T[..., 1:]                                             # T_i alpha_i = T_i - T_{i+1}
        d_rgb = w[..., None] * g[..., None, :] if ctx.needs_input_grad[1] else None          # (grad c)
        d_sigma = None
        if ctx.needs_input_grad[0]:                                              # (grad sigma)
            gc = (rgb * g[..., None, :]).sum(dim=-1)                             # g.c_i, [R, N]
            wgc = w * gc
            after = wgc.sum(dim=-1, keepdim=True) - torch.cumsum(wgc, dim=-1)    # sum_{k>i} w_k g.c_k
            gb = (background * g).sum(dim=-1, keepdim=True)                      # g.b, [R, 1]
            d_sigma = deltas * (T[..., 1:] * gc - after - T[..., -1:] * gb)
        return d_sigma, d_rgb, None, None


def render_color(sigma: torch.Tensor, rgb: torch.Tensor, deltas: torch.Tensor, background=None,
                 analytic: bool = True) -> torch.Tensor:
    """C_hat [R, 3]; ``analytic`` uses ``VolumeRenderColor`` (the hand-derived backward), else autograd."""
    if not analytic:
        return volume_render(sigma, rgb, deltas, background=background).rgb
    return VolumeRenderColor.apply(sigma, rgb, deltas, _background(background, rgb).contiguous())
