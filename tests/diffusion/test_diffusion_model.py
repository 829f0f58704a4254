"""The DDPM model: U-Net shapes, the variational bound against a brute-force sum, guidance, prompts,
reproducible sampling, a short training run, and the command line."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from genlab.cli import main
from genlab.data.registry import DataInfo
from genlab.errors import ConfigError
from genlab.families.diffusion.guidance import DIGIT_NAMES, FASHION_NAMES, classifier_free_guidance, resolve_prompt
from genlab.families.diffusion.model import DDPM, DDPMConfig
from genlab.families.diffusion.schedule import to_model_range
from genlab.families.diffusion.unet import UNet, UNetConfig, timestep_embedding

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread


def tiny(conditional=False, **kw) -> DDPM:
    torch.manual_seed(0)
    info = DataInfo(kind="image", shape=(1, 8, 8), num_classes=10, extras={"dataset": "digits", "grey_levels": 17})
    cfg = DDPMConfig(channels=8, mults=(1, 2), timesteps=kw.pop("timesteps", 20), conditional=conditional,
                     sample_steps=4, **kw)
    cfg.validate()
    model = DDPM(cfg, info)
    for p in model.parameters():          # leave the zero initialisation so the outputs are not all 0
        torch.nn.init.normal_(p, std=0.05)
    return model


# ----------------------------------------------------------------- the U-Net
@pytest.mark.unit
def test_timestep_embedding_is_sinusoidal():
    t = torch.tensor([0.0, 3.0, 417.5])
    emb = timestep_embedding(t, 8)
    for i, ti in enumerate(t.tolist()):
        for k in range(4):
            w = 10000 ** (-k / 4)
            assert float(emb[i, k]) == pytest.approx(math.sin(ti * w), abs=1e-5)
            assert float(emb[i, 4 + k]) == pytest.approx(math.cos(ti * w), abs=1e-5)


@pytest.mark.unit
@pytest.mark.parametrize("shape,mults", [((1, 28, 28), (1, 2, 2)), ((1, 8, 8), (1, 2, 2)), ((3, 16, 16), (1, 2))])
def test_unet_shapes_fractional_time_and_null_class(shape, mults):
    net = UNet(UNetConfig(channels=16, mults=mults), shape[0], num_classes=10)
    x = torch.randn(3, *shape)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    out = net(x, torch.tensor([0.0, 10.5, 999.0]), torch.tensor([1, 2, 10]))
    assert out.shape == x.shape
    # no labels means the null token (index num_classes)
    torch.testing.assert_close(net(x, torch.tensor(5.0)), net(x, torch.tensor(5.0), torch.full((3,), 10)))
    assert not torch.allclose(net(x, torch.tensor(5.0), torch.full((3,), 3)), net(x, torch.tensor(5.0)))


# ----------------------------------------------------------------- the bound
@pytest.mark.unit
def test_vlb_with_every_timestep_equals_brute_force_sum_of_its_terms():
    """vlb_nats(samples = T - 1) = L_T + sum_{t>1} L_{t-1} + L_0, each term rebuilt here from its definition
    (Ho et al. 2020 Eq. 5-7, 11, 13) with torch.distributions on the same draws of x_t."""
    model = tiny(timesteps=12).double()
    sch = model.schedule = model.schedule.to(torch.float64)
    x01 = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        ours = model.vlb_nats(x01, 11, generator=torch.Generator().manual_seed(5))
        x0 = to_model_range(x01, 17)                                                       # the digits' 17 levels
        g = torch.Generator().manual_seed(5)
        m, v = sch.alphas_cumprod[-1] ** 0.5 * x0, 1 - sch.alphas_cumprod[-1]
        total = kl_divergence(Normal(m, v ** 0.5), Normal(0.0, 1.0)).flatten(1).sum(1)
        for i in range(12):             # L_0 first (no draw of t), then one t per stratum {1}, {2}, ..., {11}
            t = torch.randint(i, i + 1, (3,), generator=g) if i > 0 else torch.zeros(3, dtype=torch.long)
            eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
            ab, a, b = sch.alphas_cumprod[i], sch.alphas[i], sch.betas[i]
            ab_prev = sch.alphas_cumprod[i - 1] if i > 0 else torch.tensor(1.0, dtype=torch.float64)
            xt = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * eps
            eps_hat = model.net(xt, t)
            mean_p = (xt - b / (1 - ab) ** 0.5 * eps_hat) / a ** 0.5                          # Eq. 11
            var_p = sch.posterior_variance[max(i, 1)]                                        # beta~ (beta~_2 at t = 1)
            if i == 0:                                                                       # Eq. 13, K = 17
                p = Normal(mean_p, var_p ** 0.5)
                upper = torch.where(x0 > 0.999, torch.ones_like(x0), p.cdf(x0 + 1 / 16))
                lower = torch.where(x0 < -0.999, torch.zeros_like(x0), p.cdf(x0 - 1 / 16))
                term = -torch.log((upper - lower).clamp(min=1e-12)).flatten(1).sum(1)
            else:                                                                            # Eq. 6-7
                mean_q = ab_prev ** 0.5 * b / (1 - ab) * x0 + a ** 0.5 * (1 - ab_prev) / (1 - ab) * xt
                var_q = (1 - ab_prev) / (1 - ab) * b
                term = kl_divergence(Normal(mean_q, var_q ** 0.5), Normal(mean_p, var_p ** 0.5)).flatten(1).sum(1)
            total = total + term
    torch.testing.assert_close(ours, total, rtol=1e-6, atol=1e-6)


@pytest.mark.unit
def test_stratified_bound_is_unbiased():
    """The average of the few-timestep estimate over many draws approaches the exact all-timestep sum."""
    model = tiny(timesteps=8)
    x01 = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        exact = torch.stack([model.vlb_nats(x01, 7, generator=torch.Generator().manual_seed(s)) for s in range(20)])
        few = torch.stack([model.vlb_nats(x01, 2, generator=torch.Generator().manual_seed(100 + s))
                           for s in range(160)])
    se = few.std(0) / math.sqrt(len(few)) + exact.std(0) / math.sqrt(len(exact))
    assert bool(((few.mean(0) - exact.mean(0)).abs() < 4 * se).all()), (few.mean(0), exact.mean(0), se)


# ----------------------------------------------------------------- guidance and prompts
@pytest.mark.unit
def test_guidance_one_is_the_conditional_model_and_negative_replaces_the_null_branch():
    model = tiny(conditional=True)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor(7)
    y, neg = torch.tensor([7, 7, 3, 1]), torch.tensor([1, 1, 1, 0])
    null = torch.full_like(y, 10)
    with torch.no_grad():
        cond, uncond, negative = model.net(x, t, y), model.net(x, t, null), model.net(x, t, neg)
        torch.testing.assert_close(classifier_free_guidance(model.net, x, t, y, null, 1.0), cond, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.denoiser(y, None, 1.0)(x, t), cond)
        close = dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.denoiser(y, None, 3.0)(x, t), uncond + 3 * (cond - uncond), **close)
        torch.testing.assert_close(model.denoiser(y, neg, 3.0)(x, t), negative + 3 * (cond - negative), **close)
        torch.testing.assert_close(model.denoiser(y, neg, 0.0)(x, t), negative, rtol=1e-5, atol=1e-6)


@pytest.mark.unit
def test_prompts_by_name_or_number():
    assert resolve_prompt("seven", DIGIT_NAMES) == 7 and resolve_prompt("7", DIGIT_NAMES) == 7
    assert resolve_prompt("Sneaker", FASHION_NAMES) == 7 and resolve_prompt("ankle boot", FASHION_NAMES) == 9
    assert resolve_prompt("t-shirt", FASHION_NAMES) == 0
    with pytest.raises(ConfigError, match="ankle boot"):
        resolve_prompt("hat", FASHION_NAMES)
    with pytest.raises(ConfigError, match="unconditional"):
        tiny().prompt_label("seven")


@pytest.mark.unit
def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="dpm\\+\\+2m"):
        DDPMConfig(sampler="plms").validate()
    info = DataInfo(kind="image", shape=(1, 7, 7), num_classes=10)
    with pytest.raises(ConfigError, match="fewer --mults"):
        DDPM(DDPMConfig(), info)


# ----------------------------------------------------------------- sampling and training
@pytest.mark.unit
@pytest.mark.parametrize("sampler", ["ddpm", "euler-a", "dpm++2m"])
def test_seeded_sample_is_reproducible_and_in_range(sampler):
    model = tiny(conditional=True)
    a = model.sample(6, sampler, 4, torch.Generator().manual_seed(3))
    b = model.sample(6, sampler, 4, torch.Generator().manual_seed(3))
    assert a.shape == (6, 1, 8, 8) and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.unit
def test_training_lowers_the_loss():
    torch.manual_seed(0)
    info = DataInfo(kind="image", shape=(1, 8, 8), num_classes=10)
    model = DDPM(DDPMConfig(channels=16, mults=(1, 2), timesteps=100), info)
    x = (torch.rand(64, 1, 8, 8) > 0.6).float()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    losses = []
    for _ in range(60):
        loss, _ = model.loss((x, torch.zeros(64)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:5]) / 5, losses


# ----------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ddpm"
    args = ["train", "ddpm", "--data", "digits", "--conditional", "--channels", "8", "--mults", "1", "2",
            "--timesteps", "50", "--sample-steps", "3", "--max-steps", "3", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_cli_train_sample_eval(ddpm_run, capsys):
    assert main(["sample", str(ddpm_run), "-n", "8", "--sampler", "ddim", "--steps", "3", "--prompt", "seven",
                 "--negative-prompt", "one", "--guidance", "3", "--seed", "42"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any("side_by_side" in line for line in lines)
    assert main(["eval", str(ddpm_run), "--json", "--vlb-samples", "2"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert {"bpd", "nll_nats"} <= set(metrics) and metrics["bpd"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("flags,message", [(["--sampler", "plms"], "dpm++2m"), (["--prompt", "hat"], "seven")])
def test_cli_bad_sampler_or_prompt_exits_2(ddpm_run, capsys, flags, message):
    assert main(["sample", str(ddpm_run), "-n", "2", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["diffusion-forward", "sampler-oracle", "ddpm-mnist", "sampler-compare",
                                  "negative-prompt"])
def test_quick_experiments_run_and_write_their_summary(name, tmp_path):
    assert main(["experiment", "run", name, "--quick", "--out", str(tmp_path / name)]) == 0
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert summary["quick"] is True and summary["figures"]
    for figure in summary["figures"]:
        assert (tmp_path / name / figure).is_file()
    assert summary["verdict"] in ("shown", "cannot show in quick mode"), summary
