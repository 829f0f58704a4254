"""Continuous normalizing flows: traces against autograd Jacobians, the linear field's closed form
(matrix exponential), Hutchinson's mean and variance, normalisation, invertibility, adjoint gradients."""
import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from genlab.data import load_dataset
from genlab.experiments import run_experiment
from genlab.families.flows.cnf import (
    AugmentedDynamics,
    ConcatField,
    draw_probe,
    exact_trace,
    hutchinson_trace,
    hutchinson_variance,
    integrate,
)
from genlab.model import build_model


class Linear(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t, z):
        return z @ self.a.T


def field_and_point(dim=5, seed=0):
    torch.manual_seed(seed)
    field = ConcatField(dim, (32, 32), "tanh").double()
    z = torch.randn(4, dim, dtype=torch.float64, requires_grad=True)
    return field, z


def jacobians(field, z):
    return torch.stack([jacobian(lambda p: field(0.3, p.unsqueeze(0))[0], zi.detach()) for zi in z])


@pytest.mark.unit
def test_exact_trace_matches_the_autograd_jacobian():
    field, z = field_and_point()
    f = field(0.3, z)
    expected = torch.diagonal(jacobians(field, z), dim1=-2, dim2=-1).sum(-1)
    assert torch.allclose(exact_trace(f, z), expected, atol=1e-12)


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_mean_is_the_trace_within_its_standard_error(kind):
    field, z = field_and_point()
    f = field(0.3, z)
    jac = jacobians(field, z)
    exact = torch.diagonal(jac, dim1=-2, dim2=-1).sum(-1)
    m = 4000
    probes = draw_probe((m, *z.shape), kind, torch.Generator().manual_seed(1)).double()
    singles = torch.stack([hutchinson_trace(f, z, e, create_graph=False) for e in probes[:500]])
    mean = hutchinson_trace(f, z, probes, create_graph=False)
    var_one = hutchinson_variance(jac, kind)
    assert ((mean - exact).abs() < 4 * torch.sqrt(var_one / m)).all()
    # the empirical one-probe variance agrees with the closed form (500 draws: ~6% relative error)
    assert torch.allclose(singles.var(0), var_one, rtol=0.3)


@pytest.mark.unit
def test_rademacher_variance_is_zero_for_a_diagonal_jacobian():
    a = torch.diag(torch.tensor([1.0, -2.0, 3.0]))
    assert float(hutchinson_variance(a, "rademacher")) == pytest.approx(0.0)
    assert float(hutchinson_variance(a, "gaussian")) == pytest.approx(2 * 14.0)


