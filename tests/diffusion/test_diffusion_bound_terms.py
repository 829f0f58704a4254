"""The bound's terms for Gaussian data (``diffusion-bound-terms``) against independent closed forms, and the
checks of ``diffusion-bound-terms``, ``diffusion-forward`` and ``negative-prompt`` flipping on broken input."""
import json
import math

import pytest
import torch

from genlab.cli import main
from genlab.families.diffusion.experiments import (
    check_bound_terms,
    check_forward,
    check_negative,
    gaussian_bound_terms,
    monte_carlo_bound_terms,
)
from genlab.families.diffusion.oracle import GaussianMixture, OracleDenoiser
from genlab.families.diffusion.schedule import NoiseSchedule

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread


def sequential_bound(schedule: NoiseSchedule, m: float, s2: float) -> float:
    """The bound of 1-D data N(m, s2) as E_q[-log p(x_{0:T}) + log q(x_{1:T} | x_0)] (Ho et al. 2020, Eq. 3),
    term by term along the chain from the joint second moments of q: the optimal reverse mean is linear in
    x_t (E[x_0 | x_t] is, for Gaussian data), so each -E log p(x_{t-1} | x_t) is a Gaussian cross-entropy.
    No KL, no posterior q(x_{t-1} | x_t, x_0): an independent route to the same number."""
    abar = schedule.alphas_cumprod.tolist()
    alpha, beta, sigma2 = schedule.alphas.tolist(), schedule.betas.tolist(), schedule.reverse_variance.tolist()
    total, mean_prev, var_prev = 0.0, m, s2                   # moments of x_{t-1}; x_0 before index 0
    for i in range(schedule.num_steps):
        a_prev = abar[i - 1] if i else 1.0
        mean_t, var_t = math.sqrt(abar[i]) * m, abar[i] * s2 + 1 - abar[i]
        cov = math.sqrt(alpha[i]) * var_prev                  # Cov(x_{t-1}, x_t), x_t = sqrt(alpha) x_{t-1} + noise
        gain = math.sqrt(abar[i]) * s2 / var_t                # E[x_0 | x_t] = m + gain (x_t - mean_t)
        c0 = math.sqrt(a_prev) * beta[i] / (1 - abar[i])
        c1 = math.sqrt(alpha[i]) * (1 - a_prev) / (1 - abar[i])
        slope, offset = c0 * gain + c1, c0 * (m - gain * mean_t)   # mu_p(x_t) = slope x_t + offset
        err = var_prev - 2 * slope * cov + slope ** 2 * var_t + (mean_prev - slope * mean_t - offset) ** 2
        total += 0.5 * math.log(2 * math.pi * sigma2[i]) + err / (2 * sigma2[i])
        total -= 0.5 * math.log(2 * math.pi * math.e * beta[i])   # + E log q(x_t | x_{t-1})
        mean_prev, var_prev = mean_t, var_t
    return total + 0.5 * math.log(2 * math.pi) + (mean_prev ** 2 + var_prev) / 2   # - E log N(x_T; 0, 1)


@pytest.mark.parametrize("kind,steps,variance", [("linear", 1000, "small"), ("cosine", 100, "small"),
                                                 ("linear", 200, "large")])
@pytest.mark.unit
def test_the_terms_sum_to_the_bound_computed_along_the_chain(kind, steps, variance):
    sch = NoiseSchedule.make(kind, steps, dtype=torch.float64, variance=variance)
    for m, s in ((0.3, 0.2), (-0.5, 0.05), (0.0, 1.0)):
        terms = gaussian_bound_terms(sch, torch.tensor([m], dtype=torch.float64), torch.tensor([s], dtype=torch.float64))
        total = float(terms["L0"] + terms["diffusion"].sum() + terms["LT"])
        assert total == pytest.approx(sequential_bound(sch, m, s * s), abs=1e-7)
        assert total > float(terms["entropy"])                      # an upper bound on -E log p(x_0)
        assert float(terms["entropy"]) == pytest.approx(0.5 * math.log(2 * math.pi * math.e * s * s), rel=1e-12)


