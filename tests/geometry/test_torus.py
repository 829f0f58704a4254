"""The torus family: area-uniform sampler, surface distance, von Mises posterior
(density, KL, implicit reparameterization), the torus-vae model, its CLI and the quick experiment."""
import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from genlab.cli import main
from genlab.data import load_dataset
from genlab.data.registry import DataInfo
from genlab.errors import ConfigError, DataError
from genlab.experiments import run_experiment
from genlab.families.geometry.data import (
    sample_tube_angles,
    surface_distance,
    torus_angles,
    torus_point,
    torus_surface_distance,
)
from genlab.families.geometry.model import (
    geodesic_interpolation,
    kl_von_mises_uniform,
    mean_resultant,
    sample_von_mises,
    von_mises_log_prob,
    von_mises_offset_grad,
    wrap_angle,
)
from genlab.model import build_model

R, r = 2.0, 0.5


def tube_cdf(v, R=R, r=r):
    """CDF of the area density (1 + (r/R) cos v)/(2 pi) on [-pi, pi)."""
    return (v + math.pi + (r / R) * np.sin(v)) / (2 * math.pi)


# ----------------------------------------------------------------- the data
@pytest.mark.unit
def test_tube_angle_is_uniform_by_area_and_uniform_angles_are_not():
    rng = np.random.default_rng(123)
    v = sample_tube_angles(100_000, R, r, rng)
    edges = np.linspace(-math.pi, math.pi, 41)
    counts, _ = np.histogram(v, edges)
    expected = len(v) * np.diff(tube_cdf(edges))
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    assert stats.kstest(v, tube_cdf).pvalue > 1e-3
    naive = rng.uniform(-math.pi, math.pi, 100_000)          # uniform in angle: too many inner points
    naive_counts, _ = np.histogram(naive, edges)
    assert stats.chisquare(naive_counts, expected).pvalue < 1e-10
    assert stats.kstest(naive, tube_cdf).pvalue < 1e-10


@pytest.mark.unit
def test_dataset_points_lie_on_the_torus_with_area_density_and_fixed_splits():
    cfg = dict(n_train=20_000, n_val=500, n_test=500)
    train = load_dataset("torus", "train", **cfg)
    x = train.tensors[0]
    assert train.info.kind == "points" and train.info.shape == (3,)
    assert train.info.extras["R"] == R and train.info.extras["r"] == r
    assert float(surface_distance(x, train.info).max()) < 1e-5
    v = torus_angles(x.double(), R)[:, 1].numpy()
    assert stats.kstest(v, tube_cdf).pvalue > 1e-3
    u = torus_angles(x.double(), R)[:, 0].numpy()
    assert stats.kstest(u, stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue > 1e-3
    assert torch.equal(load_dataset("torus", "test", **cfg).tensors[0], load_dataset("torus", "test", **cfg).tensors[0])
    assert not torch.allclose(load_dataset("torus", "val", **cfg).tensors[0],
                              load_dataset("torus", "test", **cfg).tensors[0])
    noisy = load_dataset("torus", "test", noise_std=0.01, **cfg)
    # mean distance of isotropic noise to a smooth surface ~ std * E|N(0,1)| = 0.01 * sqrt(2/pi)
    assert float(surface_distance(noisy.tensors[0], noisy.info).mean()) == pytest.approx(0.01 * math.sqrt(2 / math.pi), rel=0.15)


@pytest.mark.unit
def test_dataset_config_errors():
    with pytest.raises(ConfigError, match="minor_radius"):
        load_dataset("torus", "train", minor_radius=3.0)
    with pytest.raises(DataError, match="torus"):
        surface_distance(torch.zeros(2, 3), DataInfo(kind="points", shape=(3,)))


@pytest.mark.unit
def test_surface_distance_on_known_points():
    rng = np.random.default_rng(0)
    u, v = rng.uniform(-math.pi, math.pi, (2, 500))
    on = torus_point(u, v, R, r)
    assert np.abs(torus_surface_distance(on, R, r)).max() < 1e-12
    centre = np.stack([R * np.cos(u), R * np.sin(u), 0 * u], -1)          # centre line of the tube
    np.testing.assert_allclose(torus_surface_distance(centre, R, r), r)
    h = 0.7
    known = {(0.0, 0.0, 0.0): R - r, (R + r + 1.0, 0.0, 0.0): 1.0, (0.0, 0.0, h): math.hypot(R, h) - r,
             (0.0, R, r + 0.25): 0.25}
    for p, d in known.items():
        assert torus_surface_distance(np.array(p), R, r) == pytest.approx(d)
        assert float(torus_surface_distance(torch.tensor(p, dtype=torch.float64), R, r)) == pytest.approx(d)
    # a point pushed along the surface normal by t is at distance |t|
    normal = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], -1)
    np.testing.assert_allclose(torus_surface_distance(on + 0.2 * normal, R, r), 0.2, atol=1e-12)
    np.testing.assert_allclose(torus_angles(on, R), np.stack([u, v], -1), atol=1e-12)


