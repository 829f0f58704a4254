"""The adversarial family: f-divergences vs closed forms and quadrature, Fenchel conjugates, the optimal
discriminator, the AAE's Eq. 15 terms, CLI smoke tests and the quick experiments."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, optimize
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, norm

from genlab.cli import main
from genlab.data.registry import load_dataset
from genlab.families.adversarial.fdiv import DIVERGENCES, f_divergence, optimal_critic, variational_bound
from genlab.model import build_model
from genlab.training.config import TrainConfig
from genlab.training.loop import make_optimizers


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path_factory.getbasetemp() / "genlab_cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # tiny networks: a second thread only adds contention
    yield
    torch.set_num_threads(threads)


def _f(name):
    return lambda u: float(DIVERGENCES[name].f(torch.tensor(u, dtype=torch.float64)))


def quad_divergence(name, p, q, lo=-15, hi=15):
    """int q(x) f(p(x)/q(x)) dx by scipy quadrature."""
    f = _f(name)
    return integrate.quad(lambda x: q(x) * f(p(x) / q(x)), lo, hi, limit=200)[0]


# ----------------------------------------------------------------- f-divergences
@pytest.mark.unit
def test_kl_generator_gives_kl_on_discrete_distributions():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(7)), rng.dirichlet(np.ones(7))
    got = f_divergence(torch.tensor(p), torch.tensor(q), "kl")
    assert float(got) == pytest.approx(entropy(p, q), rel=1e-10)
    assert float(f_divergence(torch.tensor(p), torch.tensor(q), "reverse_kl")) == pytest.approx(entropy(q, p), rel=1e-10)
    assert float(f_divergence(torch.tensor(p), torch.tensor(q), "js")) == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-8)
    assert float(f_divergence(torch.tensor(p), torch.tensor(q), "tv")) == pytest.approx(0.5 * np.abs(p - q).sum())
    assert float(f_divergence(torch.tensor(p), torch.tensor(q), "pearson")) == pytest.approx(((p - q) ** 2 / q).sum())


@pytest.mark.unit
def test_kl_of_two_gaussians_by_quadrature_matches_closed_form():
    m1, s1, m2, s2 = 0.3, 0.8, -0.5, 1.3
    p, q = norm(m1, s1).pdf, norm(m2, s2).pdf
    closed = math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5
    assert quad_divergence("kl", p, q) == pytest.approx(closed, rel=1e-6)
    closed_rev = math.log(s1 / s2) + (s2 ** 2 + (m1 - m2) ** 2) / (2 * s1 ** 2) - 0.5
    assert quad_divergence("reverse_kl", p, q) == pytest.approx(closed_rev, rel=1e-6)


@pytest.mark.unit
def test_other_divergences_of_equal_variance_gaussians():
    d, s = 0.9, 1.0
    p, q = norm(d, s).pdf, norm(0, s).pdf
    assert quad_divergence("pearson", p, q) == pytest.approx(math.exp(d ** 2 / s ** 2) - 1, rel=1e-6)
    assert quad_divergence("tv", p, q) == pytest.approx(2 * norm.cdf(d / (2 * s)) - 1, rel=1e-6)
    assert quad_divergence("hellinger", p, q) == pytest.approx(2 * (1 - math.exp(-d ** 2 / (8 * s ** 2))), rel=1e-6)
    m = lambda x: 0.5 * (p(x) + q(x))   # noqa: E731
    js = 0.5 * (integrate.quad(lambda x: p(x) * math.log(p(x) / m(x)), -15, 15)[0]
                + integrate.quad(lambda x: q(x) * math.log(q(x) / m(x)), -15, 15)[0])
    assert quad_divergence("js", p, q) == pytest.approx(js, rel=1e-6)
    assert quad_divergence("gan", p, q) == pytest.approx(2 * js - math.log(4), rel=1e-6)


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_conjugate_satisfies_fenchel(name):
    div = DIVERGENCES[name]
    f = _f(name)
    lo, hi = div.domain
    ts = np.linspace(max(lo, -2.0), min(hi, 2.0), 9)[1:-1]
    for t in ts:
        res = optimize.minimize_scalar(lambda u: -(u * t - f(u)), bounds=(1e-9, 200.0), method="bounded",
                                       options={"xatol": 1e-10})
        sup = -res.fun
        assert float(div.conjugate(torch.tensor(t, dtype=torch.float64))) == pytest.approx(sup, abs=2e-4), t
    # f(1) = 0, except the GAN generator, shifted by -log 4 (its D_f is 2 JS - log 4)
    assert f(1.0) == pytest.approx(-math.log(4) if name == "gan" else 0.0, abs=1e-12)


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_stable_conj_activation_equals_composition(name):
    div = DIVERGENCES[name]
    v = torch.linspace(-3, 3, 13, dtype=torch.float64)
    t = div.activation(v)
    assert torch.all(t < div.domain[1]) and torch.all(t > div.domain[0])
    torch.testing.assert_close(div.conj_activation(v), div.conjugate(t))


@pytest.mark.unit
def test_variational_bound_is_tight_at_the_optimal_critic():
    """E_P[T*] - E_Q[f*(T*)] with T* = f'(p/q) equals D_f (KL, two Gaussians, by sampling)."""
    g = torch.Generator().manual_seed(0)
    xp = 0.5 + torch.randn(200_000, generator=g, dtype=torch.float64)
    xq = torch.randn(200_000, generator=g, dtype=torch.float64)
    log_ratio = lambda x: -0.5 * (x - 0.5) ** 2 + 0.5 * x ** 2   # noqa: E731
    t_real, t_fake = optimal_critic(log_ratio(xp).exp(), "kl"), optimal_critic(log_ratio(xq).exp(), "kl")
    # the activation for KL is the identity, so the raw critic output is T itself
    bound = variational_bound(t_real, t_fake, "kl")
    assert float(bound) == pytest.approx(0.125, abs=0.01)


