"""The closed forms of diffusion against independent oracles: diffusers' schedules, iterated single
steps, Bayes' rule on a grid, torch.distributions, scipy's normal CDF and autograd."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence

from genlab.errors import ConfigError
from genlab.families.diffusion.oracle import GaussianMixture, OracleDenoiser
from genlab.families.diffusion.schedule import (
    NoiseSchedule,
    cosine_betas,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    linear_betas,
    to_model_range,
)

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]


def f64(kind="linear", n=1000, variance="small"):
    return NoiseSchedule.make(kind, n, dtype=torch.float64, variance=variance)


# ----------------------------------------------------------------- schedules
def test_linear_schedule_is_ddpm_and_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    b = linear_betas(1000)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    sch = NoiseSchedule.make("linear", 1000)
    torch.testing.assert_close(sch.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)


def test_cosine_schedule_follows_its_alpha_bar_and_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    T, s = 1000, 0.008
    sch = f64("cosine", T)
    t = np.arange(1, T + 1)
    f = np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2 / np.cos(s / (1 + s) * np.pi / 2) ** 2
    unclipped = slice(0, 990)       # beta is capped at 0.999 near t = T only
    np.testing.assert_allclose(sch.alphas_cumprod.numpy()[unclipped], f[unclipped], rtol=1e-9, atol=1e-12)
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    torch.testing.assert_close(cosine_betas(T), ref.betas, rtol=0, atol=0)


def test_bad_schedules_raise_config_errors():
    with pytest.raises(ConfigError, match="linear, cosine"):
        NoiseSchedule.make("quadratic")
    with pytest.raises(ConfigError):
        NoiseSchedule(torch.tensor([0.5, 1.5]))


# ----------------------------------------------------------------- forward process
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_marginal_equals_iterated_single_steps_exactly(kind):
    """q(x_t|x_0) moments from the recursion mean_t = sqrt(alpha_t) mean_{t-1}, var_t = alpha_t var_{t-1} + beta_t
    equal the closed form sqrt(abar_t) x_0, 1 - abar_t (Ho et al. 2020, Eq. 4)."""
    sch = f64(kind)
    x0 = torch.tensor([[0.7, -0.3]], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros_like(x0)
    for i in range(sch.num_steps):
        mean, var = sch.alphas[i] ** 0.5 * mean, sch.alphas[i] * var + sch.betas[i]
        if i in (0, 9, 499, 999):
            m, v = sch.q_mean_variance(x0, torch.tensor([i]))
            torch.testing.assert_close(mean, m, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(var, v, rtol=1e-10, atol=1e-12)


def test_marginal_by_monte_carlo_of_q_step():
    """Draws of x_t made by iterating q(x_t|x_{t-1}) (Eq. 2) have the moments of q_sample (Eq. 4)."""
    sch = f64("linear", 100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((8000, 1), 0.8, dtype=torch.float64)
    x = x0.clone()
    for i in range(60):
        x = sch.q_step(x, torch.full((len(x),), i), torch.randn(x.shape, generator=g, dtype=torch.float64))
    direct = sch.q_sample(x0, torch.full((len(x0),), 59), torch.randn(x0.shape, generator=g, dtype=torch.float64))
    m, v = sch.q_mean_variance(x0[:1], torch.tensor([59]))
    for sample in (x, direct):
        assert float(sample.mean()) == pytest.approx(float(m), abs=4 * float(v.sqrt()) / math.sqrt(len(x)))
        assert float(sample.var()) == pytest.approx(float(v), rel=4 * math.sqrt(2 / len(x)))


@pytest.mark.parametrize("i", [1, 10, 400, 999])
def test_posterior_matches_bayes_rule_on_a_grid(i):
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0), normalised numerically (Ho et al. 2020, Eqs. 6-7)."""
    sch = f64()
    x0, xt = 0.6, -0.4
    t = torch.tensor([i])
    abar_prev = float(sch.alphas_cumprod[i - 1])
    grid = torch.linspace(-6, 6, 200001, dtype=torch.float64)
    xt_value = torch.tensor(xt, dtype=torch.float64)
    log_joint = (Normal(sch.alphas[i] ** 0.5 * grid, sch.betas[i] ** 0.5).log_prob(xt_value)
                 + Normal(abar_prev ** 0.5 * x0, (1 - abar_prev) ** 0.5).log_prob(grid))
    w = torch.softmax(log_joint, 0)
    mean_num = float((w * grid).sum())
    var_num = float((w * (grid - mean_num) ** 2).sum())
    mean, var = sch.posterior_mean_variance(torch.tensor([[x0]], dtype=torch.float64),
                                            torch.tensor([[xt]], dtype=torch.float64), t)
    assert float(mean) == pytest.approx(mean_num, abs=1e-7)
    assert float(var) == pytest.approx(var_num, rel=1e-5)