# ----------------------------------------------------------------- the von Mises posterior
@pytest.mark.unit
@pytest.mark.parametrize("mu,kappa", [(0.3, 0.05), (-2.0, 1.7), (3.0, 40.0), (1.0, 500.0)])
def test_von_mises_density_integrates_to_one_and_matches_torch(mu, kappa):
    def q(t):
        return math.exp(float(von_mises_log_prob(torch.tensor(t, dtype=torch.float64), torch.tensor(mu, dtype=torch.float64),
                                                 torch.tensor(kappa, dtype=torch.float64))))
    total = integrate.quad(q, -math.pi, math.pi, points=[mu], limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-8)
    t = torch.linspace(-math.pi, math.pi, 17, dtype=torch.float64)
    ref = torch.distributions.VonMises(torch.tensor(mu, dtype=torch.float64),
                                       torch.tensor(kappa, dtype=torch.float64)).log_prob(t)
    mine = von_mises_log_prob(t, torch.tensor(mu, dtype=torch.float64), torch.tensor(kappa, dtype=torch.float64))
    torch.testing.assert_close(mine, ref, rtol=1e-6, atol=1e-6)     # torch's log I0 is a ~1e-7 polynomial fit
    np.testing.assert_allclose(mine.numpy(), stats.vonmises.logpdf(t.numpy(), kappa, loc=mu), rtol=1e-10)


@pytest.mark.unit
@pytest.mark.parametrize("kappa", [0.01, 0.5, 3.0, 30.0, 300.0])
def test_kl_to_uniform_matches_quadrature(kappa):
    k = torch.tensor(kappa, dtype=torch.float64)

    def integrand(t):
        logq = float(von_mises_log_prob(torch.tensor(t, dtype=torch.float64), torch.tensor(0.0), k))
        return math.exp(logq) * (logq + math.log(2 * math.pi))
    kl = integrate.quad(integrand, -math.pi, math.pi, points=[0.0], limit=400)[0]
    assert float(kl_von_mises_uniform(k)) == pytest.approx(kl, rel=1e-7, abs=1e-12)


@pytest.mark.unit
def test_kl_to_uniform_matches_monte_carlo_at_large_kappa():
    torch.manual_seed(0)
    k = torch.tensor(1e4, dtype=torch.float64)
    theta = torch.distributions.VonMises(torch.tensor(0.0, dtype=torch.float64), k).sample((200_000,))
    terms = von_mises_log_prob(theta, torch.tensor(0.0), k) + math.log(2 * math.pi)
    assert float(kl_von_mises_uniform(k)) == pytest.approx(float(terms.mean()), abs=4 * float(terms.std()) / 447)


