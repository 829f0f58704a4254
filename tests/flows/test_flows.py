"""Normalizing flows: every bijection's log|det| against the autograd Jacobian, exact inverses,
normalised densities, the dequantization bound, and the CLI / experiments of the family."""
import json
import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

import genlab
from genlab.cli import main
from genlab.data import DataInfo, load_dataset
from genlab.errors import ConfigError
from genlab.experiments import run_experiment
from genlab.families.flows.bijections import (
    ActNorm,
    AffineCoupling,
    Compose,
    ConvConditioner,
    LogitTransform,
    Permutation,
    Reshape,
    TriangularLeakyLayer,
    mlp_conditioner,
)
from genlab.maths.densities import dequantize, to_levels
from genlab.model import build_model


def randomize(module: nn.Module, scale=0.3):
    """Make zero-initialised layers non-trivial so the Jacobian tests are not about the identity."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module.double()


def vector_coupling(d=3):
    return AffineCoupling(torch.tensor([1.0, 0.0, 1.0][:d]), mlp_conditioner(d, (16,), "tanh"), (d,))


def image_coupling():
    mask = (torch.arange(16).view(4, 4) % 2).float().expand(2, 4, 4).clone()
    return AffineCoupling(mask, ConvConditioner(mask, 2, 8), (2, 1, 1))


def actnorm(shape):
    layer = ActNorm(shape)
    layer.train()
    layer(torch.randn(16, *([3] if shape == (3,) else [2, 4, 4])) * 2 + 1)   # data-dependent init
    return layer


BIJECTIONS = {
    "triangular_leaky": (lambda: TriangularLeakyLayer(3, slope=0.3), (3,)),
    "permutation": (lambda: Permutation(torch.tensor([2, 0, 1])), (3,)),
    "actnorm_vector": (lambda: actnorm((3,)), (3,)),
    "actnorm_image": (lambda: actnorm((2, 1, 1)), (2, 4, 4)),
    "coupling_vector": (vector_coupling, (3,)),
    "coupling_image": (image_coupling, (2, 4, 4)),
    "logit": (lambda: LogitTransform(0.05), (3,)),
    "reshape": (lambda: Reshape((2, 4, 4), (32,)), (2, 4, 4)),
    "compose": (lambda: Compose([TriangularLeakyLayer(3), Permutation(torch.tensor([2, 1, 0])), vector_coupling(),
                                 actnorm((3,))]), (3,)),
}


def make(name):
    torch.manual_seed(0)
    factory, shape = BIJECTIONS[name]
    layer = randomize(factory()).eval()
    x = torch.rand(5, *shape, dtype=torch.float64) if name == "logit" else torch.randn(5, *shape, dtype=torch.float64)
    return layer, x


def autograd_logdet(fn, x):
    """log|det J| of ``fn`` at each example of ``x`` (the Jacobian by torch.autograd.functional.jacobian)."""
    out = []
    for xi in x[:3]:
        jac = jacobian(lambda v: fn(v.unsqueeze(0))[0][0].flatten(), xi, vectorize=True)
        out.append(torch.linalg.slogdet(jac.reshape(xi.numel(), xi.numel()))[1])
    return torch.stack(out)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n == "coupling_image" else pytest.mark.unit)
                                  for n in BIJECTIONS])
def test_logdet_matches_the_autograd_jacobian(name):
    layer, x = make(name)
    y, logdet = layer(x)
    assert torch.allclose(logdet[:3], autograd_logdet(layer, x), atol=1e-9)
    _, inv_logdet = layer.inverse(y)
    assert torch.allclose(inv_logdet[:3], autograd_logdet(layer.inverse, y), atol=1e-9)
    assert torch.allclose(inv_logdet, -logdet, atol=1e-9)


@pytest.mark.unit
@pytest.mark.parametrize("name", list(BIJECTIONS))
def test_inverse_undoes_forward(name):
    layer, x = make(name)
    y, _ = layer(x)
    assert torch.allclose(layer.inverse(y)[0], x, atol=1e-9)


@pytest.mark.unit
def test_leaky_layer_needs_a_positive_slope_and_has_a_triangular_positive_diagonal():
    with pytest.raises(ConfigError, match="slope"):
        TriangularLeakyLayer(2, slope=0.0)
    w = randomize(TriangularLeakyLayer(4)).weight()
    assert torch.equal(w, torch.tril(w)) and (torch.diagonal(w) > 0).all()


@pytest.mark.parametrize("model,data", [
    pytest.param(model, data, marks=pytest.mark.slow if (model, data) == ("realnvp", "digits") else pytest.mark.unit)
    for model, data in (("realnvp", "8gaussians"), ("invertible-mlp", "8gaussians"), ("realnvp", "digits"),
                        ("invertible-mlp", "digits"))])
def test_whole_model_logdet_matches_autograd(model, data):
    torch.manual_seed(0)
    d = load_dataset(data, "train", **({"limit": 64} if data == "digits" else {"n": 64}))
    net = build_model(model, d.info, **({"channels": 4, "couplings": 2} if model == "realnvp" and data == "digits"
                                        else {"layers": 2} if data == "digits" else {})).double()
    net.train()
    net.loss((d.tensors[0].double(),))      # ActNorm's data-dependent init
    net.eval()
    randomize(net, 0.05)
    x = d.tensors[0][:2].double()
    if data == "digits":
        x = dequantize(to_levels(x, d.info), 17)
    _, logdet = net.flow(x)
    assert torch.allclose(logdet, autograd_logdet(net.flow, x), atol=1e-7)


@pytest.mark.unit
def test_actnorm_initialises_from_data_once():
    layer = ActNorm((2,)).train()
    x = torch.randn(500, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([1.0, -2.0])
    y, _ = layer(x)
    assert torch.allclose(y.mean(0), torch.zeros(2), atol=1e-5) and torch.allclose(y.std(0), torch.ones(2), atol=1e-4)
    before = layer.loc.detach().clone()
    layer(x * 5)
    assert torch.equal(layer.loc.detach(), before) and bool(layer.initialized)


@pytest.mark.unit
@pytest.mark.parametrize("model,options,half_width", [("realnvp", {}, 12.0), ("invertible-mlp", {"layers": 2}, 40.0)])
def test_briefly_trained_density_integrates_to_one(model, options, half_width):
    """Riemann sum of exp(log_prob) over a wide grid (the LeakyReLU flow spreads mass by 1/slope per
    layer on the negative side, hence its wider box)."""
    run = genlab.train(model, "8gaussians", None, data_options={"n": 512}, epochs=3, batch_size=128, lr=3e-3,
                       progress=False, eval_every=0, **options)
    xs = torch.linspace(-half_width, half_width, int(40 * half_width) + 1)
    pts = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = sum(run.model.log_prob(chunk).exp().sum() for chunk in pts.split(200_000)) * (xs[1] - xs[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=0.01)
    assert run.state.epoch == 3


@pytest.mark.unit
def test_dequantized_nll_bounds_the_discrete_nll():
    """1-pixel images with L=4 levels. p(u) integrates to 1 over the logit transform's whole range
    (-a/(1-2a), (1-a)/(1-2a)) (quadrature), so P(k) = int_cell p(u) du sums to at most 1, and
    E_U[-log p(u)] + log L >= -log P(k) (Jensen), nearly tight for a smooth density."""
    torch.manual_seed(0)
    info = DataInfo(kind="image", shape=(1, 1, 1), extras={"grey_levels": 4})
    net = randomize(build_model("invertible-mlp", info, layers=2, logit_alpha=0.05), 0.5).eval()
    lo, hi = -0.05 / 0.9, 0.95 / 0.9
    n = 200000
    u = lo + (hi - lo) * (torch.arange(n, dtype=torch.float64) + 0.5) / n
    with torch.no_grad():
        density = net.log_prob(u.view(-1, 1, 1, 1)).exp()
        assert float(density.sum() * (hi - lo) / n) == pytest.approx(1.0, abs=1e-4)
        m = 40000
        cell_u = (torch.arange(4 * m, dtype=torch.float64) + 0.5) / (4 * m)
        log_p = net.log_prob(cell_u.view(-1, 1, 1, 1)).view(4, m)
        cells = log_p.exp().mean(1) / 4                          # P(k), midpoint rule
        expected = -log_p.mean(1) + math.log(4)                  # E_U[-log p(u)] + log L by quadrature
        assert float(cells.sum()) <= 1.0
        for k in range(4):
            x = torch.full((20000, 1, 1, 1), k / 3, dtype=torch.float64)   # intensities k/(L-1)
            metrics = net.eval_metrics((x,))
            bound = metrics["nll_nats"]
            std_err = float(bound.std()) / math.sqrt(len(bound))
            assert abs(float(bound.mean()) - float(expected[k])) < 4 * std_err
            assert float(expected[k]) >= -math.log(float(cells[k]))
            assert torch.allclose(metrics["bpd"], bound / math.log(2))


@pytest.mark.unit
def test_levels_are_recovered_and_dequantized_into_their_cell():
    d = load_dataset("digits", "train", limit=50)
    k = to_levels(d.tensors[0], d.info)
    assert torch.equal(k, k.round()) and k.min() == 0 and k.max() == 16
    u = dequantize(k, 17)
    assert ((u * 17).floor() == k).all()


@pytest.mark.unit
def test_samples_have_the_data_shape():
    d = load_dataset("digits", "train", limit=8)
    net = build_model("realnvp", d.info, channels=4, couplings=2)
    s = net.sample(3)
    assert s.shape == (3, 1, 8, 8) and s.min() >= 0 and s.max() <= 1


@pytest.mark.unit
def test_realnvp_refuses_1d_data():
    with pytest.raises(ConfigError, match="at least 2 dimensions"):
        build_model("realnvp", load_dataset("gmm1d", "train", n=10).info)


# ----------------------------------------------------------------- CLI and experiments
@pytest.mark.parametrize("model,extra", [("invertible-mlp", ["--layers", "2"]), ("realnvp", ["--couplings", "2"]),
                                         ("cnf", ["--hidden", "8", "--steps", "2"])])
@pytest.mark.unit
def test_cli_train_eval_sample_on_points(tmp_path, capsys, model, extra):
    out = tmp_path / model
    assert main(["train", model, "--data", "gmm2d", "--n", "64", "--epochs", "1", "--batch-size", "32",
                 "--out", str(out), "--no-progress", *extra]) == 0
    assert (out / "figures" / "density.png").exists()
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert math.isfinite(metrics["nll_nats"]) and metrics["data_nll_nats"] > 0
    assert main(["sample", str(out), "-n", "5"]) == 0
    csv = out / "samples" / "samples_5.csv"
    assert csv.exists() and len(csv.read_text().strip().splitlines()) == 5


@pytest.mark.unit
def test_cli_train_realnvp_on_images_reports_bpd(tmp_path, capsys):
    out = tmp_path / "img"
    assert main(["train", "realnvp", "--data", "digits", "--limit", "40", "--epochs", "1", "--channels", "4",
                 "--couplings", "2", "--out", str(out), "--no-progress", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--limit", "20"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["bpd"] == pytest.approx(metrics["nll_nats"] / (64 * math.log(2)))


@pytest.mark.slow
def test_flow_toy_quick(tmp_path):
    summary = run_experiment("flow-toy", tmp_path, quick=True)
    rows = summary["results"]
    assert {r["model"] for r in rows} == {"invertible-mlp", "realnvp"}
    assert all({"nll_nats", "data_nll_nats", "gap_nats", "train_time_s"} <= set(r) for r in rows)


@pytest.mark.slow
def test_flow_mnist_quick(tmp_path):
    summary = run_experiment("flow-mnist", tmp_path, quick=True)
    row = summary["results"][0]
    assert row["data"] == "digits" and 0 < row["bpd"] < 8 and "bpd_convention" in summary


@pytest.mark.unit
def test_independent_pixels_bpd_against_hand_count():
    """Two pixels, 3 grey levels (intensities k/2): add-one smoothed histograms counted by hand."""
    from genlab.data.registry import TensorData
    from genlab.families.flows.experiments import independent_pixels_bpd
    info = DataInfo(kind="image", shape=(1, 1, 2))
    train = TensorData((torch.tensor([[0.0, 1.0], [0.0, 0.5], [0.5, 1.0]]).view(3, 1, 1, 2),), info)
    test = TensorData((torch.tensor([[0.0, 0.0]]).view(1, 1, 1, 2),), info)
    # pixel 0 counts (2, 1, 0) + 1 -> P(0) = 3/6; pixel 1 counts (0, 1, 2) + 1 -> P(0) = 1/6
    expected = -(math.log2(3 / 6) + math.log2(1 / 6)) / 2
    assert independent_pixels_bpd(train, test, 3) == pytest.approx(expected)


@pytest.mark.unit
def test_one_d_invertible_mlp_has_no_valley_below_its_median():
    """In 1-D every layer sigma(wx + b), w > 0, slope < 1, is convex and increasing, so p(x) = N(f(x)) f'(x) never
    decreases where f(x) < 0, whatever the parameters; gmm1d's true density has a valley there."""
    from types import SimpleNamespace

    from genlab.families.flows.experiments import below_median
    test = load_dataset("gmm1d", "test", n=500)
    def valleys(slope):
        out = []
        for seed in range(3):
            torch.manual_seed(seed)
            net = build_model("invertible-mlp", test.info, layers=6, slope=slope)
            with torch.no_grad():
                for p in net.parameters():
                    p.normal_(0, 1)
            out.append(below_median(SimpleNamespace(data=lambda split: test, model=net)))
        return out
    assert all(v["model_valley_nats"] <= 1e-4 for v in valleys(0.5))
    assert max(v["model_valley_nats"] for v in valleys(2.0)) > 0.1     # concave layers can make one
    leaky = build_model("invertible-mlp", test.info, layers=1)          # f = LeakyReLU(x): median 0, bias 0
    assert below_median(SimpleNamespace(data=lambda split: test, model=leaky))["true_valley_nats"] > 1.0
