"""Where to evaluate the field along each ray (Mildenhall et al. 2020, Sec. 4 and 5.2).

Stratified sampling (Eq. 2): split [t_n, t_f] into N equal bins and draw one depth uniformly in each,

    t_i ~ U[t_n + (i - 1)/N (t_f - t_n),  t_n + i/N (t_f - t_n)],

so that over training the field is queried at continuous positions. Deterministic mode (evaluation)
takes the left edge of every bin, t_i = t_n + (i - 1)/N (t_f - t_n).

Hierarchical sampling (Sec. 5.2): the coarse weights w_i define a piecewise-constant pdf over the
bins, w_hat_i = w_i / sum_j w_j; N_f more depths are drawn from it by inverse transform sampling
(t = F^-1(u), u ~ U[0, 1), F the piecewise-linear CDF), concentrating samples where the coarse
pass found matter.
"""
from __future__ import annotations

import torch


def stratified_samples(near: torch.Tensor | float, far: torch.Tensor | float, n: int, n_rays: int,
                       perturb: bool = True, generator: torch.Generator | None = None,
                       device=None, dtype=torch.float32) -> torch.Tensor:
    """Depths [R, n] on [near, far] (scalars or per-ray [R]): one per bin, uniform within it (Eq. 2)."""
    near = torch.as_tensor(near, dtype=dtype, device=device).expand(n_rays)[:, None]   # [R] -> [R, 1]
    far = torch.as_tensor(far, dtype=dtype, device=device).expand(n_rays)[:, None]     # [R] -> [R, 1]
    k = torch.arange(n, dtype=dtype, device=device)                                     # [n]
    u = (torch.rand(n_rays, n, generator=generator, device=device, dtype=dtype) if perturb
         else torch.zeros(n_rays, n, device=device, dtype=dtype))
    return near + (far - near) * (k + u) / n


def deltas_from_t(t: torch.Tensor, far: torch.Tensor | float) -> torch.Tensor:
    """delta_i = t_{i+1} - t_i with t_{N+1} = t_f (Mildenhall et al. 2020, Eq. 3); t: [R, N] sorted -> [R, N]."""
    far = torch.as_tensor(far, dtype=t.dtype, device=t.device).expand(t.shape[:-1])[..., None]  # [R] -> [R, 1]
    return torch.diff(t, dim=-1, append=far)


def sample_pdf(edges: torch.Tensor, weights: torch.Tensor, n: int, deterministic: bool = False,
               generator: torch.Generator | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Inverse-CDF samples [R, n] from the piecewise-constant pdf of ``weights`` [R, M] over bins ``edges`` [R, M+1].

    Each bin gets probability (w_i + eps) / sum_j (w_j + eps) (eps keeps an all-zero ray well defined),
    spread uniformly over the bin. Deterministic mode uses the quantiles u = (k + 1/2) / n.
    """
    R, M = weights.shape
    w = weights.detach() + eps
    pdf = w / w.sum(dim=-1, keepdim=True)                                               # [R, M]
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # [R, M+1]
    cdf[:, -1] = 1.0
    if deterministic:
        u = ((torch.arange(n, dtype=w.dtype, device=w.device) + 0.5) / n).expand(R, n).contiguous()
    else:
        u = torch.rand(R, n, generator=generator, dtype=w.dtype, device=w.device)
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, M)                            # [R, n] bin index + 1
    c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    e0, e1 = edges.detach().gather(1, idx - 1), edges.detach().gather(1, idx)
    frac = ((u - c0) / (c1 - c0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return e0 + frac * (e1 - e0)
