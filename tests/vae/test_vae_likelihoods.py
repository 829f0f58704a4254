"""The VAE's likelihood objects (genlab.families.vae.likelihoods) against independent oracles: each
log_prob against torch.distributions (Bernoulli(logits), Categorical, Normal) or, for the discretized
Gaussian, against mpmath's numerical integral of the Normal density over each grey level's bin; the
shapes and supports of mean and sample; the factory's choices and errors."""
import math

import mpmath
import pytest
import torch
from torch import distributions as D

from genlab.data import DataInfo
from genlab.errors import ConfigError
from genlab.families.vae.likelihoods import (
    Bernoulli,
    Categorical,
    DiscretizedGaussian,
    Gaussian,
    Likelihood,
    make_likelihood,
)

pytestmark = pytest.mark.unit

S, B, DIM = 3, 4, 5                      # sample dims, batch, data dimensions
EIGHT_BIT = DataInfo(kind="image", shape=(1, 1, DIM), view="continuous", extras={"grey_levels": 256})
BINARY = DataInfo(kind="image", shape=(1, 1, DIM), view="binarized")
QUANTIZED = DataInfo(kind="image", shape=(1, 1, DIM), view="quantized", levels=4)
POINTS = DataInfo(kind="points", shape=(DIM,))


def params_for(lk: Likelihood, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(S, B, lk.params_per_dim, DIM, generator=g, dtype=torch.float64)   # [S, B, P, D]


def test_bernoulli_matches_torch():
    lk = Bernoulli()
    x = torch.randint(0, 2, (B, 1, 1, DIM)).double()
    p = params_for(lk)
    want = D.Bernoulli(logits=p[..., 0, :]).log_prob(x.flatten(1)).sum(-1)
    assert torch.allclose(lk.log_prob(lk.target(x), p), want)


def test_categorical_matches_torch():
    lk = make_likelihood("auto", QUANTIZED)
    assert isinstance(lk, Categorical) and lk.params_per_dim == 4
    x = torch.randint(0, 4, (B, 1, 1, DIM)).double()
    p = params_for(lk)
    want = D.Categorical(logits=p.transpose(-1, -2)).log_prob(x.flatten(1).long()).sum(-1)   # logits [S, B, D, K]
    assert torch.allclose(lk.log_prob(lk.target(x), p), want)


@pytest.mark.parametrize("std", [None, 0.3])
def test_gaussian_on_points_matches_torch(std):
    lk = make_likelihood("gaussian", POINTS, std)
    assert lk.params_per_dim == (1 if std else 2)
    x = torch.randn(B, DIM, dtype=torch.float64)
    p = params_for(lk)
    scale = torch.full_like(p[..., 0, :], std) if std else torch.exp(0.5 * p[..., 1, :])
    want = D.Normal(p[..., 0, :], scale).log_prob(x).sum(-1)
    assert torch.equal(lk.target(x), x)
    assert torch.allclose(lk.log_prob(x, p), want)


def test_gaussian_on_images_scores_a_dequantized_draw_minus_d_log_l():
    lk = make_likelihood("gaussian", EIGHT_BIT)
    k = torch.randint(0, 256, (B, 1, 1, DIM)).double()
    u = lk.target(k / 255)
    assert torch.equal(torch.floor(u * 256), k.flatten(1))           # u = (k + U) / L lies in bin k
    p = params_for(lk)
    want = D.Normal(p[..., 0, :], torch.exp(0.5 * p[..., 1, :])).log_prob(u).sum(-1) - DIM * math.log(256)
    assert torch.allclose(lk.log_prob(u, p), want)


def test_discretized_gaussian_matches_the_integral_of_the_normal_density_over_each_bin():
    levels = 4
    info = DataInfo(kind="image", shape=(1, 1, DIM), view="continuous", extras={"grey_levels": levels})
    lk = make_likelihood("auto", info)
    assert isinstance(lk, DiscretizedGaussian)
    k = torch.tensor([[0, 1, 2, 3, 3], [3, 2, 1, 0, 0]], dtype=torch.float64)       # [2, D] levels
    g = torch.Generator().manual_seed(1)
    p = torch.stack([torch.rand(2, DIM, generator=g, dtype=torch.float64),           # means in [0, 1]
                     torch.rand(2, DIM, generator=g, dtype=torch.float64) * 4 - 5], dim=-2)   # log-variances
    half = 0.5 / (levels - 1)
    want = []
    for b in range(2):
        total = mpmath.mpf(0)
        for i in range(DIM):
            m, s, c = float(p[b, 0, i]), math.exp(0.5 * float(p[b, 1, i])), float(k[b, i]) / (levels - 1)
            lo = -mpmath.inf if k[b, i] == 0 else c - half
            hi = mpmath.inf if k[b, i] == levels - 1 else c + half
            total += mpmath.log(mpmath.quad(lambda t, m=m, s=s: mpmath.npdf(t, m, s), [lo, m, hi]
                                            if lo < m < hi else [lo, hi]))
        want.append(float(total))
    got = lk.log_prob(lk.target(k / (levels - 1)), p)
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name,info", [("bernoulli", BINARY), ("categorical", QUANTIZED), ("gaussian", POINTS),
                                       ("gaussian", EIGHT_BIT), ("discretized_gaussian", EIGHT_BIT)])
def test_mean_and_sample_shapes_and_supports(name, info):
    lk = make_likelihood(name, info)
    assert lk.name == name
    p = params_for(lk)
    mean, draw = lk.mean(p), lk.sample(p)
    assert mean.shape == draw.shape == (S, B, DIM)
    if name == "bernoulli":
        assert set(draw.unique().tolist()) <= {0.0, 1.0} and ((mean > 0) & (mean < 1)).all()
    if name == "categorical":
        assert set((draw * 3).unique().tolist()) <= {0.0, 1.0, 2.0, 3.0} and ((mean >= 0) & (mean <= 1)).all()
    if name == "discretized_gaussian":
        assert torch.equal(draw * 255, torch.round(draw * 255)) and ((draw >= 0) & (draw <= 1)).all()
        assert torch.equal(mean, p[..., 0, :].clamp(0, 1))


@pytest.mark.parametrize("name,info", [("bernoulli", BINARY), ("categorical", QUANTIZED), ("gaussian", POINTS)])
def test_mean_is_the_average_of_many_samples(name, info):
    lk = make_likelihood(name, info)
    p = params_for(lk)[:1, :1]                                         # [1, 1, P, D]
    torch.manual_seed(0)
    draws = lk.sample(p.expand(20000, -1, -1, -1))                    # [20000, 1, D]
    assert torch.allclose(draws.double().mean(0), lk.mean(p)[0], atol=0.04)


def test_factory_choices_and_errors():
    assert isinstance(make_likelihood("auto", BINARY), Bernoulli)
    assert isinstance(make_likelihood("auto", DataInfo(kind="image", shape=(1, 1, DIM), view="dynamic")), Bernoulli)
    assert isinstance(make_likelihood("auto", POINTS), Gaussian) and make_likelihood("auto", POINTS).grey_levels == 0
    for name, info, message in [("bernoulli", QUANTIZED, "Bernoulli likelihood needs"),
                                ("categorical", EIGHT_BIT, "needs quantized data"),
                                ("discretized_gaussian", POINTS, "needs images"),
                                ("laplace", POINTS, "unknown likelihood")]:
        with pytest.raises(ConfigError, match=message):
            make_likelihood(name, info)
