"""NeRF math against independent oracles: a hand-computed camera, closed forms, autograd, scipy, scikit-image."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import sph_harm_y

from genlab.families.nerf import encoding, rays, render, sampling
from genlab.maths import cameras
from genlab.maths.image_quality import psnr, ssim

pytestmark = pytest.mark.unit


# ----------------------------------------------------------------- rays
def test_rays_of_a_hand_computed_camera():
    # camera at (0, 0, 4) looking down -z (identity rotation), 2x2 image, focal 1, centre (1, 1)
    K = cameras.intrinsics(1.0, 2, 2)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[2, 3] = 4.0
    o, d = cameras.camera_rays(K, c2w, 2, 2)
    # pixel (row 0, col 0) has centre (0.5, 0.5): d_cam = (-0.5, +0.5, -1) / |.|
    n = math.sqrt(0.25 + 0.25 + 1)
    assert torch.allclose(d[0, 0], torch.tensor([-0.5, 0.5, -1.0], dtype=torch.float64) / n)
    assert torch.allclose(d[1, 1], torch.tensor([0.5, -0.5, -1.0], dtype=torch.float64) / n)
    assert torch.allclose(o, torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64).expand(2, 2, 3))
    # a camera at (4, 0, 0) looking at the origin, +z up: the image centre ray is -x
    pose = cameras.look_at((4.0, 0.0, 0.0))
    o, d = cameras.camera_rays(cameras.intrinsics(10.0, 3, 3), pose, 3, 3)
    assert torch.allclose(d[1, 1], torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))
    # top row looks up (+z), right column looks toward +y (camera right is +y from there)
    assert d[0, 1, 2] > 0 and d[1, 2, 1] > 0


def test_rays_project_back_to_their_pixels():
    torch.manual_seed(0)
    K = cameras.intrinsics(30.0, 20, 16, focal_y=25.0, cx=9.0, cy=7.5)
    pose = cameras.look_at((1.0, -3.0, 2.0), target=(0.1, 0.2, -0.3))
    o, d = cameras.camera_rays(K, pose, 16, 20)
    t = torch.rand(16, 20, 1, dtype=torch.float64) * 5 + 0.5
    pts = (o + t * d).reshape(-1, 3)                               # [H, W, 3] -> [H W, 3]
    uv = cameras.project(K, pose, pts).reshape(16, 20, 2)             # [H W, 2] -> [H, W, 2]
    v, u = torch.meshgrid(torch.arange(16.0), torch.arange(20.0), indexing="ij")
    assert torch.allclose(uv[..., 0], u.double() + 0.5, atol=1e-9)
    assert torch.allclose(uv[..., 1], v.double() + 0.5, atol=1e-9)
    assert torch.allclose(d.norm(dim=-1), torch.ones(16, 20, dtype=torch.float64))


def test_ray_box_intersection_against_marching():
    g = torch.Generator().manual_seed(1)
    o = torch.randn(200, 3, generator=g, dtype=torch.float64) * 3
    d = torch.randn(200, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    lo, hi = torch.tensor([-1.0, -0.5, -0.2], dtype=torch.float64), torch.tensor([1.0, 0.7, 0.9], dtype=torch.float64)
    t0, t1 = rays.ray_aabb(o, d, lo, hi)
    ts = torch.linspace(-20, 20, 40001, dtype=torch.float64)
    p = o[:, None] + ts[None, :, None] * d[:, None]                # [R, S, 3]
    inside = ((p >= lo) & (p <= hi)).all(-1)                       # [R, S]
    hit = inside.any(-1)
    assert torch.equal(hit, t0 < t1)
    first = torch.where(inside, ts, torch.inf).amin(-1)
    last = torch.where(inside, ts, -torch.inf).amax(-1)
    assert torch.allclose(t0[hit], first[hit], atol=2e-3) and torch.allclose(t1[hit], last[hit], atol=2e-3)


def test_orbit_poses_look_at_the_target():
    poses = rays.orbit_poses(8, radius=4.0, elevation_deg=30.0)
    for p in poses:
        assert torch.allclose(p[:3, :3] @ p[:3, :3].T, torch.eye(3, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(-p[:3, 2], -p[:3, 3] / 4.0, atol=1e-12)     # forward (-z) points at the origin
        assert abs(p[2, 3].item() - 4.0 * math.sin(math.radians(30))) < 1e-12


# ----------------------------------------------------------------- sampling
def test_stratified_samples_lie_one_per_bin():
    t = sampling.stratified_samples(2.0, 6.0, 8, 500, perturb=True, generator=torch.Generator().manual_seed(0))
    bins = torch.floor((t - 2.0) / 0.5)
    assert torch.equal(bins, torch.arange(8.0).expand(500, 8))
    # uniform within each bin: KS test of the offsets
    assert stats.kstest(((t - 2.0) / 0.5 - bins).flatten().numpy(), "uniform").pvalue > 1e-3
    t0 = sampling.stratified_samples(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0]), 4, 2, perturb=False)
    assert torch.allclose(t0, torch.tensor([[1.0, 1.5, 2.0, 2.5], [2.0, 3.0, 4.0, 5.0]]))
    assert torch.allclose(sampling.deltas_from_t(t0, torch.tensor([3.0, 6.0])),
                          torch.tensor([[0.5] * 4, [1.0] * 4]))


def test_inverse_cdf_sampling_matches_the_pdf():
    edges = torch.tensor([[0.0, 0.5, 1.0, 2.0, 2.2, 3.0]], dtype=torch.float64)
    weights = torch.tensor([[0.1, 0.0, 0.6, 0.25, 0.05]], dtype=torch.float64)
    eps = 1e-5
    n = 20000
    s = sampling.sample_pdf(edges, weights, n, generator=torch.Generator().manual_seed(3), eps=eps)[0].numpy()
    p = (weights[0].numpy() + eps) / (weights[0].numpy() + eps).sum()
    cum = np.concatenate([[0.0], np.cumsum(p)])
    e = edges[0].numpy()

    def cdf(x):   # the piecewise-linear CDF of the piecewise-constant pdf, written independently
        x = np.asarray(x, dtype=float)
        out = np.zeros_like(x)
        for i in range(len(p)):
            inside = (x >= e[i]) & (x < e[i + 1])
            out[inside] = cum[i] + p[i] * (x[inside] - e[i]) / (e[i + 1] - e[i])
        out[x >= e[-1]] = 1.0
        return out

    assert stats.kstest(s, cdf).pvalue > 1e-3
    # a wrong pdf is rejected (the test can fail)
    assert stats.kstest(s, lambda x: np.clip(np.asarray(x) / 3.0, 0, 1)).pvalue < 1e-6
    det = sampling.sample_pdf(edges, weights, 7, deterministic=True)
    assert torch.all(det[0, 1:] >= det[0, :-1])


# ----------------------------------------------------------------- encodings
def test_positional_encoding_is_eq4():
    x = torch.tensor([[0.3, -1.2, 0.05]], dtype=torch.float64)
    enc = encoding.positional_encoding(x, 3)
    assert enc.shape == (1, encoding.encoded_size(3, 3)) == (1, 21)
    expect = [0.3, -1.2, 0.05]
    for k in range(3):
        expect += [math.sin(2 ** k * math.pi * p) for p in (0.3, -1.2, 0.05)]
        expect += [math.cos(2 ** k * math.pi * p) for p in (0.3, -1.2, 0.05)]
    assert torch.allclose(enc[0], torch.tensor(expect, dtype=torch.float64))


def test_spherical_harmonics_are_scipys_real_basis():
    # Gauss-Legendre in cos(theta) x uniform phi integrates products of degree <= 4 exactly
    nodes, wts = np.polynomial.legendre.leggauss(12)
    phi = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ct, ph = np.meshgrid(nodes, phi, indexing="ij")
    wq = (wts[:, None] * np.full_like(ph, 2 * np.pi / len(phi))).ravel()
    theta = np.arccos(ct).ravel()
    ph = ph.ravel()
    d = torch.tensor(np.stack([np.sin(theta) * np.cos(ph), np.sin(theta) * np.sin(ph), np.cos(theta)], -1))
    ours = encoding.sh_basis(d, 2).numpy()                                   # [Q, 9]
    gram = (ours * wq[:, None]).T @ ours
    assert np.allclose(gram, np.eye(9), atol=1e-10)                         # orthonormal
    ref = []                                                                 # scipy's real SH
    for l in range(3):
        for m in range(-l, l + 1):
            y = sph_harm_y(l, abs(m), theta, ph)
            ref.append(y.real if m == 0 else math.sqrt(2) * (y.imag if m < 0 else y.real))
    ref = np.stack(ref, -1)
    cross = (ours * wq[:, None]).T @ ref                                     # ours vs scipy: a signed permutation
    assert np.allclose(np.abs(cross), np.eye(9), atol=1e-10)


# ----------------------------------------------------------------- volume rendering
def test_constant_density_closed_form():
    sigma0, tn, tf = 0.7, 2.0, 6.0
    t = sampling.stratified_samples(tn, tf, 64, 3, perturb=False, dtype=torch.float64)
    deltas = sampling.deltas_from_t(t, tf)
    out = render.volume_render(torch.full_like(t, sigma0), torch.ones(3, 64, 3, dtype=torch.float64), deltas, t)
    assert torch.allclose(out.opacity, torch.full((3,), 1 - math.exp(-sigma0 * (tf - tn)), dtype=torch.float64))
    # expected depth int t sigma e^{-sigma (t - tn)} dt on [tn, tf], as the samples get dense
    t = sampling.stratified_samples(tn, tf, 20000, 1, perturb=False, dtype=torch.float64)
    out = render.volume_render(torch.full_like(t, sigma0), torch.ones(1, 20000, 3, dtype=torch.float64),
                               sampling.deltas_from_t(t, tf), t + 0.5 * (tf - tn) / 20000)
    L = tf - tn
    exact = tn * (1 - math.exp(-sigma0 * L)) + (1 - math.exp(-sigma0 * L) * (1 + sigma0 * L)) / sigma0
    assert abs(out.depth.item() - exact) < 1e-6


def test_piecewise_constant_medium_is_rendered_exactly():
    # two slabs: [2, 3) density 0.5 colour red, [3, 4.5) density 2 colour green, then background blue
    t = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    deltas = torch.tensor([[1.0, 1.5]], dtype=torch.float64)
    sigma = torch.tensor([[0.5, 2.0]], dtype=torch.float64)
    rgb = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64)
    out = render.volume_render(sigma, rgb, deltas, t, background=torch.tensor([0.0, 0.0, 1.0]))
    a1, a2 = 1 - math.exp(-0.5), 1 - math.exp(-3.0)
    expect = torch.tensor([a1, (1 - a1) * a2, (1 - a1) * (1 - a2)], dtype=torch.float64)
    assert torch.allclose(out.rgb[0], expect)
    assert torch.allclose(out.weights.sum(-1), out.opacity)                   # weights sum to the opacity


def _random_rays(R=64, N=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    sigma = torch.rand(R, N, generator=g, dtype=torch.float64) * 3
    sigma[:, :5] = 0.0                                                        # some empty space
    rgb = torch.rand(R, N, 3, generator=g, dtype=torch.float64)
    deltas = torch.rand(R, N, generator=g, dtype=torch.float64) * 0.2 + 0.01
    target = torch.rand(R, 3, generator=g, dtype=torch.float64)
    bg = torch.rand(3, generator=g, dtype=torch.float64)
    return sigma, rgb, deltas, target, bg


def test_weights_sum_to_opacity():
    sigma, rgb, deltas, _, _ = _random_rays()
    w, t_last = render.render_weights(sigma, deltas)
    assert torch.allclose(w.sum(-1), 1 - t_last)
    assert torch.allclose(w, render.transmittance(sigma, deltas)[:, :-1] * render.alphas(sigma, deltas))


@pytest.mark.parametrize("with_background", [False, True])
def test_seed_gradients_match_autograd(with_background):
    sigma, rgb, deltas, target, bg = _random_rays()
    bg = bg if with_background else None
    s, c = sigma.clone().requires_grad_(), rgb.clone().requires_grad_()
    loss = ((render.volume_render(s, c, deltas, background=bg).rgb - target) ** 2).sum()
    gs, gc = torch.autograd.grad(loss, (s, c))
    dc, ds = render.mse_loss_grads(sigma, rgb, deltas, target, bg)
    assert torch.allclose(dc, gc, atol=1e-12) and torch.allclose(ds, gs, atol=1e-12)
    # a wrong formula (the background term dropped) disagrees when there is a background
    if with_background:
        g = 2 * (render.volume_render(sigma, rgb, deltas, background=bg).rgb - target)
        assert not torch.allclose(render.grad_sigma(sigma, rgb, deltas, g, None), gs, atol=1e-6)


def test_custom_function_matches_autograd_and_gradcheck():
    sigma, rgb, deltas, target, bg = _random_rays(R=6, N=7, seed=2)
    s, c = sigma.clone().requires_grad_(), rgb.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: render.render_color(a, b, deltas, bg, analytic=True), (s, c))
    out_a = render.render_color(s, c, deltas, bg, analytic=True)
    out_b = render.render_color(s, c, deltas, bg, analytic=False)
    assert torch.allclose(out_a, out_b)
    ga = torch.autograd.grad(((out_a - target) ** 2).mean(), (s, c))
    gb = torch.autograd.grad(((out_b - target) ** 2).mean(), (s, c))
    assert all(torch.allclose(x, y, atol=1e-12) for x, y in zip(ga, gb))


def test_custom_function_keeps_less_for_backward():
    sigma, rgb, deltas, target, bg = _random_rays(R=256, N=64)
    saved = {}

    def measure(analytic):
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t
        s, c = sigma.clone().requires_grad_(), rgb.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            render.render_color(s, c, deltas, bg, analytic=analytic)
        return total[0]
    saved = {a: measure(a) for a in (True, False)}
    assert saved[True] < saved[False]


# ----------------------------------------------------------------- PSNR / SSIM
def test_psnr_and_ssim_match_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    rng = np.random.default_rng(0)
    a = rng.random((2, 40, 33, 3))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ta, tb = torch.tensor(a), torch.tensor(b)
    for i in range(2):
        assert abs(psnr(ta, tb)[i].item() - peak_signal_noise_ratio(a[i], b[i], data_range=1.0)) < 1e-9
        ref = structural_similarity(a[i], b[i], data_range=1.0, channel_axis=-1, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
        assert abs(ssim(ta, tb)[i].item() - ref) < 1e-9
        assert abs(ssim(ta[i], tb[i]).item() - ref) < 1e-9
    assert abs(ssim(ta[0], ta[0]).item() - 1.0) < 1e-12