@pytest.mark.unit
@pytest.mark.parametrize("kappa,rtol", [(0.5, 1e-6), (5.0, 1e-6), (30.0, 1e-6), (3000.0, 1e-4)])
def test_implicit_gradient_matches_finite_differences_of_the_inverse_cdf(kappa, rtol):
    """d eps/d kappa at a fixed CDF value u, against scipy's inverse CDF differenced in kappa."""
    u = np.array([0.002, 0.05, 0.3, 0.45, 0.6, 0.9, 0.995])
    eps = stats.vonmises.ppf(u, kappa)
    h = 1e-4 * kappa
    fd = (stats.vonmises.ppf(u, kappa + h) - stats.vonmises.ppf(u, kappa - h)) / (2 * h)
    grad = von_mises_offset_grad(torch.tensor(eps), torch.full((len(u),), kappa, dtype=torch.float64))
    np.testing.assert_allclose(grad.numpy(), fd, rtol=rtol, atol=1e-12)


@pytest.mark.unit
def test_reparameterized_samples_give_unbiased_gradients():
    """d/dkappa E[cos(theta)] = A'(kappa) = 1 - A/kappa - A^2 and d/dmu E[cos theta] = -A sin(mu), with
    A = I1/I0, estimated by autograd through the sampler."""
    torch.manual_seed(1)
    for kappa0, mu0 in ((0.7, 0.4), (8.0, -1.2)):
        mu = torch.tensor(mu0, dtype=torch.float64, requires_grad=True)
        kappa = torch.tensor(kappa0, dtype=torch.float64, requires_grad=True)
        theta = sample_von_mises(mu, kappa, 400_000)
        assert abs(float(theta.detach().mean() - mu.detach())) < 0.02
        g_mu, g_kappa = torch.autograd.grad(torch.cos(theta).mean(), (mu, kappa))
        A = float(mean_resultant(torch.tensor(kappa0, dtype=torch.float64)))
        dA = 1 - A / kappa0 - A * A
        assert float(g_kappa) == pytest.approx(dA * math.cos(mu0), abs=4e-3)
        assert float(g_mu) == pytest.approx(-A * math.sin(mu0), abs=4e-3)


