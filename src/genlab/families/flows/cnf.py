"""Continuous normalizing flows (Chen et al. 2018; FFJORD, Grathwohl et al. 2019).

dz/dt = f(z, t) with a neural f. The instantaneous change of variables (Chen et al. 2018, Theorem 1):

  d/dt log p(z(t)) = -tr(df/dz(z(t), t))

We integrate the augmented state (z, delta) from t = 0 (data x) to t = T (base N(0, I)):

  dz/dt = f(z, t),   d delta/dt = -tr(df/dz),   z(0) = x,  delta(0) = 0
  log p(x) = log N(z(T); 0, I) - delta(T)

The trace is exact (D backward passes, ``exact_trace``) or the Hutchinson estimator
tr(A) = E_e[e^T A e] with E[e e^T] = I (Rademacher or Gaussian probes, ``hutchinson_trace``),
one probe drawn per solve as in FFJORD. Its variance for one probe is 2 ||(A + A^T)/2||_F^2
(Gaussian) and 2 (||(A + A^T)/2||_F^2 - sum_i A_ii^2) (Rademacher). Solved with torchdiffeq's
``odeint`` (optionally the adjoint method). Samples integrate z backwards from T to 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genlab.abilities import HasStages, HasTrajectory, LogProb, Samples
from genlab.config import field, require
from genlab.data.registry import DataInfo
from genlab.families.flows.bijections import LogitTransform
from genlab.families.flows.exact import ExactLikelihoodModel
from genlab.maths.densities import bits_per_dim, dequantized_nll, standard_normal_log_prob, to_levels
from genlab.model import register_model
from genlab.nn.blocks import activation


# ----------------------------------------------------------------- traces of the Jacobian
def exact_trace(f: torch.Tensor, z: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """tr(df/dz) per example by D vector-Jacobian products (one per diagonal entry)."""
    total = f.new_zeros(len(f))
    for i in range(f.shape[1]):
        grad_i = torch.autograd.grad(f[:, i].sum(), z, create_graph=create_graph, retain_graph=True)[0]
        total = total + grad_i[:, i]
    return total


def hutchinson_trace(f: torch.Tensor, z: torch.Tensor, probe: torch.Tensor,
                     create_graph: bool = True) -> torch.Tensor:
    """Unbiased tr(df/dz) ~ e^T (df/dz) e for probe e with E[e e^T] = I (one vector-Jacobian product).
    ``probe`` may carry a leading dimension of m probes: the estimate is then their mean."""
    probes = probe if probe.dim() == f.dim() + 1 else probe.unsqueeze(0)
    total = f.new_zeros(len(f))
    for e in probes:
        vjp = torch.autograd.grad(f, z, e, create_graph=create_graph, retain_graph=True)[0]
        total = total + (vjp * e).flatten(1).sum(-1)
    return total / len(probes)


def draw_probe(shape, kind: str, generator=None, device=None) -> torch.Tensor:
    """Rademacher (+-1 with prob 1/2) or standard Gaussian probe vectors."""
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator, device=device).float() * 2 - 1
    return torch.randn(shape, generator=generator, device=device)


def hutchinson_variance(jac: torch.Tensor, kind: str) -> torch.Tensor:
    """Variance of the one-probe estimator e^T A e: 2||S||_F^2 (Gaussian), 2(||S||_F^2 - sum A_ii^2)
    (Rademacher), S = (A + A^T)/2."""
    sym = 0.5 * (jac + jac.transpose(-1, -2))
    fro = (sym ** 2).sum((-1, -2))
    if kind == "gaussian":
        return 2 * fro
    return 2 * (fro - (torch.diagonal(jac, dim1=-2, dim2=-1) ** 2).sum(-1))


# ----------------------------------------------------------------- the vector field
class ConcatField(nn.Module):
    """f(z, t) = MLP([z, t]): the time is appended to the input of every layer (FFJORD's concat)."""

    def __init__(self, dim: int, hidden, act: str):
        super().__init__()
        sizes = [dim, *hidden, dim]
        self.layers = nn.ModuleList(nn.Linear(a + 1, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = activation(act)

    def forward(self, t, z):
        tt = torch.as_tensor(t, dtype=z.dtype, device=z.device).expand(len(z), 1)
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(torch.cat([h, tt], 1))
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h


class AugmentedDynamics(nn.Module):
    """d(z, delta)/dt = (f(z, t), -tr(df/dz)) with the exact trace or a fixed Hutchinson probe."""

    def __init__(self, field_net: nn.Module, trace: str = "exact"):
        super().__init__()
        self.field = field_net
        self.trace = trace
        self.probe = None
        self.create_graph = True
        self.evaluations = 0

    def forward(self, t, state):
        z, _ = state
        self.evaluations += 1
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            f = self.field(t, z)
            if self.trace == "exact":
                tr = exact_trace(f, z, self.create_graph)
            else:
                tr = hutchinson_trace(f, z, self.probe, self.create_graph)
        if not self.create_graph:
            f, tr = f.detach(), tr.detach()
        return f, -tr


def integrate(fn, state, times, solver: str, rtol: float, atol: float, steps: int, adjoint: bool = False):
    """torchdiffeq's odeint (or odeint_adjoint) with adaptive (dopri5) or fixed-step solvers."""
    import torchdiffeq
    options = {} if solver == "dopri5" else {"step_size": abs(float(times[-1] - times[0])) / steps}
    solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
    kwargs = {"adjoint_params": tuple(fn.parameters())} if adjoint else {}
    return solve(fn, state, times, method=solver, rtol=rtol, atol=atol, options=options, **kwargs)


# ----------------------------------------------------------------- the model
@dataclass
class CNFConfig:
    hidden: tuple[int, ...] = field((64, 64, 64), "hidden sizes of the vector field f(z, t)")
    act: Literal["tanh", "softplus", "silu"] = field("tanh", "activation of f (smooth, so the trace is too)")
    T: float = field(1.0, "integration time")
    trace: Literal["auto", "exact", "hutchinson"] = field("auto", "divergence estimator in training "
                                                          "(auto: exact up to 8 dimensions)")
    probe: Literal["rademacher", "gaussian"] = field("rademacher", "Hutchinson probe distribution")
    solver: Literal["dopri5", "rk4", "midpoint", "euler"] = field("rk4", "ODE solver of training, sampling and "
                                                                  "figures (torchdiffeq method)")
    steps: int = field(8, "steps of fixed-step solvers over [0, T]")
    rtol: float = field(1e-5, "dopri5 relative tolerance")
    atol: float = field(1e-5, "dopri5 absolute tolerance")
    adjoint: bool = field(False, "back-propagate with the adjoint method (memory O(1) in the steps)")
    logit_alpha: float = field(0.05, "images: logit transform squeeze a")

    def validate(self):
        require(self.T > 0, "T must be positive")
        require(self.steps >= 1, "steps must be >= 1")
        require(self.rtol > 0 and self.atol > 0, "rtol and atol must be positive")
        require(all(h > 0 for h in self.hidden), "hidden sizes must be positive")


@dataclass
class CNFEvalConfig:
    solver: Literal["dopri5", "rk4", "midpoint", "euler"] = field(
        "dopri5", "ODE solver of the evaluated log-likelihood (adaptive by default: a fixed-step solver's "
        "density need not integrate to 1)")
    rtol: float = field(1e-6, "relative tolerance of the evaluation's adaptive solver")
    atol: float = field(1e-6, "absolute tolerance of the evaluation's adaptive solver")
    steps: int = field(32, "steps of a fixed-step evaluation solver over [0, T]")

    def validate(self):
        require(self.rtol > 0 and self.atol > 0, "rtol and atol must be positive")
        require(self.steps >= 1, "steps must be >= 1")


@register_model("cnf", CNFConfig, "continuous normalizing flow (FFJORD): neural ODE, exact or Hutchinson trace",
                data_defaults={}, default_data="8gaussians", eval_config=CNFEvalConfig,
                abilities={Samples, LogProb, HasStages, HasTrajectory}, data_kinds=("image", "points"))
class CNF(ExactLikelihoodModel):
    def __init__(self, config: CNFConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        self.event_shape = tuple(data_info.shape)
        self.logit = LogitTransform(config.logit_alpha) if self.image else None
        self.field = ConcatField(self.dims, config.hidden, config.act)
        trace = config.trace if config.trace != "auto" else ("exact" if self.dims <= 8 else "hutchinson")
        self.dynamics = AugmentedDynamics(self.field, trace)

    def _solve(self, state, t0: float, t1: float, times=None, solver: CNFEvalConfig | None = None):
        c = solver or self.config
        times = torch.tensor([t0, t1]) if times is None else times
        return integrate(self.dynamics, state, times.to(state[0]), c.solver, c.rtol, c.atol, c.steps,
                         self.config.adjoint and self.training)

    def flow_to_base(self, x: torch.Tensor, times=None, solver: CNFEvalConfig | None = None):
        """(z(t), delta(t)) along the ODE from z(0) = x (flattened) at ``times`` (default [0, T]);
        ``solver`` (solver, rtol, atol, steps) overrides the training solver."""
        z0 = x.flatten(1)                                          # [B, *shape] -> [B, D]
        if self.dynamics.trace == "hutchinson":
            self.dynamics.probe = draw_probe(z0.shape, self.config.probe, device=z0.device)
        self.dynamics.create_graph = torch.is_grad_enabled()
        zs, deltas = self._solve((z0, z0.new_zeros(len(z0))), 0.0, self.config.T, times, solver)
        return zs, deltas

    def log_prob(self, x: torch.Tensor, solver: CNFEvalConfig | None = None) -> torch.Tensor:
        """log p(x) = log N(z(T); 0, I) - delta(T) (Chen et al. 2018, Eq. 4; images: of the dequantized u,
        logit Jacobian included), solved with the training solver or ``solver``."""
        extra = 0.0
        if self.image:
            x, extra = self.logit(x)
        zs, deltas = self.flow_to_base(x, solver=solver)
        return standard_normal_log_prob(zs[-1]) - deltas[-1] + extra

    def eval_metrics(self, batch, solver: str = "dopri5", rtol: float = 1e-6, atol: float = 1e-6, steps: int = 32,
                     **options):
        """Per-example ``nll_nats`` (and ``bpd``) [B], the ODE solved by the evaluation solver (adaptive
        dopri5 with tolerances 1e-6 by default), not the training one."""
        cfg = CNFEvalConfig(solver, rtol, atol, steps)
        x = batch[0]
        with torch.no_grad():
            if not self.image:
                nll = -self.log_prob(x, cfg)
            else:
                nll = dequantized_nll(lambda u: self.log_prob(u, cfg), to_levels(x, self.data_info), self.levels)
        out = {"nll_nats": nll}
        if self.image:
            out["bpd"] = bits_per_dim(nll, self.data_info.shape)
        return out

    @torch.no_grad()
    def trajectory(self, z_T: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """z(t) at ``times`` (decreasing from T) integrating dz/dt = f backwards from base samples z_T."""
        c = self.config
        return integrate(self.field, z_T, times.to(z_T), c.solver, c.rtol, c.atol, c.steps)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """z(T) ~ N(0, I), then integrate dz/dt = f from T back to 0."""
        z = torch.randn(n, self.dims, device=next(self.parameters()).device)
        x = self.trajectory(z, torch.tensor([self.config.T, 0.0]))[-1]
        if self.image:
            x, _ = self.logit.inverse(x.view(n, *self.event_shape))          # [n, D] -> [n, *shape]
            return x.clamp(0, 1)
        return x

    def stages(self, x: torch.Tensor, n_times: int = 5) -> list[torch.Tensor]:
        times = torch.linspace(0, self.config.T, n_times)
        with torch.no_grad():
            return list(integrate(self.field, x.flatten(1), times.to(x), self.config.solver, self.config.rtol,
                                  self.config.atol, self.config.steps))
