"""Every sampler behind the one contract: step-by-step agreement with diffusers' schedulers (an
independent implementation), and recovery of the data distribution when driven by the closed-form
optimal noise predictor."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from genlab.errors import ConfigError
from genlab.families.diffusion.oracle import GaussianMixture, OracleDenoiser, distribution_errors
from genlab.families.diffusion.samplers import (
    SAMPLERS,
    ddim_step,
    dpmpp_sde_first_order,
    lms_coefficients,
    make_sampler,
    sample_loop,
)
from genlab.families.diffusion.schedule import NoiseSchedule

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread


diffusers = pytest.importorskip("diffusers")

NAMES = list(SAMPLERS)
DIFFUSERS = {name: cls.diffusers_equivalent for name, cls in SAMPLERS.items()}
SECOND_ORDER = {"heun", "lms", "dpm++2m"}
N_ORACLE = 10000
QUANTILES = torch.special.ndtri((torch.arange(N_ORACLE, dtype=torch.float64) + 0.5) / N_ORACLE).float().reshape(-1, 1)


def fake_model(x: torch.Tensor, t) -> torch.Tensor:
    """A fixed nonlinear function of (x, t) standing in for a network."""
    t = float(t)
    return torch.tanh(0.7 * x + 0.3) * (0.5 + t / 2000) + 0.1 * torch.sin(3 * x + t / 100)


def diffusers_scheduler(name: str, beta_schedule: str = "linear", **cfg):
    cls = getattr(diffusers, DIFFUSERS[name])
    cfg = SAMPLERS[name].diffusers_config | cfg
    if name in ("ddpm", "ddim"):
        cfg.setdefault("clip_sample", False)
    return cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule=beta_schedule, **cfg)


def run_diffusers(sched, n, noise, seed, step_kw=None):
    sched.set_timesteps(n)
    accepts_gen = "generator" in inspect.signature(sched.step).parameters
    g = torch.Generator().manual_seed(seed)
    x = noise * sched.init_noise_sigma
    xs, inputs = [], []
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t)
        inputs.append(inp)
        kw = dict(step_kw or {})
        if accepts_gen:
            kw["generator"] = g
        x = sched.step(fake_model(inp, t), t, x, **kw).prev_sample
        xs.append(x)
    return sched.timesteps, xs, inputs


def run_genlab(sampler, n, noise, seed):
    sampler.set_timesteps(n)
    g = torch.Generator().manual_seed(seed)
    x = noise * sampler.init_noise_sigma
    xs, inputs = [], []
    for t in sampler.timesteps:
        inp = sampler.scale_model_input(x, t)
        inputs.append(inp)
        x = sampler.step(fake_model(inp, t), t, x, g)
        xs.append(x)
    return sampler.timesteps, xs, inputs


def assert_same_trajectory(ours, theirs):
    (ts_a, xs_a, in_a), (ts_b, xs_b, in_b) = ours, theirs
    torch.testing.assert_close(ts_a.double(), ts_b.double(), rtol=0, atol=1e-4)
    assert len(xs_a) == len(xs_b)
    for i, (a, b, ia, ib) in enumerate(zip(xs_a, xs_b, in_a, in_b)):
        torch.testing.assert_close(ia, ib, rtol=1e-5, atol=1e-5, msg=lambda m, i=i: f"input of step {i}: {m}")
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, i=i: f"step {i}: {m}")


@pytest.mark.unit
@pytest.mark.parametrize("name", NAMES)
class TestSamplerCommon:
    """The contract, shared by all samplers (cf. diffusers' SchedulerCommonTest)."""

    def test_timesteps_descend_and_count(self, name):
        s = make_sampler(name, NoiseSchedule.make("linear", 1000))
        s.set_timesteps(25)
        ts = s.timesteps.double()
        assert len(ts) == s.model_calls(25)
        assert bool((ts[1:] <= ts[:-1]).all()) and float(ts.max()) <= 999 and float(ts.min()) >= 0

    def test_step_keeps_shape_and_dtype(self, name):
        s = make_sampler(name, NoiseSchedule.make("linear", 1000))
        x = torch.randn(3, 1, 4, 4)
        out = sample_loop(s, fake_model, x, 5, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == x.dtype and bool(torch.isfinite(out).all())

    @pytest.mark.parametrize("n", [10, 25])
    def test_matches_diffusers_step_by_step(self, name, n):
        noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
        ours = run_genlab(make_sampler(name, NoiseSchedule.make("linear", 1000)), n, noise, seed=7)
        theirs = run_diffusers(diffusers_scheduler(name), n, noise, seed=7)
        assert_same_trajectory(ours, theirs)

    @pytest.mark.parametrize("prediction", ["v_prediction", "sample"])
    def test_matches_diffusers_cosine_and_other_predictions(self, name, prediction):
        if name == "euler-a" and prediction == "sample":
            pytest.skip("diffusers' EulerAncestral does not implement sample prediction")
        noise = torch.randn(2, 5, generator=torch.Generator().manual_seed(2))
        sch = NoiseSchedule.make("cosine", 1000)
        ours = run_genlab(make_sampler(name, sch, prediction=prediction), 12, noise, seed=3)
        theirs = run_diffusers(diffusers_scheduler(name, "squaredcos_cap_v2", prediction_type=prediction),
                               12, noise, seed=3)
        assert_same_trajectory(ours, theirs)

    def test_seeded_sampling_is_reproducible(self, name):
        s = make_sampler(name, NoiseSchedule.make("linear", 1000))
        noise = torch.randn(4, 2)
        a = sample_loop(s, fake_model, noise, 8, torch.Generator().manual_seed(5))
        b = sample_loop(s, fake_model, noise, 8, torch.Generator().manual_seed(5))   # set_timesteps resets state
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        if s.stochastic:
            c = sample_loop(s, fake_model, noise, 8, torch.Generator().manual_seed(6))
            assert not torch.equal(a, c)

    def test_oracle_recovers_gaussian_and_mixture(self, name):
        """Driven by the exact E[eps | x_t], every sampler returns the data distribution: first-order
        methods at 500 steps, second-order ones at 50. The initial noise is a grid of normal quantiles,
        so the deterministic samplers carry almost no Monte-Carlo error."""
        sch = NoiseSchedule.make("linear", 1000)
        steps, tol_mean, tol_var, tol_w = (50, 0.01, 0.01, 0.005) if name in SECOND_ORDER else (500, 0.02, 0.04, 0.01)
        gauss = GaussianMixture.gaussian([0.5], 0.5)
        mix = GaussianMixture([0.3, 0.7], [[-1.5], [1.0]], [0.3, 0.4])
        for data in (gauss, mix):
            g = torch.Generator().manual_seed(0)
            x = sample_loop(make_sampler(name, sch), OracleDenoiser(data, sch), QUANTILES, steps, g)
            err = distribution_errors(x, data)
            assert err["mean_error"] < tol_mean, err
            assert err["var_rel_error"] < tol_var, err
            assert err["weight_error"] < tol_w, err


# ----------------------------------------------------------------- sampler-specific options against diffusers
@pytest.mark.unit
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_eta_and_spacing_match_diffusers(eta, spacing):
    noise = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    ours = run_genlab(make_sampler("ddim", NoiseSchedule.make(), eta=eta, spacing=spacing), 20, noise, 11)
    theirs = run_diffusers(diffusers_scheduler("ddim", timestep_spacing=spacing), 20, noise, 11, {"eta": eta})
    assert_same_trajectory(ours, theirs)


@pytest.mark.unit
@pytest.mark.parametrize("clipped_eps", [False, True])
def test_ddim_clipping_matches_diffusers(clipped_eps):
    noise = 3 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0))     # large, so x0_hat gets clipped
    ours = run_genlab(make_sampler("ddim", NoiseSchedule.make(), clip_sample=True, clipped_eps=clipped_eps),
                      30, noise, 2)
    theirs = run_diffusers(diffusers_scheduler("ddim", clip_sample=True), 30, noise, 2,
                           {"use_clipped_model_output": clipped_eps})
    assert_same_trajectory(ours, theirs)


