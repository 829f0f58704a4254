"""PixelCNN (van den Oord et al. 2016a) and the gated PixelCNN (van den Oord et al. 2016b): the masks make
both autoregressive (checked with autograd Jacobians), the gated one without the plain one's blind spot
(every earlier sub-pixel reaches every logit), their probabilities of every possible image sum to one (exact
enumeration), their samplers draw from the distribution they score (empirical frequencies), and bits/dim
are the exact discrete NLL."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from genlab.data.registry import DataInfo
from genlab.errors import ConfigError
from genlab.families.pixelcnn.model import PixelCNN, PixelCNNConfig, causal_mask


def make(shape=(1, 4, 4), levels=3, channels=4, layers=2, seed=0, **kw) -> PixelCNN:
    torch.manual_seed(seed)
    info = DataInfo("image", shape, view="quantized", levels=levels)
    model = PixelCNN(PixelCNNConfig(channels=channels, layers=layers, **kw), info)
    for p in model.parameters():              # larger random weights: a far-from-uniform distribution
        torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def raster_index(c, h, w, shape):
    """Position of sub-pixel (c, h, w) in the raster order: rows, then columns, then channels."""
    channels, _, width = shape
    return (h * width + w) * channels + c


def jacobian_support(model, x: torch.Tensor) -> torch.Tensor:
    """[D, D]: sum over the images x of |d logit_out / d x_in| (logits summed over levels), (c,h,w) order."""
    x = x.requires_grad_()
    logits = model.logits(x).sum(1).flatten(1)                  # [n, D]: summed over levels, (c,h,w) order
    rows = []
    for i in range(logits.shape[1]):   # examples are independent: the gradient of the batch sum is per example
        (grad,) = torch.autograd.grad(logits[:, i].sum(), x, retain_graph=True)
        rows.append(grad.abs().flatten(1).sum(0))
    return torch.stack(rows)                                    # [out, in]


def not_before(shape) -> torch.Tensor:
    """[D, D] True where sub-pixel ``in`` is not before ``out`` in raster order."""
    order = torch.tensor([raster_index(*c, shape) for c in itertools.product(*map(range, shape))])
    return order[None, :] >= order[:, None]


@pytest.mark.unit
@pytest.mark.parametrize("arch", ["plain", "gated"])
@pytest.mark.parametrize("shape", [(1, 4, 4), (2, 3, 3)])
def test_logits_depend_only_on_earlier_pixels(shape, arch):
    """d logits_i / d x_j = 0 for every j >= i in raster order (autograd Jacobians at 8 random images),
    and != 0 for the sub-pixel just before i at some of them (ReLUs may hide it at one image)."""
    model = make(shape, levels=3, channels=4, layers=2, arch=arch)
    seen = jacobian_support(model, torch.randint(0, 3, (8, *shape)).float())
    later = not_before(shape)
    assert torch.all(seen[later] == 0), "a logit sees its own or a later sub-pixel"
    order = torch.tensor([raster_index(*c, shape) for c in itertools.product(*map(range, shape))])
    previous = order[None, :] == order[:, None] - 1
    assert torch.all(seen[previous] > 0), "a sub-pixel does not see the one before it"


@pytest.mark.unit
@pytest.mark.parametrize("shape", [(1, 5, 5), (2, 3, 3)])
def test_gated_pixelcnn_has_no_blind_spot(shape):
    """The network reaches first_kernel // 2 + layers * (kernel // 2) = 6 pixels, beyond the image, so every
    earlier sub-pixel lies in its nominal receptive field, and with the vertical and horizontal stacks
    (van den Oord et al. 2016b, Sec. 2.2) d logit_i / d x_j != 0 for every j < i (and = 0 for j >= i)."""
    model = make(shape, channels=8, layers=4, first_kernel=5, arch="gated")
    seen = jacobian_support(model, 2 * torch.rand(16, *shape))  # continuous levels: no ReLU of the head hides a pixel
    later = not_before(shape)
    assert torch.all(seen[~later] > 0), "the gated PixelCNN misses an earlier sub-pixel"
    assert torch.all(seen[later] == 0)


@pytest.mark.unit
def test_plain_pixelcnn_has_the_blind_spot():
    """The same test fails for the plain PixelCNN of the same reach: stacked masked convolutions never see
    some pixels above and to the right (van den Oord et al. 2016b, Sec. 2.2, Fig. 1), e.g. the logit at
    (row 1, col 0) never sees pixel (row 0, col 3), although the 5x5 first layer and four 3x3 layers reach it."""
    shape = (1, 5, 5)
    seen = jacobian_support(make(shape, channels=8, layers=4, first_kernel=5, arch="plain"), 2 * torch.rand(16, *shape))
    coords = [(h, w) for _, h, w in itertools.product(*map(range, shape))]
    missed = [(coords[i], coords[j]) for i, j in ((seen == 0) & ~not_before(shape)).nonzero().tolist()]
    assert ((1, 0), (0, 3)) in missed
    assert all(h_in < h_out and w_in > w_out + 2 for (h_out, w_out), (h_in, w_in) in missed), missed


@pytest.mark.unit
@pytest.mark.parametrize("arch", ["plain", "gated"])
@pytest.mark.parametrize("shape,levels", [((1, 2, 2), 3), ((1, 2, 2), 2), ((2, 2, 1), 3), ((1, 1, 3), 4)])
def test_probabilities_of_all_images_sum_to_one(shape, levels, arch):
    """The likelihood is exact: sum over all L^D discrete images of P(x) = 1."""
    model = make(shape, levels=levels, channels=2 * shape[0], layers=1, arch=arch)
    d = math.prod(shape)
    every = torch.tensor(list(itertools.product(range(levels), repeat=d)), dtype=torch.float32).view(-1, *shape)
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(every), 0)
    assert len(every) == levels ** d
    assert total.item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.unit
@pytest.mark.parametrize("arch", ["plain", "gated"])
def test_sampler_draws_the_distribution_it_scores(arch):
    """Empirical frequencies of 20,000 samples of 1x1x2 images with 3 levels match exp(log_prob)."""
    model = make((1, 1, 2), levels=3, channels=2, layers=1, seed=3, arch=arch)
    every = torch.tensor(list(itertools.product(range(3), repeat=2)), dtype=torch.float32).view(-1, 1, 1, 2)
    with torch.no_grad():
        p = model.log_prob(every).exp()
    torch.manual_seed(0)
    n = 20_000
    draws = torch.round(model.sample(n) * 2).view(n, 2)              # back to levels
    codes = (draws[:, 0] * 3 + draws[:, 1]).long()
    freq = torch.bincount(codes, minlength=9).float() / n
    se = torch.sqrt(p * (1 - p) / n)
    assert torch.all((freq - p).abs() < 5 * se + 1e-4), (freq, p)


@pytest.mark.unit
def test_uniform_logits_give_log2_levels_bits_per_dim():
    """Zero output weights: P(x_i|x_<i) = 1/256 for every pixel, so bpd = 8 exactly, nll = D ln 256."""
    info = DataInfo("image", (1, 5, 5), view="continuous", extras={"grey_levels": 256})
    model = PixelCNN(PixelCNNConfig(channels=4, layers=1), info)
    last = model.net[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.randint(0, 256, (3, 1, 5, 5)).float() / 255        # the continuous view of 8-bit pixels
    m = model.eval_metrics((x,))
    assert torch.allclose(m["bpd"], torch.full((3,), 8.0))
    assert torch.allclose(m["nll_nats"], torch.full((3,), 25 * math.log(256)))


@pytest.mark.unit
def test_nll_is_the_sum_of_per_pixel_cross_entropies():
    """log_prob against torch.distributions.Categorical over the logits, pixel by pixel."""
    model = make((1, 3, 3), levels=5, channels=4, layers=1)
    k = torch.randint(0, 5, (4, 1, 3, 3)).float()
    logits = model.logits(k)                                          # [B, L, C, H, W]
    oracle = torch.distributions.Categorical(logits=logits.movedim(1, -1)).log_prob(k.long()).sum((1, 2, 3))
    assert torch.allclose(model.log_prob(k), oracle, atol=1e-5)


@pytest.mark.unit
def test_mask_shapes_and_kinds():
    a = causal_mask(2, 1, 3, 1, "A")
    b = causal_mask(2, 1, 3, 1, "B")
    assert a[:, :, 1, 1].sum() == 0 and b[:, :, 1, 1].sum() == 2
    assert a[:, :, 0].sum() == 6 and a[:, :, 2].sum() == 0 and a[:, :, 1, 0].sum() == 2
    with pytest.raises(ValueError):
        causal_mask(2, 1, 3, 1, "C")


@pytest.mark.unit
def test_user_errors_are_clear():
    with pytest.raises(ConfigError, match="image"):
        PixelCNN(PixelCNNConfig(), DataInfo("points", (2,)))
    with pytest.raises(ConfigError, match="multiple"):
        PixelCNN(PixelCNNConfig(channels=5), DataInfo("image", (3, 4, 4), view="quantized", levels=4))
    with pytest.raises(ConfigError, match="odd"):
        PixelCNNConfig(kernel=2).validate()


@pytest.mark.slow
def test_training_on_digits_beats_uniform_by_far(tmp_path):
    """60 steps on the 8x8 digits (17 levels): test bpd far below the uniform model's log2 17 = 4.09."""
    import genlab
    from genlab.experiments.common import single_thread
    with single_thread():
        run = genlab.train("pixelcnn", "digits", tmp_path / "run", report=False, channels=32, layers=2,
                           epochs=3, batch_size=64, lr=3e-3, progress=False)
    bpd = genlab.evaluate(run, extras=False)["metrics"]["bpd"]
    assert bpd < 0.75 * math.log2(17), bpd
