"""Experiments of the flow family: the instantaneous change of variables checked numerically,
exact vs Hutchinson traces, and flows / CNFs trained on toy sets and images."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.cnf import (AugmentedDynamics, ConcatField, draw_probe, exact_trace, hutchinson_trace,
                          hutchinson_variance, integrate)
from ..viz.figures import line_plot
from .registry import register_experiment

FAMILY = "flows"


def train_and_eval(out: Path, model: str, data: str, data_options: dict, **options) -> dict:
    """Train ``model`` on ``data`` into ``out/runs/MODEL-DATA``, draw its figures, return test metrics."""
    import genlab
    from ..eval import evaluate
    from ..viz import make_figures
    run_dir = out / "runs" / f"{model}-{data}"
    start = time.perf_counter()
    run = genlab.train(model, data, run_dir, data_options=data_options, progress=False, **options)
    train_time = time.perf_counter() - start
    metrics = evaluate(run, extras=False)["metrics"]
    from ..eval.data_nll import data_nll
    metrics |= data_nll(run, run.data("test"), {}) or {}
    make_figures(run, out / "figures" / f"{model}-{data}")
    row = {"model": model, "data": data, "epochs": run.state.epoch, "train_time_s": round(train_time, 2)}
    row |= {k: round(float(v), 4) for k, v in metrics.items()}
    if "data_nll_nats" in row:
        row["gap_nats"] = round(row["nll_nats"] - row["data_nll_nats"], 4)
    return row


# ----------------------------------------------------------------- cnf-change-of-variables
class LinearField(nn.Module):
    """f(z, t) = A z: the flow map is expm(tA), so log p changes by -t tr(A) exactly."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t, z):
        return z @ self.a.T


def delta_along_ode(field: nn.Module, x: torch.Tensor, T: float, trace: str = "exact", probe=None,
                    rtol: float = 1e-8, atol: float = 1e-10) -> torch.Tensor:
    """delta(T) = -int_0^T tr(df/dz) dt along z(t) from z(0) = x (dopri5, tight tolerances)."""
    dyn = AugmentedDynamics(field, trace)
    dyn.probe, dyn.create_graph = probe, False
    _, deltas = integrate(dyn, (x, x.new_zeros(len(x))), torch.tensor([0.0, T], dtype=x.dtype), "dopri5",
                          rtol, atol, 1)
    return deltas[-1]


def flow_map_logdet(field: nn.Module, x: torch.Tensor, T: float, rtol: float = 1e-8, atol: float = 1e-10):
    """log|det d phi_T / dx| of the ODE solution map phi_T, its Jacobian by
    torch.autograd.functional.jacobian through the solver."""
    times = torch.tensor([0.0, T], dtype=x.dtype)

    def phi(point):
        return integrate(field, point.unsqueeze(0), times, "dopri5", rtol, atol, 1)[-1][0]
    out = []
    for point in x:
        jac = torch.autograd.functional.jacobian(phi, point)
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def hutchinson_study(dim: int, probes: list[int], repeats: int, seed: int = 0) -> dict:
    """Variance of the m-probe Hutchinson estimate of tr(df/dz) at one point, for a random field in
    ``dim`` dimensions, against the closed form Var_1 / m."""
    torch.manual_seed(seed)
    field = ConcatField(dim, (64, 64), "tanh").double()
    z = torch.randn(1, dim, dtype=torch.float64, requires_grad=True)
    f = field(0.5, z)
    exact = float(exact_trace(f, z, create_graph=False))
    jac = torch.autograd.functional.jacobian(lambda p: field(0.5, p.unsqueeze(0))[0], z[0].detach())
    result = {"dim": dim, "exact_trace": exact, "probes": probes}
    gen = torch.Generator().manual_seed(seed + 1)
    for kind in ("rademacher", "gaussian"):
        var_one = float(hutchinson_variance(jac, kind))
        est = [[float(hutchinson_trace(f, z, draw_probe((m, 1, dim), kind, gen).double(), create_graph=False))
                for _ in range(repeats)] for m in probes]
        result[kind] = {"mean": [float(np.mean(e)) for e in est], "variance": [float(np.var(e, ddof=1)) for e in est],
                        "theory_variance": [var_one / m for m in probes]}
    return result


@register_experiment("cnf-change-of-variables",
                     "instantaneous change of variables d log p/dt = -tr(df/dz) checked against log|det| of "
                     "the ODE map's autograd Jacobian; exact vs Hutchinson traces (000 P2)", FAMILY)