@pytest.mark.unit
@pytest.mark.parametrize("variance,theirs_variance", [("small", "fixed_small"), ("large", "fixed_large")])
def test_ddpm_variance_and_clipping_match_diffusers(variance, theirs_variance):
    noise = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    ours = run_genlab(make_sampler("ddpm", NoiseSchedule.make(), variance=variance, clip_sample=True), 50, noise, 4)
    theirs = run_diffusers(diffusers_scheduler("ddpm", variance_type=theirs_variance, clip_sample=True), 50, noise, 4)
    assert_same_trajectory(ours, theirs)


@pytest.mark.unit
def test_ddpm_at_full_steps_is_algorithm_2():
    """With eps-prediction and no clipping, each step equals Ho et al. 2020 Algorithm 2 literally:
    x_{t-1} = (x_t - (1 - alpha_t) / sqrt(1 - abar_t) eps) / sqrt(alpha_t) + sigma_t z, sigma_t^2 = beta~_t."""
    sch = NoiseSchedule.make("linear", 1000, dtype=torch.float64)
    s = make_sampler("ddpm", sch)
    s.set_timesteps(1000)
    x = torch.randn(5, 3, dtype=torch.float64)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for i in (0, 500, 998):
        s._index = i
        t = int(s.timesteps[i])
        eps = torch.randn(5, 3, dtype=torch.float64)
        ours = s.step(eps, t, x, g1)
        a, ab = sch.alphas[t], sch.alphas_cumprod[t]
        z = torch.randn(5, 3, generator=g2, dtype=torch.float64)
        ref = (x - (1 - a) / (1 - ab) ** 0.5 * eps) / a ** 0.5 + sch.posterior_variance[t] ** 0.5 * z
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.unit
def test_lms_coefficients_integrate_polynomials_exactly():
    """sum_k c_k p(sigma_{i-k}) = integral of p over [sigma_i, sigma_{i+1}] for any cubic p (checked with
    scipy's quadrature of the Lagrange basis, diffusers' own method)."""
    from scipy import integrate
    sig = np.array([14.6, 9.0, 5.1, 2.7, 1.3, 0.5, 0.0])
    for i in range(1, 6):
        order = min(i + 1, 4)
        c = lms_coefficients(sig, i, order)
        for k in range(order):
            def basis(tau, k=k, i=i, order=order):
                return np.prod([(tau - sig[i - j]) / (sig[i - k] - sig[i - j]) for j in range(order) if j != k])
            assert c[k] == pytest.approx(integrate.quad(basis, sig[i], sig[i + 1])[0], rel=1e-9, abs=1e-12)


