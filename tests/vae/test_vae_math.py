"""The VAE's formulas against independent oracles: torch.distributions, closed forms, autograd."""
import math

import pytest
import torch
from torch import distributions as D

from genlab.data import DataInfo
from genlab.families.vae.model import VAE, VAEConfig
from genlab.maths.densities import (
    bernoulli_log_likelihood,
    bits_per_dim,
    categorical_log_likelihood,
    gaussian_log_likelihood,
    iwae_log_likelihood,
    kl_normal_std_normal,
    log_normal_pdf,
    reparameterize,
)

pytestmark = pytest.mark.unit


@pytest.mark.unit
def test_log_normal_pdf_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x, mean, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    oracle = D.Independent(D.Normal(mean, torch.exp(0.5 * logvar)), 1).log_prob(x)
    torch.testing.assert_close(log_normal_pdf(x, mean, logvar), oracle)


@pytest.mark.unit
def test_analytic_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mean, logvar = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    q = D.Independent(D.Normal(mean, torch.exp(0.5 * logvar)), 1)
    p = D.Independent(D.Normal(torch.zeros(4), torch.ones(4)), 1)
    torch.testing.assert_close(kl_normal_std_normal(mean, logvar), D.kl_divergence(q, p))


@pytest.mark.unit
def test_sgvb_kl_estimate_is_unbiased_for_the_analytic_kl():
    torch.manual_seed(2)
    mean, logvar = torch.randn(10), torch.randn(10) * 0.5
    z = reparameterize(mean, logvar, 200_000)
    terms = log_normal_pdf(z, mean, logvar) - log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z))
    stderr = terms.std() / math.sqrt(len(terms))
    assert abs(terms.mean() - kl_normal_std_normal(mean, logvar)) < 4 * stderr


@pytest.mark.unit
def test_reparameterize_has_the_right_moments_and_gradients():
    torch.manual_seed(3)
    mean = torch.tensor([1.0, -2.0], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(4.0)], requires_grad=True)
    z = reparameterize(mean, logvar, 100_000)
    torch.testing.assert_close(z.mean(0), mean.detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 2.0]), atol=0.03, rtol=0)
    z.mean(0).sum().backward()
    torch.testing.assert_close(mean.grad, torch.ones(2))   # dz/dmu = 1
    # d E[z]/d logvar = E[eps] exp(logvar/2)/2 ~ 0
    assert logvar.grad.abs().max() < 0.05


@pytest.mark.unit
def test_bernoulli_and_categorical_log_likelihoods():
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 2, (3, 1, 4, 4), generator=g).float()
    logits = torch.randn(3, 1, 4, 4, generator=g)
    oracle = D.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli_log_likelihood(x, logits), oracle)
    levels = torch.randint(0, 16, (3, 1, 4, 4), generator=g).float()
    clogits = torch.randn(3, 16, 1, 4, 4, generator=g)
    oracle = D.Categorical(logits=clogits.movedim(1, -1)).log_prob(levels.long()).flatten(1).sum(1)
    torch.testing.assert_close(categorical_log_likelihood(levels, clogits), oracle)
    # with L samples of z in front, each sample is scored against the same x
    many = torch.randn(5, 3, 16, 1, 4, 4, generator=g)
    torch.testing.assert_close(categorical_log_likelihood(levels, many)[2], categorical_log_likelihood(levels, many[2]))


@pytest.mark.unit
def test_gaussian_log_likelihood_sums_over_the_event():
    x, mean, logvar = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    oracle = D.Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, logvar), oracle)


@pytest.mark.unit
def test_bits_per_dim_converts_nats():
    # 784 * ln 2 nats is exactly one bit per dimension of a 1x28x28 image
    assert bits_per_dim(torch.tensor(784 * math.log(2.0)), (1, 28, 28)).item() == pytest.approx(1.0)


@pytest.mark.unit
def test_iwae_chunking_equals_one_shot_logmeanexp():
    torch.manual_seed(5)
    w = torch.randn(1000, 3) * 3
    chunks = iter(w.split(128))
    got = iwae_log_likelihood(lambda c: next(chunks), 1000, 128)
    torch.testing.assert_close(got, torch.logsumexp(w, 0) - math.log(1000))


def linear_gaussian_vae(d_x=4, d_z=2, sigma=0.5):
    """p(z)=N(0,I), p(x|z)=N(Wz+b, sigma^2 I): log p(x) = log N(x; b, W W^T + sigma^2 I) exactly."""
    torch.manual_seed(6)
    cfg = VAEConfig(hidden=(), z_dim=d_z, likelihood="gaussian", gaussian_std=sigma)
    model = VAE(cfg, DataInfo(kind="points", shape=(d_x,)))
    W, b = model.decoder_net[0].weight, model.decoder_net[0].bias
    marginal = D.MultivariateNormal(b.detach(), W.detach() @ W.detach().T + sigma ** 2 * torch.eye(d_x))
    return model, marginal