def cnf_change_of_variables(out: Path, quick: bool, data_dir=None) -> dict:
    torch.manual_seed(0)
    T = 1.0
    # 1. linear field: delta(T) = -T tr(A)
    a = torch.randn(2, 2, dtype=torch.float64) * 0.7
    x = torch.randn(4, 2, dtype=torch.float64)
    linear = (delta_along_ode(LinearField(a), x, T) - (-T * torch.trace(a))).abs().max()
    # 2. a neural field: delta(T) vs -log|det d phi_T/dx|
    field = ConcatField(2, (32, 32), "tanh").double()
    x = torch.randn(3 if quick else 10, 2, dtype=torch.float64) * 1.5
    delta = delta_along_ode(field, x, T)
    logdet = flow_map_logdet(field, x, T)
    # 3. Hutchinson along the whole ODE: the mean over solves approaches the exact delta(T)
    solves = 20 if quick else 200
    hutch = torch.stack([delta_along_ode(field, x, T, "hutchinson", draw_probe(x.shape, "rademacher").double(),
                                         1e-6, 1e-8) for _ in range(solves)])
    # 4. variance vs number of probes
    probes = [1, 2, 4, 8, 16, 32] if quick else [1, 2, 4, 8, 16, 32, 64, 128]
    study = hutchinson_study(16, probes, 60 if quick else 400)
    series = {f"{k} (empirical)": (probes, study[k]["variance"]) for k in ("rademacher", "gaussian")}
    series |= {f"{k} (2||S||_F^2 / m)" if k == "gaussian" else f"{k} (theory / m)":
               (probes, study[k]["theory_variance"]) for k in ("rademacher", "gaussian")}
    fig = line_plot(series, out / "figures" / "hutchinson_variance.png", logx=True, logy=True,
                    title=f"Hutchinson trace estimator, D={study['dim']}", xlabel="probes m", ylabel="variance")
    return {
        "linear_field_max_abs_error": float(linear),
        "neural_field": {"delta_T": delta.tolist(), "minus_logdet_jacobian": (-logdet).tolist(),
                         "max_abs_error": float((delta + logdet).abs().max())},
        "hutchinson_delta": {"solves": solves, "mean": hutch.mean(0).tolist(),
                             "std_error": (hutch.std(0) / math.sqrt(solves)).tolist()},
        "hutchinson_variance": study, "figures": [str(fig.relative_to(out))],
    }


# ----------------------------------------------------------------- training experiments
TOY_2D = ["8gaussians", "checkerboard", "gmm2d", "moons", "circles", "pinwheel", "2spirals"]


@register_experiment("flow-toy", "invertible-MLP (003 P4) and RealNVP flows on the toy sets: test NLL vs the "
                     "true density's, density maps, samples, transformations", FAMILY)
def flow_toy(out: Path, quick: bool, data_dir=None) -> dict:
    sets = ["8gaussians"] if quick else TOY_2D + ["gmm1d"]
    n, epochs = (2000, 15) if quick else (10000, 60)
    rows = []
    for data in sets:
        for model in ("invertible-mlp", "realnvp"):
            if model == "realnvp" and data == "gmm1d":
                continue
            rows.append(train_and_eval(out, model, data, {"n": n}, epochs=epochs, batch_size=256, lr=3e-3,
                                       eval_every=0))
    return {"results": rows}


@register_experiment("cnf-toy", "continuous normalizing flow (FFJORD) on the toy sets, exact trace in 2-D", FAMILY)
def cnf_toy(out: Path, quick: bool, data_dir=None) -> dict:
    sets = ["8gaussians"] if quick else ["8gaussians", "checkerboard", "gmm2d", "moons", "pinwheel", "2spirals"]
    n, epochs = (500, 3) if quick else (5000, 40)
    opts = dict(hidden=(32, 32), steps=4) if quick else dict(hidden=(64, 64, 64), steps=8)
    rows = [train_and_eval(out, "cnf", data, {"n": n}, epochs=epochs, batch_size=256, lr=3e-3, eval_every=0, **opts)
            for data in sets]
    return {"results": rows}


@register_experiment("flow-mnist", "RealNVP on MNIST (quick: digits): uniform dequantization, logit transform, "
                     "bits/dim of the 8-bit (digits: 17-level) discrete data", FAMILY)
def flow_mnist(out: Path, quick: bool, data_dir=None) -> dict:
    if quick:
        data, dopts, opts = "digits", {}, dict(epochs=3, channels=16, couplings=4)
    else:
        data, dopts, opts = "mnist", {"data_dir": data_dir}, dict(epochs=5, channels=32, couplings=8)
    row = train_and_eval(out, "realnvp", data, dopts, batch_size=64, lr=1e-3, eval_every=0, **opts)
    return {"results": [row], "bpd_convention": "(-log p(u) + D log L) / (D log 2), u = (k + U)/L uniformly "
                                               "dequantized, L grey levels (256 for MNIST, 17 for digits)"}