def test_snr_forms():
    sch = f64()
    t = torch.arange(1000)
    snr = sch.snr(t)
    torch.testing.assert_close(snr, sch.alphas_cumprod / (1 - sch.alphas_cumprod))
    torch.testing.assert_close(snr, 1 / sch.sigmas() ** 2)
    assert bool((snr[1:] < snr[:-1]).all())
    # the per-example SNR ||mu||^2 / tr(Sigma) of q(x_t|x_0) is SNR(t) ||x_0||^2 / D
    x0 = torch.randn(1, 6, dtype=torch.float64)
    m, v = sch.q_mean_variance(x0, torch.tensor([300]))
    assert float((m ** 2).sum() / v.sum()) == pytest.approx(float(snr[300] * (x0 ** 2).sum() / 6), rel=1e-12)
    # fractional timesteps interpolate sigma and are exact at integers
    assert float(sch.alpha_bar_at(torch.tensor(300.0))) == pytest.approx(float(sch.alphas_cumprod[300]), rel=1e-12)
    mid = float(sch.alpha_bar_at(torch.tensor(300.5)))
    assert float(sch.alphas_cumprod[301]) < mid < float(sch.alphas_cumprod[300])


# ----------------------------------------------------------------- parameterizations and losses
def test_parameterizations_invert_each_other():
    sch = f64()
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 100, 500, 999])
    xt = sch.q_sample(x0, t, eps)
    for pred, out in (("epsilon", eps), ("sample", x0), ("v_prediction", sch.velocity(x0, t, eps))):
        x0_hat, eps_hat = sch.to_x0_eps(out, xt, t, pred)
        torch.testing.assert_close(x0_hat, x0)
        torch.testing.assert_close(eps_hat, eps)