@pytest.mark.unit
def test_dpm_solver_drops_repeated_timesteps_at_full_steps():
    s = make_sampler("dpm++2m", NoiseSchedule.make())
    x = sample_loop(s, fake_model, torch.randn(4, 2), 1000)
    assert len(torch.unique(s.timesteps)) == len(s.timesteps) and bool(torch.isfinite(x).all())


@pytest.mark.unit
def test_sde_dpm_solver_first_order_is_the_ddpm_posterior_draw():
    """SDE-DPM-Solver++ at order 1, written in lambda, is DDIM with eta = 1 (the DDPM posterior, Song et al.
    2021 Eq. 16) written in abar: same x_s, x0_hat and z, any pair of noise levels."""
    g = torch.Generator().manual_seed(0)
    x, x0, z = (torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(3))
    for abar_s, abar_t in ((0.1, 0.3), (0.02, 0.9), (0.5, 0.51)):
        abar_s, abar_t = torch.tensor(abar_s, dtype=torch.float64), torch.tensor(abar_t, dtype=torch.float64)
        eps = (x - abar_s.sqrt() * x0) / (1 - abar_s).sqrt()
        theirs = ddim_step(x0, eps, abar_s, abar_t, 1.0, z)
        ours = dpmpp_sde_first_order(x, x0, z, ((1 - abar_s) / abar_s).sqrt(), ((1 - abar_t) / abar_t).sqrt())
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.unit
def test_unknown_sampler_lists_choices():
    with pytest.raises(ConfigError, match="dpm\\+\\+2m"):
        make_sampler("plms", NoiseSchedule.make())
    with pytest.raises(ConfigError, match="steps must be between"):
        make_sampler("ddim", NoiseSchedule.make("linear", 50)).set_timesteps(100)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_oracle_error_shrinks_with_steps(name):
    """The error curve against steps: at 10, 100, 1000 steps the variance error of a 1-D mixture falls."""
    sch = NoiseSchedule.make("linear", 1000)
    mix = GaussianMixture([0.3, 0.7], [[-1.5], [1.0]], [0.2, 0.3])
    errs = []
    for steps in (10, 100, 1000):
        g = torch.Generator().manual_seed(0)
        x = sample_loop(make_sampler(name, sch), OracleDenoiser(mix, sch), torch.randn(20000, 1, generator=g), steps, g)
        errs.append(distribution_errors(x, mix)["var_rel_error"])
    assert errs[-1] < errs[0] and errs[-1] < 0.02, errs
