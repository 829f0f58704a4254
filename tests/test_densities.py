"""Shared likelihood math (genlab.maths.densities) and valid bits/dim on discrete pixels (issue 10 item 1)."""
import math

import mpmath
import pytest
import torch
from torch import distributions as D

from genlab.data import DataInfo
from genlab.families.flows.exact import ExactLikelihoodModel
from genlab.families.vae.model import VAE, VAEConfig
from genlab.maths.densities import (
    bits_per_dim,
    dequantized_nll,
    discretized_gaussian_log_likelihood,
    gaussian_log_likelihood,
    log_normal_interval,
    standard_normal_log_prob,
)

pytestmark = pytest.mark.unit

EIGHT_BIT = DataInfo(kind="image", shape=(1, 6, 6), view="continuous", extras={"dataset": "fake", "grey_levels": 256})


def eight_bit_images(n=16, seed=0):
    """Pixels k/255 with about 80% exactly 0, as in MNIST."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(1, 256, (n, 1, 6, 6), generator=g).float()
    k[torch.rand(k.shape, generator=g) < 0.8] = 0
    return k / 255


def test_standard_normal_log_prob_matches_torch():
    z = torch.randn(5, 2, 3, dtype=torch.float64)
    ref = D.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(-1)
    torch.testing.assert_close(standard_normal_log_prob(z), ref)


@pytest.mark.parametrize("lo,hi", [(-1.0, 0.5), (2.0, 2.01), (30.0, 30.5), (-40.0, -39.0), (-math.inf, -35.0),
                                   (35.0, math.inf), (-math.inf, 0.3), (1e-3, 2e-3)])
def test_log_normal_interval_matches_high_precision(lo, hi):
    with mpmath.workdps(60):          # oracle: tails through erfc so that no 1 - 1 appears
        sign = 1 if lo > 0 else -1
        def tail(a):
            return mpmath.erfc(sign * a / mpmath.sqrt(2)) / 2
        ref = mpmath.log(tail(lo) - tail(hi)) if lo > 0 else mpmath.log(tail(hi) - tail(lo))
    got = log_normal_interval(torch.tensor([lo], dtype=torch.float64), torch.tensor([hi], dtype=torch.float64))
    assert float(got) == pytest.approx(float(ref), rel=1e-9)
    got32 = log_normal_interval(torch.tensor([lo]), torch.tensor([hi]))
    assert float(got32) == pytest.approx(float(ref), rel=1e-4)


def test_discretized_gaussian_is_a_distribution_over_the_levels_matching_normal_cdf():
    levels = 17
    torch.manual_seed(0)
    mean = torch.rand(4, 1, dtype=torch.float64) * 1.4 - 0.2
    logvar = torch.tensor([[-9.0], [-4.0], [-1.0], [2.0]], dtype=torch.float64)
    k = torch.arange(levels, dtype=torch.float64).expand(4, levels)                 # every level of one pixel
    logp = torch.stack([discretized_gaussian_log_likelihood(k[:, i:i + 1], mean, logvar, levels)
                        for i in range(levels)], 1)                                  # [4, L]
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(4, dtype=torch.float64))
    normal = D.Normal(mean, torch.exp(0.5 * logvar))                                 # oracle: CDF differences
    edges = (torch.arange(levels + 1, dtype=torch.float64) - 0.5) / (levels - 1)
    cdf = normal.cdf(edges.expand(4, -1))
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0
    ref = cdf[:, 1:] - cdf[:, :-1]
    torch.testing.assert_close(logp.exp(), ref, atol=1e-12, rtol=1e-9)


def test_discretized_gaussian_is_a_log_probability_with_finite_gradients_everywhere():
    k = torch.tensor([[0.0, 3.0, 255.0, 128.0]]).expand(6, 4)
    mean = (k / 255 + torch.tensor([[0.0], [1e-4], [-0.3], [2.0], [-5.0], [0.5]])).requires_grad_(True)
    logvar = torch.tensor([[-30.0], [-12.0], [-4.0], [0.0], [3.0], [10.0]]).expand(6, 4).clone().requires_grad_(True)
    ll = discretized_gaussian_log_likelihood(k, mean, logvar, 256)
    assert (ll <= 0).all() and torch.isfinite(ll).all()
    ll.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(logvar.grad).all()


def test_a_uniform_density_on_dequantized_8_bit_data_scores_exactly_8_bits():
    k = torch.randint(0, 256, (10, 1, 6, 6)).float()
    nll = dequantized_nll(lambda u: torch.zeros(len(u)), k, 256)        # p(u) = 1 on [0, 1)^D
    assert torch.equal(bits_per_dim(nll, (1, 6, 6)), torch.full((10,), 8.0))

    class Uniform(ExactLikelihoodModel):                                 # through the flows' base class
        def log_prob(self, x):
            inside = ((x >= 0) & (x < 1)).flatten(1).all(-1)
            return torch.where(inside, 0.0, -math.inf)
    out = Uniform(None, EIGHT_BIT).eval_metrics((eight_bit_images(),))
    torch.testing.assert_close(out["bpd"], torch.full((16,), 8.0))


def test_dequantized_nll_bounds_the_exact_discrete_nll_of_the_same_density():
    """Jensen (Theis et al. 2016): E_U[-log p(u)] + D log L >= -log P(k), P(k) the density's mass on k's cell."""
    torch.manual_seed(0)
    levels, k = 8, torch.tensor([[0.0, 3.0, 7.0]], dtype=torch.float64)
    mean, logvar = torch.tensor([[0.01, 0.45, 0.9]], dtype=torch.float64), torch.full((1, 3), -5.0, dtype=torch.float64)
    std = math.exp(-2.5)
    exact = -log_normal_interval((k / levels - mean) / std, ((k + 1) / levels - mean) / std).sum()
    draws = torch.stack([dequantized_nll(lambda u: gaussian_log_likelihood(u, mean, logvar), k, levels)
                         for _ in range(4000)])
    assert float(draws.mean()) >= float(exact) - 3 * float(draws.std()) / math.sqrt(4000)
    assert float(exact) > 0


def pinned_vae(likelihood: str) -> tuple[VAE, torch.Tensor]:
    """A VAE whose decoder outputs the pixels of one image with the smallest variance the model allows:
    the spike that made the raw-density bits/dim negative (issue 10 item 1)."""
    torch.manual_seed(0)
    x = eight_bit_images(1)
    vae = VAE(VAEConfig(likelihood=likelihood, hidden=(8,), z_dim=2), EIGHT_BIT)
    last = vae.decoder_net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.cat([x.flatten(), torch.full((36,), -12.0)]))      # means, then log-variances
    return vae.eval(), x


@pytest.mark.parametrize("likelihood", ["gaussian", "discretized_gaussian"])
def test_no_vae_likelihood_gives_negative_bits_per_dim_on_8_bit_data(likelihood):
    torch.manual_seed(1)
    vae, x = pinned_vae(likelihood)
    with torch.no_grad():
        out = vae.eval_metrics((x.expand(64, -1, -1, -1),), iwae_k=20)
    assert (out["bpd"] >= 0).all() and (out["elbo_bpd"] >= 0).all()
    # the same decoder read as a raw density of the pixel values gives negative bits/dim
    raw = gaussian_log_likelihood(x.flatten(1), x.flatten(1), torch.full((1, 36), -12.0))
    assert float(bits_per_dim(-raw, (1, 6, 6))) < -2


def test_a_uniform_categorical_vae_scores_exactly_8_bits():
    info = DataInfo(kind="image", shape=(1, 6, 6), view="quantized", levels=256, extras={"dataset": "fake"})
    vae = VAE(VAEConfig(hidden=(8,), z_dim=2), info).eval()
    for net in (vae.encoder[-1][-1], vae.decoder_net[-1]):            # q(z|x) = p(z), p(x|z) uniform
        torch.nn.init.zeros_(net.weight)
        torch.nn.init.zeros_(net.bias)
    x = torch.randint(0, 256, (8, 1, 6, 6)).float()
    with torch.no_grad():
        out = vae.eval_metrics((x,), iwae_k=5)
    torch.testing.assert_close(out["bpd"], torch.full((8,), 8.0))
    torch.testing.assert_close(out["elbo_bpd"], torch.full((8,), 8.0))


def test_continuous_images_default_to_the_discretized_gaussian_and_points_to_the_density():
    assert VAE(VAEConfig(hidden=(8,)), EIGHT_BIT).likelihood.name == "discretized_gaussian"
    assert VAE(VAEConfig(hidden=(8,)), DataInfo(kind="points", shape=(3,))).likelihood.name == "gaussian"
    draws = VAE(VAEConfig(hidden=(8,), z_dim=2), EIGHT_BIT).sample(4, draw=True)
    assert torch.equal(draws, torch.round(draws * 255) / 255) and draws.min() >= 0 and draws.max() <= 1


def test_training_log_names_the_weighted_loss_and_keeps_bpd_for_the_elbo():
    torch.manual_seed(0)
    x = eight_bit_images(8)
    vae = VAE(VAEConfig(hidden=(8,), z_dim=2, coeff=0.25), EIGHT_BIT)
    torch.manual_seed(3)
    loss, logs = vae.loss((x,))
    torch.manual_seed(3)
    terms = vae.elbo(x)                                      # the same draws: rec and KL of the true ELBO
    elbo_bpd = bits_per_dim(-(terms["rec"] - terms["kl"]).mean(), (1, 6, 6))
    torch.testing.assert_close(logs["bpd"], elbo_bpd)
    torch.testing.assert_close(logs["loss_bpd"], bits_per_dim(loss, (1, 6, 6)))
    assert float(logs["loss_bpd"]) < float(logs["bpd"])      # KL weighted down: the loss understates the bound
    _, logs1 = VAE(VAEConfig(hidden=(8,), z_dim=2), EIGHT_BIT).loss((x,))
    assert "loss_bpd" not in logs1