def test_reverse_mean_from_eps_is_ho_eq_11():
    sch = f64()
    g = torch.Generator().manual_seed(2)
    xt, eps = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([3, 200, 900])
    mean, var = sch.p_mean_variance(eps, xt, t, "epsilon")
    a, ab, b = (v[t].reshape(-1, 1) for v in (sch.alphas, sch.alphas_cumprod, sch.betas))
    torch.testing.assert_close(mean, (xt - b / (1 - ab) ** 0.5 * eps) / a ** 0.5)
    torch.testing.assert_close(var, sch.posterior_variance[t].reshape(-1, 1).expand_as(xt))


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    m1, m2 = torch.randn(10, generator=g, dtype=torch.float64), torch.randn(10, generator=g, dtype=torch.float64)
    v1 = torch.rand(10, generator=g, dtype=torch.float64) + 0.1
    v2 = torch.rand(10, generator=g, dtype=torch.float64) + 0.1
    torch.testing.assert_close(gaussian_kl(m1, v1, m2, v2), kl_divergence(Normal(m1, v1.sqrt()), Normal(m2, v2.sqrt())))


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_snr_weighted_loss_is_the_kl_term_of_the_bound(prediction):
    """The weighting (SNR(t-1) - SNR(t)) / 2 (Kingma et al. 2021) turns the MSE of any target into KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t))
    for sigma_t^2 = beta~_t, computed here by torch.distributions."""
    sch = f64()
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 50, 400, 999])
    xt = sch.q_sample(x0, t, eps)
    out = sch.training_target(x0, t, eps, prediction) + 0.1 * torch.randn(5, 4, generator=g, dtype=torch.float64)
    loss = sch.loss(out, x0, t, eps, prediction, "snr", reduce="sum")
    x0_hat, _ = sch.to_x0_eps(out, xt, t, prediction)
    mq, vq = sch.posterior_mean_variance(x0, xt, t)
    mp, _ = sch.posterior_mean_variance(x0_hat, xt, t)
    kl = kl_divergence(Normal(mq, vq.sqrt()), Normal(mp, vq.sqrt())).sum(1)
    torch.testing.assert_close(loss, kl, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(sch.vlb_term(out, x0, xt, t, prediction, levels=256), kl, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_min_snr_and_uniform_weights(prediction):
    """min-SNR: every target's weighted MSE equals min(SNR, gamma) ||x0_hat - x_0||^2; uniform: the plain MSE."""
    sch = f64()
    g = torch.Generator().manual_seed(5)
    x0, eps = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 30, 300, 900])
    xt = sch.q_sample(x0, t, eps)
    target = sch.training_target(x0, t, eps, prediction)
    out = target + 0.2 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    x0_hat, _ = sch.to_x0_eps(out, xt, t, prediction)
    expected = sch.snr(t).clamp(max=5.0) * ((x0_hat - x0) ** 2).mean(1)
    torch.testing.assert_close(sch.loss(out, x0, t, eps, prediction, "min_snr", 5.0), expected)
    torch.testing.assert_close(sch.loss(out, x0, t, eps, prediction, "uniform"), ((out - target) ** 2).mean(1))
    with pytest.raises(ConfigError, match="min_snr"):
        sch.loss(out, x0, t, eps, prediction, "p2")


# ----------------------------------------------------------------- the bound's other terms
def test_discretized_gaussian_matches_scipy_and_normalises():
    from scipy.stats import norm
    levels = torch.arange(256, dtype=torch.float64) / 255 * 2 - 1
    for mean, std in ((0.1, 0.05), (-0.98, 0.01), (0.999, 0.002), (0.3, 3.0)):
        ll = discretized_gaussian_log_likelihood(levels, torch.tensor(mean, dtype=torch.float64),
                                                 torch.tensor(std, dtype=torch.float64), 256)
        edges = np.concatenate([[-np.inf], (levels.numpy()[:-1] + levels.numpy()[1:]) / 2, [np.inf]])
        p = norm.cdf(edges[1:], mean, std) - norm.cdf(edges[:-1], mean, std)
        ok = p > 1e-10
        np.testing.assert_allclose(ll.numpy()[ok], np.log(p[ok]), rtol=1e-6, atol=1e-8)
        assert float(ll.exp().sum()) == pytest.approx(1.0, abs=1e-6)


def test_prior_term_matches_torch_distributions():
    sch = f64()
    x0 = to_model_range(torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64), 256)
    m, v = sch.q_mean_variance(x0, torch.full((3,), 999))
    ref = kl_divergence(Normal(m, v.sqrt()), Normal(torch.zeros_like(m), torch.ones_like(v))).flatten(1).sum(1)
    torch.testing.assert_close(sch.prior_kl(x0), ref)
    assert float(sch.prior_kl(x0).max()) < 1e-3      # the linear schedule ends near N(0, I)


def test_to_model_range_gives_the_datas_levels():
    x = to_model_range(torch.tensor([0.0, 0.5, 1.0, 1.2]), 256)
    torch.testing.assert_close(x, torch.tensor([-1.0, 1 / 255, 1.0, 1.0]))
    torch.testing.assert_close(to_model_range(torch.tensor([0.0, 3 / 16, 0.5, 1.0]), 17),
                               torch.tensor([-1.0, -5 / 8, 0.0, 1.0]))
    torch.testing.assert_close(to_model_range(torch.tensor([0.0, 0.4, 0.6, 1.0]), 2),
                               torch.tensor([-1.0, -1.0, 1.0, 1.0]))