@pytest.mark.unit
def test_wrap_and_geodesic_interpolation():
    d = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi, 7.0, -7.0, 2 * math.pi], dtype=torch.float64)
    w = wrap_angle(d)
    assert bool(((w > -math.pi) & (w <= math.pi + 1e-12)).all())
    torch.testing.assert_close(torch.cos(w), torch.cos(d))
    torch.testing.assert_close(torch.sin(w), torch.sin(d), atol=1e-12, rtol=0)
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([-3.0, 1.0])
    path = geodesic_interpolation(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(torch.cos(path[-1]), torch.cos(b))
    assert float(path[2, 0]) == pytest.approx(math.pi)            # the short way round passes pi, not 0
    assert float(path[2, 1]) == pytest.approx(0.5)


# ----------------------------------------------------------------- the model
def _model(**kw):
    info = load_dataset("torus", "val", n_val=64).info
    return build_model("torus-vae", info, hidden=(16, 16), **kw)


@pytest.mark.unit
def test_gradients_reach_the_encoder_through_the_angles():
    torch.manual_seed(0)
    model = _model()
    x = load_dataset("torus", "val", n_val=64).tensors[0]
    mu, kappa = model.posterior(x)
    rec = model.log_likelihood(x, sample_von_mises(mu, kappa)).mean()   # the reconstruction term alone
    rec.backward()
    head = model.encoder[-1].weight.grad.view(3, model.latent_dim, -1)    # rows: a, b, raw kappa per circle
    assert all(float(head[i].abs().sum()) > 0 for i in range(3))          # mean angle and concentration
    assert float(model.encoder[0].weight.grad.abs().sum()) > 0


@pytest.mark.unit
def test_model_protocol_and_iwae_bound():
    torch.manual_seed(0)
    model = _model()
    x = load_dataset("torus", "val", n_val=64).tensors[0]
    loss, logs = model.loss((x,))
    assert loss.dim() == 0 and set(logs) == {"rec", "kl"}
    with torch.no_grad():
        m = model.eval_metrics((x,), iwae_k=64)
    assert set(m) == {"elbo_nats", "rec_nats", "kl_nats", "nll_nats"} and all(v.shape == (64,) for v in m.values())
    torch.testing.assert_close(m["elbo_nats"], -m["rec_nats"] - m["kl_nats"])
    assert float(-m["nll_nats"].mean()) >= float(m["elbo_nats"].mean()) - 0.05   # IWAE_k >= ELBO
    assert model.encode(x).shape == (64, 2) and model.decode(model.encode(x)).shape == (64, 3)
    assert model.sample(10).shape == (10, 3)
    learned = _model(gaussian_std=0.0)
    assert learned.decoder_net[-1].out_features == 6
    with pytest.raises(ConfigError, match="--data torus"):
        build_model("torus-vae", DataInfo(kind="image", shape=(1, 8, 8)))


# ----------------------------------------------------------------- CLI and experiment
TINY = ["--epochs", "1", "--n-train", "256", "--n-val", "64", "--n-test", "64", "--batch-size", "64",
        "--no-progress", "--iwae-k", "4"]


@pytest.mark.unit
def test_cli_trains_torus_vae_and_the_euclidean_vae_on_the_torus(tmp_path):
    assert main(["train", "torus-vae", "--data", "torus", "--hidden", "16", "16", "--out", str(tmp_path / "t"), *TINY]) == 0
    result = json.loads((tmp_path / "t" / "eval.json").read_text())
    assert {"elbo_nats", "nll_nats", "kl_nats"} <= set(result["metrics"])
    assert (tmp_path / "t" / "figures" / "reconstructions_3d.png").exists()
    assert main(["train", "vae", "--data", "torus", "--z-dim", "2", "--hidden", "16", "--out", str(tmp_path / "e"),
                 *TINY]) == 0
    assert (tmp_path / "e" / "figures" / "samples_3d.png").exists()


@pytest.mark.slow
def test_quick_experiment_summary(tmp_path):
    s = run_experiment("torus-interpolation", tmp_path, quick=True)
    for name in ("euclidean", "toroidal"):
        assert math.isfinite(s[name]["surface_error"]) and s[name]["surface_error"] >= 0
        assert math.isfinite(s[name]["reconstruction_error"]) and s[name]["reconstruction_error"] >= 0
    assert all((tmp_path / p).exists() for p in s["figures"])
    assert json.loads((tmp_path / "summary.json").read_text())["toroidal"] == s["toroidal"]


def _kl_mpmath(kappa):
    """Oracle: kappa I1/I0 - log I0 with mpmath's Bessel functions at the caller's working precision."""
    import mpmath
    k = mpmath.mpf(kappa)
    return k * mpmath.besseli(1, k) / mpmath.besseli(0, k) - mpmath.log(mpmath.besseli(0, k))


@pytest.mark.unit
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_value_and_gradient_match_high_precision_from_1e_minus_2_to_1e5(dtype):
    """Issue 10 item 2: float32 autograd of kappa A - log I0 had the wrong sign at kappa=2000."""
    import mpmath
    kappas = np.logspace(-2, 5, 29)
    k = torch.tensor(kappas, dtype=dtype, requires_grad=True)
    kl = kl_von_mises_uniform(k)
    (grad,) = torch.autograd.grad(kl.sum(), k)
    with mpmath.workdps(50):
        ref = np.array([float(_kl_mpmath(float(v))) for v in k.detach().double()])
        dref = np.array([float(mpmath.diff(_kl_mpmath, mpmath.mpf(float(v)))) for v in k.detach().double()])
    assert kl.dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(kl.detach().double().numpy(), ref, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(grad.double().numpy(), dref, rtol=1e-4)
    assert (grad > 0).all()                                   # KL grows with the concentration


@pytest.mark.unit
def test_minimising_the_kl_alone_lowers_kappa_in_float32():
    log_k = torch.tensor([math.log(5000.0)], requires_grad=True)
    opt = torch.optim.Adam([log_k], lr=0.05)
    start = float(kl_von_mises_uniform(log_k.exp()))
    for _ in range(50):
        opt.zero_grad()
        kl_von_mises_uniform(log_k.exp()).sum().backward()
        opt.step()
    assert float(log_k.exp()) < 5000.0 / 5 and float(kl_von_mises_uniform(log_k.exp())) < start - 0.5