@pytest.mark.unit
def test_elbo_le_iwae_k_le_iwae_k2_le_exact_log_likelihood():
    model, marginal = linear_gaussian_vae()
    x = marginal.sample((200,))
    with torch.no_grad():
        exact = marginal.log_prob(x).mean()
        elbo = model.elbo(x, n_samples=64)["elbo"].mean()
        iwae5, iwae50, iwae5000 = (model.iwae(x, k).mean() for k in (5, 50, 5000))
    assert elbo < iwae5 < iwae50 < iwae5000 <= exact + 0.01
    assert exact - iwae5000 < 0.1 * (exact - elbo)   # the bound tightens towards log p(x)


@pytest.mark.unit
def test_elbo_equals_log_likelihood_when_q_is_the_true_posterior():
    model, _ = linear_gaussian_vae(d_x=3, d_z=2, sigma=0.7)
    dec = model.decoder_net[0]
    with torch.no_grad():   # orthogonal columns: the true posterior has a diagonal covariance
        dec.weight.copy_(torch.tensor([[1.5, 0.0], [0.0, -0.8], [0.0, 0.0]]))
        dec.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    W, b, s2 = dec.weight.detach(), dec.bias.detach(), 0.49
    marginal = D.MultivariateNormal(b, W @ W.T + s2 * torch.eye(3))
    cov = torch.linalg.inv(torch.eye(2) + W.T @ W / s2)      # posterior N(A (x - b), cov)
    A = cov @ W.T / s2
    enc = model.encoder[1][0]
    with torch.no_grad():
        enc.weight.copy_(torch.cat([A, torch.zeros(2, 3)]))
        enc.bias.copy_(torch.cat([-A @ b, torch.log(torch.diag(cov))]))
        x = marginal.sample((6,))
        # log p(x, z) - log q(z|x) = log p(x) for every z: the SGVB estimate has zero variance
        sgvb = model.elbo(x, objective="sgvb", n_samples=3)["elbo"]
        torch.testing.assert_close(sgvb, marginal.log_prob(x), atol=1e-4, rtol=1e-4)
        analytic = model.elbo(x, objective="analytic", n_samples=50_000)["elbo"]
        torch.testing.assert_close(analytic, marginal.log_prob(x), atol=0.03, rtol=0)


@pytest.mark.unit
def test_estimator_spread_matches_closed_forms_at_a_narrow_and_at_the_true_posterior():
    from genlab.families.vae.experiments import estimator_spread
    d_z, batch = 3, 50
    model, marginal = linear_gaussian_vae(d_x=4, d_z=d_z)
    x = marginal.sample((batch,))
    enc = model.encoder[1][0]
    with torch.no_grad():    # q(z|x) = N(0, e^-20 I): log p(x|z) is ~constant, log q - log p = -eps^2 / 2 + const
        enc.weight.zero_()
        enc.bias.copy_(torch.cat([torch.zeros(d_z), torch.full((d_z,), -20.0)]))
    e = estimator_spread(model, x, repeats=400)
    # Var(sum_d eps_d^2 / 2) = d / 2 per example; the batch mean of independent examples: d / (2 B)
    assert e["sgvb_std"] == pytest.approx(math.sqrt(d_z / (2 * batch)), rel=0.15)
    assert e["analytic_std"] < 1e-3 and abs(e["difference_mean"]) < 4 * e["difference_stderr"]
    # the true posterior (test above): log p(x, z) - log q(z|x) = log p(x) for every z, so SGVB's value has
    # zero variance while the analytic form's does not: the value's spread can favour either estimator
    model, marginal = linear_gaussian_vae(d_x=3, d_z=2, sigma=0.7)
    dec, enc = model.decoder_net[0], model.encoder[1][0]
    with torch.no_grad():
        dec.weight.copy_(torch.tensor([[1.5, 0.0], [0.0, -0.8], [0.0, 0.0]]))
        dec.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
        W, b, s2 = dec.weight.detach(), dec.bias.detach(), 0.49
        cov = torch.linalg.inv(torch.eye(2) + W.T @ W / s2)
        A = cov @ W.T / s2
        enc.weight.copy_(torch.cat([A, torch.zeros(2, 3)]))
        enc.bias.copy_(torch.cat([-A @ b, torch.log(torch.diag(cov))]))
    marginal = D.MultivariateNormal(b, W @ W.T + s2 * torch.eye(3))
    x = marginal.sample((20,))
    e = estimator_spread(model, x, repeats=100)
    assert e["sgvb_std"] < 1e-4 < e["analytic_std"]
    assert e["sgvb_mean"] == pytest.approx(float(marginal.log_prob(x).mean()), abs=1e-4)


@pytest.mark.unit
def test_estimator_spread_gradient_variance_equals_the_variance_of_stored_gradients():
    from genlab.families.vae.experiments import estimator_spread
    model, marginal = linear_gaussian_vae()
    x = marginal.sample((30,))
    before = torch.random.get_rng_state()
    e = estimator_spread(model, x, repeats=20, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)       # the global stream is untouched
    for objective in ("sgvb", "analytic"):
        grads = []
        for r in range(20):
            torch.manual_seed(7 + r)
            value = model.elbo(x, objective=objective, n_samples=1)["elbo"].mean()
            grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(value, list(model.encoder.parameters()))]))
        assert e[f"{objective}_grad_var"] == pytest.approx(float(torch.stack(grads).var(0).sum()), rel=1e-4)
    assert e["analytic_grad_var"] < e["sgvb_grad_var"]      # the KL's gradient in closed form removes its noise