@pytest.mark.unit
def test_the_consistency_terms_are_snr_weighted_denoising_errors():
    """For sigma_t^2 = beta~_t, L_t-1 = (SNR(t-1) - SNR(t)) / 2 sum_d Var(x_0 | x_t) (Kingma et al. 2021), and
    Var(x_0 | x_t) by Bayes' rule for a Gaussian: 1 / (1 / s^2 + SNR(t))."""
    sch = NoiseSchedule.make("linear", 1000, dtype=torch.float64)
    std = torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64)
    terms = gaussian_bound_terms(sch, torch.zeros(3, dtype=torch.float64), std)
    snr = sch.snr(torch.arange(1000))
    posterior_var = 1 / (1 / std ** 2 + snr.reshape(-1, 1))                   # [T, D]
    expected = 0.5 * (snr[:-1] - snr[1:]) * posterior_var[1:].sum(1)
    assert float(((terms["diffusion"] - expected) / expected).abs().max()) < 1e-10
    assert float(terms["LT"]) < 1e-4 and float(terms["LT"]) > 0


@pytest.mark.unit
def test_the_ddpm_code_estimates_the_closed_form_and_a_wrong_denoiser_flips_the_check():
    sch = NoiseSchedule.make("cosine", 50, dtype=torch.float64)
    mean, std = torch.tensor([0.2, -0.1, 0.0, 0.3]), torch.tensor([0.1, 0.2, 0.3, 0.4])
    exact = gaussian_bound_terms(sch, mean, std)
    data = GaussianMixture.gaussian(mean, std)

    def summary(denoiser=None):
        mc, se, prior = monte_carlo_bound_terms(sch, data, 64, torch.Generator().manual_seed(1), denoiser)
        diffusion = exact["diffusion"]
        total = float(exact["L0"] + diffusion.sum() + exact["LT"])
        return {"bound_nats": total, "bound_nats_monte_carlo": float(mc.sum() + prior),
                "monte_carlo_standard_error": float((se ** 2).sum().sqrt()), "LT": float(exact["LT"]),
                "diffusion_sum": float(diffusion.sum()), "share_first_tenth_t": 5,
                "gap_nats_per_dim": (total - float(exact["entropy"])) / 4,
                "share_first_tenth": float(diffusion[:4].sum() / diffusion.sum())}

    good = summary()
    assert float(monte_carlo_bound_terms(sch, data, 64, torch.Generator().manual_seed(2))[2]) == pytest.approx(
        float(exact["LT"]), rel=0.1)
    assert abs(good["bound_nats_monte_carlo"] - good["bound_nats"]) < 4 * good["monte_carlo_standard_error"]
    wrong = OracleDenoiser(GaussianMixture.gaussian(mean, 3 * std), sch)   # the denoiser of other data
    bad = summary(wrong)
    assert bad["bound_nats_monte_carlo"] > good["bound_nats"] + 4 * bad["monte_carlo_standard_error"]
    assert check_bound_terms(good).holds
    assert not check_bound_terms(bad).holds
    assert not check_bound_terms({**good, "LT": 0.1 * good["diffusion_sum"]}).holds   # a prior term not negligible


@pytest.mark.unit
def test_forward_check_flips_on_a_per_image_snr_off_its_closed_form():
    s = {"marginal_max_error": 0.01, "marginal_standard_error": 0.007, "posterior_max_error": 1e-9}
    assert check_forward({**s, "snr_ratio_max_error": 1e-15}).holds
    assert not check_forward({**s, "snr_ratio_max_error": 0.01}).holds


@pytest.mark.unit
def test_negative_prompt_check_reads_log_p_pair_by_pair():
    s = {"one_prob_without_negative": 6e-5, "one_prob_with_negative": 7e-7, "one_log_prob_without_negative": -11.3,
         "one_log_prob_with_negative": -15.3, "pairs_one_lower_fraction": 1.0, "changed_pixels_fraction": 0.38,
         "guidance_sweep": {"0.0": {"prompt_rate": 0.1}, "3.0": {"prompt_rate": 1.0}}}
    assert check_negative(s).holds
    assert not check_negative({**s, "pairs_one_lower_fraction": 0.6}).holds       # lower in too few pairs
    assert not check_negative({**s, "one_log_prob_with_negative": -11.6}).holds   # p(one) not halved


@pytest.mark.slow
def test_quick_bound_terms_experiment_is_shown(tmp_path):
    assert main(["experiment", "run", "diffusion-bound-terms", "--quick", "--out", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["verdict"] == "shown", summary
    assert all((tmp_path / "b" / f).is_file() for f in summary["figures"])