@pytest.mark.unit
def test_linear_field_changes_log_p_by_minus_t_trace():
    torch.manual_seed(0)
    a = torch.randn(3, 3, dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    dyn = AugmentedDynamics(Linear(a), "exact")
    dyn.create_graph = False
    times = torch.tensor([0.0, 0.5, 1.5], dtype=torch.float64)
    zs, deltas = integrate(dyn, (x, x.new_zeros(5)), times, "dopri5", 1e-9, 1e-11, 1)
    for t, z, delta in zip(times, zs, deltas):
        assert torch.allclose(delta, torch.full_like(delta, -float(t) * float(torch.trace(a))), atol=1e-8)
        assert torch.allclose(z, x @ torch.linalg.matrix_exp(t * a).T, atol=1e-7)


@pytest.mark.unit
def test_cnf_log_prob_with_a_linear_field_matches_the_closed_form():
    """z(T) = expm(TA) x, so log p(x) = log N(expm(TA) x; 0, I) + T tr(A) (torch.distributions oracle)."""
    info = load_dataset("gmm2d", "test", n=10).info
    net = build_model("cnf", info, solver="dopri5", rtol=1e-9, atol=1e-11, T=0.7).double().eval()
    a = torch.tensor([[0.3, -1.0], [0.5, -0.2]], dtype=torch.float64)
    net.dynamics.field = Linear(a)
    x = torch.randn(6, 2, dtype=torch.float64)
    z = x @ torch.linalg.matrix_exp(0.7 * a).T
    base = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    expected = base.log_prob(z) + 0.7 * torch.trace(a)
    assert torch.allclose(net.log_prob(x), expected, atol=1e-7)


@pytest.mark.unit
def test_cnf_density_integrates_to_one_and_sampling_inverts_the_flow():
    torch.manual_seed(0)
    info = load_dataset("8gaussians", "test", n=10).info
    net = build_model("cnf", info, hidden=(16, 16), steps=6).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)          # a field that visibly deforms the Gaussian
        xs = torch.linspace(-7, 7, 141)
        pts = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
        mass = net.log_prob(pts).exp().sum() * (xs[1] - xs[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=0.01)
    z = torch.randn(20, 2)
    x = net.trajectory(z, torch.tensor([net.config.T, 0.0]))[-1]
    back = net.trajectory(x, torch.tensor([0.0, net.config.T]))[-1]
    assert torch.allclose(back, z, atol=1e-3)


@pytest.mark.slow
def test_hutchinson_training_loss_is_unbiased_for_the_exact_one():
    torch.manual_seed(0)
    d = load_dataset("gmm2d", "train", n=64)
    exact = build_model("cnf", d.info, hidden=(16,), trace="exact", steps=4)
    hutch = build_model("cnf", d.info, hidden=(16,), trace="hutchinson", probe="gaussian", steps=4)
    hutch.load_state_dict(exact.state_dict())
    x = d.tensors[0][:8]
    reference = exact.log_prob(x).detach()
    draws = torch.stack([hutch.log_prob(x).detach() for _ in range(200)])
    assert ((draws.mean(0) - reference).abs() < 4 * draws.std(0) / math.sqrt(200) + 1e-5).all()


@pytest.mark.unit
def test_adjoint_gradients_match_direct_backpropagation():
    torch.manual_seed(0)
    d = load_dataset("gmm2d", "train", n=16)
    direct = build_model("cnf", d.info, hidden=(8,), solver="dopri5", rtol=1e-8, atol=1e-8).double().train()
    adjoint = build_model("cnf", d.info, hidden=(8,), solver="dopri5", rtol=1e-8, atol=1e-8, adjoint=True).double()
    adjoint.load_state_dict(direct.state_dict())
    adjoint.train()
    x = d.tensors[0].double()
    grads = []
    for net in (direct, adjoint):
        net.zero_grad()
        net.loss((x,))[0].backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.slow
def test_cnf_change_of_variables_quick(tmp_path):
    s = run_experiment("cnf-change-of-variables", tmp_path, quick=True)
    assert s["linear_field_max_abs_error"] < 1e-8
    assert s["neural_field"]["max_abs_error"] < 1e-4
    assert {"rademacher", "gaussian", "probes", "exact_trace"} <= set(s["hutchinson_variance"])
    assert (tmp_path / "figures" / "hutchinson_variance.png").exists()


@pytest.mark.slow
def test_cnf_toy_quick(tmp_path):
    s = run_experiment("cnf-toy", tmp_path, quick=True)
    row = s["results"][0]
    assert row["model"] == "cnf" and {"nll_nats", "data_nll_nats", "gap_nats", "train_time_s"} <= set(row)
    assert (tmp_path / "figures" / "cnf-8gaussians" / "density.png").exists()


@pytest.mark.slow
def test_evaluation_uses_an_adaptive_solver_whose_density_integrates_to_one():
    """Issue 10 item 5: a CNF trained with a coarse fixed-step solver is still evaluated accurately."""
    torch.manual_seed(0)
    info = load_dataset("8gaussians", "test", n=10).info
    net = build_model("cnf", info, hidden=(16, 16), solver="euler", steps=2).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
        xs = torch.linspace(-7, 7, 141)
        pts = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
        cell = (xs[1] - xs[0]) ** 2
        coarse = float(net.log_prob(pts).exp().sum() * cell)              # the training solver
        nll = net.eval_metrics((pts,))["nll_nats"]
        evaluated = float((-nll).exp().sum() * cell)
    assert nll.shape == (len(pts),)
    assert abs(coarse - 1.0) > 0.05                                      # euler, 2 steps: not a density
    assert evaluated == pytest.approx(1.0, abs=2e-3)