@pytest.mark.unit
def test_trained_discriminator_approaches_p_over_p_plus_q():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(400):
        xp, xq = torch.randn(512, 1) + 1.0, torch.randn(512, 1) - 1.0
        real, fake = net(xp), net(xq)
        loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
            F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.linspace(-2, 2, 9).unsqueeze(1)
    p, q = torch.tensor(norm(1, 1).pdf(x.numpy())), torch.tensor(norm(-1, 1).pdf(x.numpy()))
    with torch.no_grad():
        d = torch.sigmoid(net(x)).double()
    assert torch.max(torch.abs(d - p / (p + q))) < 0.05


# ----------------------------------------------------------------- the AAE's Eq. 15
def _digits_aae(**kw):
    data = load_dataset("digits", "train", view="continuous")
    torch.manual_seed(0)
    return build_model("aae", data.info, hidden=[64], disc_hidden=[64], **kw), data.tensors[0][:128]


@pytest.mark.unit
def test_aae_discriminator_loss_is_bce_of_prior_real_and_codes_fake():
    model, x = _digits_aae(z_dim=3)
    z_fake, z_real = model.encode(x), model.prior.sample(len(x))
    d_real, d_fake = torch.sigmoid(model.discriminate(z_real)), torch.sigmoid(model.discriminate(z_fake))
    expected = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())     # -V(D, E), Eqs. 16-17
    torch.testing.assert_close(model.discriminator_loss(z_fake, z_real), expected, rtol=1e-5, atol=1e-6)
    torch.manual_seed(1)
    loss, logs = model.loss((x,), "discriminator")
    torch.testing.assert_close(loss, (1 - model.config.lam) * logs["d_loss"])
    rec, rlogs = model.loss((x,), "reconstruction")
    r = torch.tanh(model.decoder_net(model.encode(x))).view_as(x)              # tanh decoder
    torch.testing.assert_close(rec, model.config.lam * (((2 * x - 1) - r) ** 2).mean())   # Rec on [-1, 1]
    g, _ = model.loss((x,), "generator")
    torch.testing.assert_close(g, (1 - model.config.lam) * -torch.log(torch.sigmoid(model.discriminate(model.encode(x)))).mean(),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.unit
def test_aae_pixel_scales_and_reconstruction_metrics():
    """Pixels on [-1, 1] with a tanh decoder by default, [0, 1] with a sigmoid as an option; the eval
    metrics name the scale: rec_mse_pm1 is the scale of the course reference (< 0.05, docs/COURSES.md), rec_mse_01 a quarter of it."""
    for output in ("tanh", "sigmoid"):
        model, x = _digits_aae(z_dim=3, output=output)
        model.eval()
        with torch.no_grad():
            z = model.encode(x)
            rec = model.reconstruct(x)
            m = model.eval_metrics((x,))
        assert rec.min() >= 0 and rec.max() <= 1 and model.sample(3).min() >= 0
        torch.testing.assert_close(m["rec_mse_01"], ((x - rec) ** 2).flatten(1).mean(-1))
        torch.testing.assert_close(m["rec_mse_pm1"], (((2 * x - 1) - (2 * rec - 1)) ** 2).flatten(1).mean(-1))
        torch.testing.assert_close(m["rec_mse"], m["rec_mse_pm1"] if output == "tanh" else m["rec_mse_01"])
        raw = model.decoder_net(z).view_as(x)
        expected = torch.tanh(raw) if output == "tanh" else torch.sigmoid(raw)
        torch.testing.assert_close(model.decode_scaled(z), expected)
    tanh_model, _ = _digits_aae(z_dim=3)
    assert tanh_model.config.output == "tanh"


@pytest.mark.unit
def test_aae_discriminator_loss_falls_when_trained_alone():
    model, x = _digits_aae(z_dim=3)
    opt = torch.optim.Adam(model.discriminator.parameters(), lr=1e-3)
    encoder_before = [p.clone() for p in model.encoder_net.parameters()]
    torch.manual_seed(0)
    first = float(model.loss((x,), "discriminator")[1]["d_loss"])
    for _ in range(150):
        loss, logs = model.loss((x,), "discriminator")
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(logs["d_loss"]) < 0.8 * first
    assert all(torch.equal(a, b) for a, b in zip(encoder_before, model.encoder_net.parameters()))


@pytest.mark.unit
def test_aae_phases_and_encoders():
    model, x = _digits_aae(z_dim=2, encoder="universal", prior="mixture")
    assert list(model.phases()) == ["discriminator", "autoencoder"]
    assert not torch.equal(model.encode(x[:4]), model.encode(x[:4]))        # noise input: stochastic
    assert model.sample(5).shape == (5, 1, 8, 8)
    # mixture prior density integrates to one over the plane
    g = torch.linspace(-8, 8, 401)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    dens = model.prior.log_prob(torch.stack([gx, gy], -1).reshape(-1, 2)).exp()
    assert float(dens.sum() * (g[1] - g[0]) ** 2) == pytest.approx(1.0, abs=1e-3)
    ae, _ = _digits_aae(lam=1.0)
    assert list(ae.phases()) == ["reconstruction"]
    phased, _ = _digits_aae(schedule="phased")
    assert list(phased.phases()) == ["reconstruction", "discriminator", "generator"]


def _encoder_update(model, x, phases):
    """The change of the encoder's weights after one Adam step per phase, as genlab's training loop takes them."""
    opts = make_optimizers(model, TrainConfig(lr=1e-3))
    before = [p.detach().clone() for p in model.encoder_net.parameters()]
    torch.manual_seed(0)
    for phase in phases:
        opts[phase].zero_grad()
        model.loss((x,), phase)[0].backward()
        opts[phase].step()
    return torch.cat([(p.detach() - b).flatten() for p, b in zip(model.encoder_net.parameters(), before)])


@pytest.mark.unit
def test_aae_joint_step_weighs_reconstruction_and_adversarial_gradients_by_lambda():
    """The default schedule: E and R take one Adam step on lambda * Rec + (1 - lambda) * G. Against a hand
    computation: g = lambda * dRec + (1 - lambda) * dG by autograd on the formulas, and Adam's first step
    -lr * g / (|g| + eps) (m_hat = g, v_hat = g^2; Kingma & Ba 2015, Alg. 1)."""
    lam = 0.9
    model, x = _digits_aae(z_dim=3, lam=lam)
    assert list(model.phases()) == ["discriminator", "autoencoder"]
    params = list(model.encoder_net.parameters())
    z = model.encoder_net(2 * x - 1)                                           # deterministic encoder on [-1, 1]
    rec = (((2 * x - 1) - torch.tanh(model.decoder_net(z)).view_as(x)) ** 2).mean()
    adv = -F.logsigmoid(model.discriminator(z)).mean()                         # -log D(E(x)), non-saturating
    d_rec, d_adv = torch.autograd.grad(rec, params, retain_graph=True), torch.autograd.grad(adv, params)
    g = torch.cat([(lam * a + (1 - lam) * b).flatten() for a, b in zip(d_rec, d_adv)])
    torch.testing.assert_close(_encoder_update(model, x, ["autoencoder"]), -1e-3 * g / (g.abs() + 1e-8),
                               rtol=1e-4, atol=1e-7)


@pytest.mark.unit
def test_aae_lambda_changes_the_encoder_step_only_in_the_joint_schedule():
    """Why the phased schedule collapsed at lambda = 0.995 (issue 24): each phase has its own Adam, whose step
    does not change when its loss is multiplied by a constant (Kingma & Ba 2015, Sec. 2.1), so the encoder's
    update is the same for every lambda (up to Adam's eps on tiny gradients: ~1% of the update's norm, measured);
    in the joint schedule lambda changes it (~110%)."""
    change = {}
    for schedule in ("joint", "phased"):
        u = {}
        for lam in (0.5, 0.9):
            model, x = _digits_aae(z_dim=3, lam=lam, schedule=schedule)
            u[lam] = _encoder_update(model, x, list(model.phases()))
        change[schedule] = float((u[0.5] - u[0.9]).norm() / u[0.5].norm())
    assert change["phased"] < 0.1 and change["joint"] > 0.5, change


@pytest.mark.unit
def test_gan_losses_match_003_formulas():
    data = load_dataset("digits", "train", view="continuous")
    torch.manual_seed(0)
    for arch in ("mlp", "dcgan"):
        model = build_model("gan", data.info, arch=arch, hidden=[32], channels=8, gen_loss="minmax")
        x = data.tensors[0][:32]
        torch.manual_seed(3)
        d_loss, _ = model.loss((x,), "discriminator")
        torch.manual_seed(3)
        fake = model.generate(model.noise(len(x), "cpu"))
        expected = -(torch.log(torch.sigmoid(model.critic(x))).mean() + torch.log(1 - torch.sigmoid(model.critic(fake))).mean())
        torch.testing.assert_close(d_loss, expected, rtol=1e-5, atol=1e-6)
        torch.manual_seed(4)
        g_loss, _ = model.loss((x,), "generator")
        torch.manual_seed(4)
        expected_g = torch.log(1 - torch.sigmoid(model.critic(model.generate(model.noise(len(x), "cpu"))))).mean()
        torch.testing.assert_close(g_loss, expected_g, rtol=1e-5, atol=1e-6)
        assert model.sample(3).shape == (3, 1, 8, 8)
        assert model.phases()["generator"]["betas"] == (0.5, 0.999)


# ----------------------------------------------------------------- CLI and experiments
@pytest.mark.parametrize("model,extra", [("aae", ["--z-dim", "4", "--hidden", "32", "--disc-hidden", "32"]),
                                         ("gan", ["--arch", "dcgan", "--channels", "8", "--divergence", "js"])])
@pytest.mark.unit
def test_cli_train_and_eval_json(model, extra, tmp_path, capsys):
    out = tmp_path / model
    assert main(["train", model, "--data", "digits", "--epochs", "1", "--out", str(out), "--no-progress",
                 "--no-report", *extra]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = result["metrics"]
    assert metrics["fid"] > 0 and metrics["fid_samples"] == 360
    assert 1.0 <= metrics["classifier_score"] <= 10.0


EXPERIMENT_KEYS = {
    "aae-mnist": {"test_rec_mse", "fid_local", "reference_rec_mse", "epochs_shown"},
    "aae-vs-ae-2d": {"ae_z2", "aae_z2", "epochs_shown"},
    "aae-stochastic-z20": {"deterministic", "gaussian"},
    "gan-mnist": {"fid_local", "fid_samples", "epochs_shown"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPERIMENT_KEYS))
def test_quick_experiment(name, tmp_path):
    assert main(["experiment", "run", name, "--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert EXPERIMENT_KEYS[name] <= set(summary)
    figures = list((tmp_path / "figures").glob("*.png"))
    assert len(figures) >= 4


# ----------------------------------------------------------------- the lambda = 1 autoencoder and KL as an f-divergence
@pytest.mark.unit
def test_mean_image_mse_is_the_mse_of_reconstructing_by_the_mean_image_on_pm1_pixels():
    from genlab.families.adversarial.experiments import mean_image_mse
    x = torch.rand(50, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    direct = float((((2 * x - 1) - (2 * x.mean(0) - 1)) ** 2).mean())
    assert mean_image_mse(x) == pytest.approx(direct, rel=1e-6)


@pytest.mark.unit
def test_lambda1_check_fails_when_every_input_gets_the_same_reconstruction():
    from genlab.experiments.common import reconstruction_spread
    from genlab.families.adversarial.experiments import check_aae_lambda1
    model, x = _digits_aae(z_dim=8, lam=1.0)
    summary = {"data": "digits", "test_rec_mse_pm1": 0.02, "mean_image_mse_pm1": 0.2, "unexplained_fraction": 0.1,
               "reconstruction_spread": reconstruction_spread(model, x)}
    assert summary["reconstruction_spread"] > 0.01
    with torch.no_grad():                       # a collapsed code: the decoder ignores z
        model.decoder_net[0].weight.zero_()
    collapsed = {**summary, "reconstruction_spread": reconstruction_spread(model, x)}
    assert collapsed["reconstruction_spread"] < 1e-6 and not check_aae_lambda1(collapsed).holds
    assert not check_aae_lambda1({**summary, "reconstruction_spread": 0.9, "unexplained_fraction": 0.6}).holds
    assert check_aae_lambda1({**summary, "reconstruction_spread": 0.9}).holds


@pytest.mark.unit
def test_kl_as_f_divergence_converges_to_the_closed_form_and_a_wrong_f_breaks_the_check(monkeypatch, tmp_path):
    from genlab.experiments.common import Both
    from genlab.experiments.registry import Context
    from genlab.families.adversarial import experiments as ex
    from genlab.families.adversarial import fdiv
    monkeypatch.setattr(ex, "FDIV_SAMPLES", Both(full=[10, 100, 1000, 10_000], quick=[10, 100, 1000, 10_000]))
    monkeypatch.setattr(ex, "FDIV_REPEATS", Both(full=100, quick=100))
    monkeypatch.setattr(ex, "line_plot", lambda *a, **k: tmp_path / "figure.png")
    ctx = Context(tmp_path, True, None)
    s = ex.kl_f_divergence(ctx)
    (m1, s1), (m2, s2) = ex.FDIV_P, ex.FDIV_Q                          # KL of two Gaussians, written out
    assert s["closed_form_kl"] == pytest.approx(math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5,
                                                abs=1e-6)
    assert ex.check_kl_f_divergence(s).holds
    pearson = fdiv.DIVERGENCES["pearson"]                             # chi^2 in place of KL: off the closed form
    monkeypatch.setattr(fdiv, "get_divergence", lambda name: pearson)
    assert not ex.check_kl_f_divergence(ex.kl_f_divergence(ctx)).holds