# ----------------------------------------------------------------- the decoder term on K levels
def brute_force_decoder_nll(x0: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, levels: int) -> torch.Tensor:
    """-sum_i log P(x0_i), [B]: P the mass of N(mean_i, std_i^2) on the bin of x0_i among K levels
    2k/(K-1) - 1, bins split halfway between neighbouring levels, the outer edges at -inf and +inf (Ho et al.
    2020, Eq. 13 with 255 -> K-1); masses from torch.distributions' normal CDF at the bin edges."""
    centres = torch.linspace(-1, 1, levels, dtype=torch.float64)
    inf = torch.tensor([math.inf], dtype=torch.float64)
    edges = torch.cat([-inf, (centres[1:] + centres[:-1]) / 2, inf])                # K + 1 edges
    k = torch.argmin((x0.unsqueeze(-1) - centres).abs(), dim=-1)                   # the level of each pixel
    normal = Normal(mean, std)
    mass = normal.cdf(edges[k + 1]) - normal.cdf(edges[k])
    return -mass.log().flatten(1).sum(1)                                            # [B, *event] -> [B]


def k_level_images(levels: int, seed: int) -> torch.Tensor:
    """[3, 1, 4, 4] images k / (K-1) with random levels k, both end levels present (the open bins)."""
    k = torch.randint(0, levels, (3, 1, 4, 4), generator=torch.Generator().manual_seed(seed)).double()
    k[:, 0, 0, 0], k[:, 0, 0, 1] = 0, levels - 1
    return k / (levels - 1)


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_decoder_term_is_the_k_level_likelihood_of_the_last_step(levels):
    """L_0 = -log p(x_0 | x_1) of ``vlb_term`` at t = 1 equals the brute-force K-level likelihood, and the
    K bins' masses sum to one (nothing leaks past the open end bins)."""
    sch = f64()
    g = torch.Generator().manual_seed(levels)
    x0 = to_model_range(k_level_images(levels, seed=levels), levels)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.zeros(3, dtype=torch.long)
    xt = sch.q_sample(x0, t, eps)
    out = eps + 0.5 * torch.randn(x0.shape, generator=g, dtype=torch.float64)   # an imperfect eps-prediction
    mean_p, var_p = sch.p_mean_variance(out, xt, t)
    expected = brute_force_decoder_nll(x0, mean_p, var_p.sqrt(), levels)
    torch.testing.assert_close(sch.vlb_term(out, x0, xt, t, levels=levels), expected, rtol=1e-7, atol=1e-7)
    grid = torch.linspace(-1, 1, levels, dtype=torch.float64).reshape(-1, 1)     # [K] -> [K, 1]
    for mean, std in ((0.1, 0.05), (-0.98, 0.01), (0.999, 0.3)):
        ll = discretized_gaussian_log_likelihood(grid, torch.tensor(mean, dtype=torch.float64),
                                                 torch.tensor(std, dtype=torch.float64), levels)
        assert float(ll.exp().sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("view, extras, levels", [("binarized", {}, 2), ("continuous", {"grey_levels": 17}, 17),
                                                  ("continuous", {"grey_levels": 256}, 256)])
def test_ddpm_scores_its_bound_on_the_datas_own_levels(view, extras, levels):
    """The model's L_0 on data of K grey levels (binary pixels, the 8x8 digits, 8-bit images) equals the
    brute-force K-level likelihood of the same draw of x_1 through its network."""
    from genlab.data.registry import DataInfo
    from genlab.families.diffusion.model import DDPM, DDPMConfig
    torch.manual_seed(0)
    info = DataInfo(kind="image", shape=(1, 4, 4), view=view, extras={"dataset": "test", **extras})
    model = DDPM(DDPMConfig(channels=8, mults=(1,), attention=False, timesteps=10), info).double()
    model.schedule = model.schedule.to(torch.float64)
    for p in model.parameters():                 # leave the zero initialisation so the outputs are not all 0
        torch.nn.init.normal_(p, std=0.05)
    x01 = k_level_images(levels, seed=3)
    t = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        ours = model.vlb_terms(x01, t, generator=torch.Generator().manual_seed(7))
        x0 = 2 * x01 - 1
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        xt = model.schedule.q_sample(x0, t, eps)
        mean_p, var_p = model.schedule.p_mean_variance(model.net(xt, t), xt, t)
    torch.testing.assert_close(ours, brute_force_decoder_nll(x0, mean_p, var_p.sqrt(), levels), rtol=1e-7, atol=1e-7)


def test_ddpm_refuses_quantized_levels_and_unknown_levels():
    from genlab.data.registry import DataInfo
    from genlab.families.diffusion.model import DDPM, DDPMConfig
    cfg = DDPMConfig(channels=8, mults=(1,), attention=False, timesteps=10)
    with pytest.raises(ConfigError, match="--view continuous"):
        DDPM(cfg, DataInfo(kind="image", shape=(1, 4, 4), view="quantized", levels=16))
    model = DDPM(cfg, DataInfo(kind="image", shape=(1, 4, 4), extras={"dataset": "fake"}))
    with pytest.raises(ConfigError, match="grey levels of fake is unknown"):
        model.vlb_nats(torch.rand(2, 1, 4, 4), 1)


# ----------------------------------------------------------------- the oracle
def test_optimal_eps_is_tweedie_score_of_the_noised_mixture():
    """E[eps|x_t] = -sqrt(1 - abar) grad log p_t(x_t), p_t built independently with MixtureSameFamily."""
    data = GaussianMixture([0.2, 0.5, 0.3], [[-1.0, 0.5], [1.0, 1.0], [0.0, -1.5]], [0.2, 0.4, 0.3])
    abar = 0.37
    mix = MixtureSameFamily(Categorical(data.weights),
                            Independent(Normal(abar ** 0.5 * data.means, (abar * data.stds ** 2 + 1 - abar) ** 0.5), 1))
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64).requires_grad_(True)
    (score,) = torch.autograd.grad(mix.log_prob(x).sum(), x)
    torch.testing.assert_close(data.optimal_eps(x.detach(), torch.full((16,), abar, dtype=torch.float64)),
                               -(1 - abar) ** 0.5 * score)
    torch.testing.assert_close(data.log_prob_t(x.detach(), abar), mix.log_prob(x.detach()))


