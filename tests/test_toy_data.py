"""Toy point sets: determinism per split, true densities (normalised, matching torch.distributions
and scipy), and the data_nll metric against a numerically integrated entropy."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from genlab.data import list_datasets, load_dataset, toy
from genlab.errors import ConfigError
from genlab.eval.data_nll import data_nll

ALL = ["moons", "circles", "8gaussians", "checkerboard", "pinwheel", "2spirals", "gmm1d", "gmm2d"]


@pytest.mark.unit
def test_every_set_is_registered_in_the_toy_group():
    toy_sets = {s.name for s in list_datasets() if s.group == "toy"}
    assert set(ALL) <= toy_sets


@pytest.mark.unit
@pytest.mark.parametrize("name", ALL)
def test_splits_are_deterministic_and_distinct(name):
    a = load_dataset(name, "train", n=300, seed=3)
    b = load_dataset(name, "train", n=300, seed=3)
    c = load_dataset(name, "test", n=300, seed=3)
    d = load_dataset(name, "train", n=300, seed=4)
    x = a.tensors[0]
    assert x.shape == (300, 1 if name == "gmm1d" else 2) and a.info.kind == "points"
    assert torch.equal(x, b.tensors[0])
    assert not torch.equal(x, c.tensors[0]) and not torch.equal(x, d.tensors[0])
    assert torch.isfinite(x).all() and x.abs().max() < 8


def grid_integral_2d(log_p, lo=-7.0, hi=7.0, n=700):
    xs = torch.linspace(lo, hi, n, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    return float(log_p(pts).exp().sum() * (xs[1] - xs[0]) ** 2)


@pytest.mark.parametrize("name,noise", [("8gaussians", None), ("gmm2d", None), ("checkerboard", 0.0),
                                        ("checkerboard", 0.3)])
@pytest.mark.unit
def test_2d_densities_integrate_to_one(name, noise):
    assert grid_integral_2d(lambda x: toy.log_density(name, x, noise)) == pytest.approx(1.0, abs=5e-3)


@pytest.mark.unit
def test_1d_density_integrates_to_one():
    value, _ = integrate.quad(lambda v: math.exp(float(toy.log_density("gmm1d", torch.tensor([[v]])))), -15, 15,
                              limit=200)
    assert value == pytest.approx(1.0, abs=1e-7)


@pytest.mark.unit
def test_mixture_density_matches_torch_distributions():
    means, weights, stds = toy.mixture_params("gmm2d", 0.5)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.tensor(weights)),
        torch.distributions.Independent(torch.distributions.Normal(
            torch.tensor(means), torch.tensor(stds)[:, None].expand(-1, 2)), 1))
    x = torch.randn(50, 2, dtype=torch.float64) * 3
    assert torch.allclose(toy.log_density("gmm2d", x), mix.log_prob(x), atol=1e-10)


@pytest.mark.unit
def test_checkerboard_without_noise_is_uniform_on_its_squares():
    x = load_dataset("checkerboard", "test", n=500).tensors[0].double()
    assert torch.allclose(toy.log_density("checkerboard", x, 0.0), torch.full((500,), -math.log(32.0), dtype=torch.float64))
    assert toy.log_density("checkerboard", torch.tensor([[1.0, -1.0]]), 0.0).item() == -math.inf


@pytest.mark.unit
def test_checkerboard_points_on_cell_edges_have_a_finite_density():
    """Issue 10 item 5: float32 can round a sample onto a square's edge (outer border 4.0, inner edges,
    corners shared by two black squares); the density there is 1/32, never 0."""
    edges = torch.tensor([[4.0, 3.0], [-4.0, -3.0], [3.0, 4.0], [0.0, 0.0], [2.0, 1.0], [-2.0, -2.0], [4.0, 4.0],
                          [1.0, 2.0], [-4.0, -4.0]])
    for dtype in (torch.float32, torch.float64):
        got = toy.log_density("checkerboard", edges.to(dtype), 0.0)
        torch.testing.assert_close(got, torch.full((len(edges),), -math.log(32.0), dtype=dtype))
    outside = torch.tensor([[4.001, 3.0], [1.0, -1.0], [-0.5, 0.5]])
    assert (toy.log_density("checkerboard", outside, 0.0) == -math.inf).all()
    # a whole split rounded to float32 has a finite data NLL (and the integral stays 1: edges have no area)
    x = load_dataset("checkerboard", "test", n=5000, seed=3).tensors[0]
    assert torch.isfinite(toy.log_density("checkerboard", x, 0.0)).all()


@pytest.mark.unit
def test_data_nll_matches_the_integrated_entropy():
    """data_nll_nats is a Monte-Carlo estimate of H(p) = -int p log p (here by quadrature on a grid)."""
    data = load_dataset("gmm2d", "test", n=20000)
    value = data_nll(None, data, {})["data_nll_nats"]
    xs = torch.linspace(-8, 8, 800, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    lp = toy.log_density("gmm2d", pts)
    entropy = float(-(lp.exp() * lp).sum() * (xs[1] - xs[0]) ** 2)
    std_err = float(toy.log_density("gmm2d", data.tensors[0].double()).std()) / math.sqrt(len(data))
    assert abs(value - entropy) < 4 * std_err


@pytest.mark.unit
def test_data_nll_is_absent_without_a_known_density():
    assert data_nll(None, load_dataset("moons", "test", n=50), {}) is None
    assert data_nll(None, load_dataset("digits", "test", limit=5), {}) is None


@pytest.mark.unit
def test_bad_options_raise_clear_errors():
    with pytest.raises(ConfigError, match="n must be positive"):
        load_dataset("moons", "train", n=0)
    with pytest.raises(ConfigError, match="noise must be > 0"):
        load_dataset("gmm2d", "train", noise=0.0)
    with pytest.raises(ConfigError, match="no closed-form density"):
        toy.log_density("moons", torch.zeros(1, 2))


@pytest.mark.unit
def test_sampler_follows_its_density():
    """The mixture sampler's histogram agrees with the density (1-D, chi-square-free check on bins)."""
    x = load_dataset("gmm1d", "train", n=20000).tensors[0][:, 0].numpy()
    edges = np.linspace(-4, 6, 21)
    counts, _ = np.histogram(x, edges)
    expected = [integrate.quad(lambda v: math.exp(float(toy.log_density("gmm1d", torch.tensor([[v]])))), a, b)[0]
                for a, b in zip(edges[:-1], edges[1:])]
    expected = np.array(expected) * len(x)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 5)
