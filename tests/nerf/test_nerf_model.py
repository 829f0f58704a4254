"""The NeRF models: grid growth, occupancy, analytic vs autograd training, and a fast field that
overfits the offline scene."""
from __future__ import annotations

import time

import pytest
import torch

from genlab.config import from_dict
from genlab.data.registry import load_dataset
from genlab.families.nerf.fields import OccupancyGrid, VMGrid
from genlab.families.nerf.model import NeRF, NeRFConfig, NeRFGrid, NeRFGridConfig
from genlab.maths.image_quality import psnr

TINY_GRID = dict(resolution=32, init_resolution=16, grow_every=40, density_rank=4, color_rank=8, sh_degree=1,
                 occupancy_resolution=32, occupancy_start=30, occupancy_every=10)


@pytest.fixture(scope="module")
def tiny_scene():
    torch.set_num_threads(1)
    return (load_dataset("synthetic-scene", "train", size=24, views=12, supersample=1),
            load_dataset("synthetic-scene", "test", size=24, views=12, supersample=1))


@pytest.mark.unit
def test_ray_data_batches(tiny_scene):
    train, test = tiny_scene
    assert len(train) == 12 and train.info.kind == "rays"
    views = list(test.eval_batches(999))
    assert len(views) == 8 and all(v[0].shape == (24 * 24, 3) for v in views)
    assert torch.allclose(views[2][2].view(24, 24, 3), test.scene.images[2])

    class One:
        rank, world_size = 0, 1
    src = train.train_batches(100, seed=0, dist=One())
    o, d, c = src.get(0, 3)
    assert o.shape == d.shape == c.shape == (100, 3)
    assert torch.allclose(d.norm(dim=-1), torch.ones(100), atol=1e-5)
    assert len(train.subset(slice(0, 3))) == 3


@pytest.mark.unit
def test_grid_growth_keeps_the_coarse_function():
    torch.manual_seed(0)
    g = VMGrid(rank=3, resolution=32, bound=1.5)
    g.grow(4)
    x = torch.rand(2000, 3) * 2.4 - 1.2
    before = g.features(x)
    g.grow(8)
    after = g.features(x)
    assert g.planes.shape == (3, 3, 32, 32)                 # parameter shapes never change
    assert torch.allclose(after, before, atol=1e-7)          # the same function just after growing
    assert torch.equal(g.planes[:, :, :4, :4], g.planes[:, :, :1, :1].expand(3, 3, 4, 4))   # block values
    g2 = VMGrid(rank=3, resolution=32, bound=1.5)
    assert g2.active == 32


@pytest.mark.unit
def test_occupancy_grid_marks_a_ball():
    occ = OccupancyGrid(resolution=16, bound=1.0)
    occ.update(lambda x: 10.0 * (x.norm(dim=-1) < 0.4).float(), threshold=1.0,
               generator=torch.Generator().manual_seed(0))
    inside = torch.rand(500, 3) * 0.6 - 0.3
    inside = inside[inside.norm(dim=-1) < 0.3]
    assert occ(inside).all()
    far = torch.tensor([[0.95, 0.95, 0.95], [-0.9, 0.9, -0.9], [2.0, 0.0, 0.0]])
    assert not occ(far).any()
    assert 0.01 < occ.occupied.float().mean() < 0.2


def _info(train):
    return train.info


@pytest.mark.unit
@pytest.mark.parametrize("name", ["nerf", "nerf-grid"])
def test_analytic_gradient_trains_like_autograd(tiny_scene, name):
    train, _ = tiny_scene
    o, d, c = (t[:64] for t in train.rays())
    grads = []
    for analytic in (True, False):
        torch.manual_seed(0)
        if name == "nerf":
            m = NeRF(from_dict(NeRFConfig, dict(width=16, depth=4, n_coarse=8, n_fine=8, analytic_grad=analytic)),
                     train.info)
        else:
            m = NeRFGrid(from_dict(NeRFGridConfig, dict(TINY_GRID, analytic_grad=analytic)), train.info)
        m.train()
        torch.manual_seed(1)
        loss, _ = m.loss((o, d, c))
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in m.parameters() if p.grad is not None]))
    (la, ga), (lb, gb) = grads
    assert torch.allclose(la, lb) and len(ga) == len(gb) > 0
    assert all(torch.allclose(x, y, atol=1e-6, rtol=1e-4) for x, y in zip(ga, gb))


@pytest.mark.unit
def test_vanilla_nerf_renders_and_reports(tiny_scene):
    train, test = tiny_scene
    m = NeRF(from_dict(NeRFConfig, dict(width=16, depth=4, n_coarse=8, n_fine=8, chunk=100)), train.info).eval()
    out = m.render_chunks(*test.rays()[:2])
    assert out["rgb"].shape == (8 * 24 * 24, 3) and out["depth"].shape == (8 * 24 * 24,)
    assert ((out["opacity"] >= 0) & (out["opacity"] <= 1 + 1e-6)).all()
    metrics = m.eval_metrics(next(test.eval_batches(1)))
    assert set(metrics) == {"psnr", "mse"} and torch.isfinite(metrics["psnr"]).all()


@pytest.mark.unit
def test_grid_state_restores_its_resolution(tiny_scene):
    train, _ = tiny_scene
    cfg = from_dict(NeRFGridConfig, TINY_GRID)
    m = NeRFGrid(cfg, train.info)
    assert m.field.density_grid.active == 16
    m.step.fill_(45)
    m2 = NeRFGrid(cfg, train.info)
    m2.load_state_dict(m.state_dict())
    assert m2.field.density_grid.active == m2.field.color_grid.active == 32


@pytest.mark.slow
def test_fast_field_overfits_the_offline_scene(tiny_scene):
    """A few hundred steps of the fast field on 12 views of 24 x 24: high PSNR on the training views."""
    train, _ = tiny_scene
    torch.manual_seed(0)
    m = NeRFGrid(from_dict(NeRFGridConfig, TINY_GRID), train.info)
    opt = torch.optim.Adam(m.phases()["main"]["params"], lr=1e-2)
    o, d, c = train.rays()
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    m.train()
    for _ in range(240):
        idx = torch.randint(0, len(o), (1024,), generator=g)
        loss, _ = m.loss((o[idx], d[idx], c[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    out = m.render_chunks(o, d)
    value = psnr(out["rgb"].clamp(0, 1).view(12, 24, 24, 3), c.view(12, 24, 24, 3)).mean().item()
    assert value > 24.0, value
    assert m.occupancy.occupied.float().mean() < 0.97      # some empty space found and skipped ...
    kept = m.occupancy.occupied.clone()
    m.occupancy.occupied.fill_(True)
    everything = m.render_chunks(o, d)["rgb"]
    m.occupancy.occupied.copy_(kept)
    assert (everything - out["rgb"]).abs().mean() < 0.01   # ... whose density was negligible
    # early ray termination changes the rendering by (far) less than one grey level
    m.config.ert_threshold = 0.0
    full = m.render_chunks(o[:2000], d[:2000])["rgb"]
    assert (full - out["rgb"][:2000]).abs().max() < 2e-3
    print(f"overfit: {value:.2f} dB in {time.perf_counter() - start:.1f} s")