def test_optimal_eps_is_the_posterior_mean_by_monte_carlo():
    """For one Gaussian, E[eps | x_t] estimated by binning joint draws of (x_t, eps) agrees with the closed form."""
    data = GaussianMixture.gaussian([0.5], 0.3)
    sch = f64()
    t = 300
    abar = float(sch.alphas_cumprod[t])
    g = torch.Generator().manual_seed(8)
    x0, _ = data.sample(400000, g)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    xt = abar ** 0.5 * x0 + (1 - abar) ** 0.5 * eps
    oracle = OracleDenoiser(data, sch)
    for c in (-0.5, 0.2, 0.8):
        near = (xt - c).abs() < 0.02
        assert float(eps[near].mean()) == pytest.approx(float(oracle(torch.tensor([[c]]), torch.tensor(t))), abs=0.03)


def test_oracle_prediction_types_agree():
    data = GaussianMixture.gaussian([0.5, -0.2], 0.3)
    sch = f64()
    x, t = torch.randn(5, 2, dtype=torch.float64), torch.tensor(250)
    eps = OracleDenoiser(data, sch, "epsilon")(x, t)
    x0 = OracleDenoiser(data, sch, "sample")(x, t)
    v = OracleDenoiser(data, sch, "v_prediction")(x, t)
    tt = torch.full((5,), 250)
    torch.testing.assert_close(sch.to_x0_eps(x0, x, tt, "sample")[1], eps)
    torch.testing.assert_close(sch.to_x0_eps(v, x, tt, "v_prediction")[1], eps)
