"""The ``nerf`` (vanilla) and ``nerf-grid`` (fast) models: posed rays in, colours out (Mildenhall et al. 2020, Fig. 2).

Both take batches of rays (origins, unit directions, target colours), sample points along them, query
their field, render with Eq. 3 of Mildenhall et al. 2020 (``render.py``) over the scene's background and
minimise the mean squared error of the colours (Eq. 6; averaged over rays and channels).

``NeRF`` (Mildenhall et al. 2020, Sec. 5.2): N_c stratified samples on [t_n, t_f] through a coarse field,
N_f more by inverse-CDF sampling of the coarse weights, all N_c + N_f through a fine field;
L = |C_c - C|^2 + |C_f - C|^2.

``NeRFGrid`` (the fast field, ``fields.TensorialField``): samples only inside the scene box, one every
``step_ratio`` cells; samples in empty cells of the occupancy grid are skipped; early ray termination
drops the samples behind an opaque surface (T_i < ``ert_threshold``) before the colour is evaluated; the
grid grows coarse to fine. ``analytic_grad`` renders with the hand-derived backward pass of genlab.families.nerf.render.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlab.abilities import RendersViews
from genlab.config import field, require
from genlab.data.registry import DataInfo
from genlab.errors import ConfigError
from genlab.families.nerf.fields import OccupancyGrid, TensorialField, VanillaField
from genlab.families.nerf.rays import orbit_poses, ray_aabb
from genlab.families.nerf.render import render_color, render_weights
from genlab.families.nerf.sampling import deltas_from_t, sample_pdf, stratified_samples
from genlab.maths.cameras import camera_rays, intrinsics
from genlab.model import Avg, GenerativeModel, register_model


# ----------------------------------------------------------------- configs
@dataclass
class NeRFConfig:
    pos_freqs: int = field(10, "positional-encoding frequencies L for x (Eq. 4)")
    dir_freqs: int = field(4, "positional-encoding frequencies L for d")
    width: int = field(256, "MLP width")
    depth: int = field(8, "MLP layers (the skip connection enters layer depth/2 + 1)")
    n_coarse: int = field(64, "stratified samples per ray (coarse field)")
    n_fine: int = field(128, "inverse-CDF samples per ray (fine field); 0: no fine field")
    analytic_grad: bool = field(True, "render with the hand-derived gradient instead of autograd's")
    chunk: int = field(4096, "rays per forward pass when rendering whole views")

    def validate(self):
        require(self.pos_freqs >= 0 and self.dir_freqs >= 0, "pos_freqs and dir_freqs must be >= 0")
        require(self.width >= 8 and self.depth >= 2, f"need width >= 8 and depth >= 2, got {self.width}, {self.depth}")
        require(self.n_coarse >= 2 and self.n_fine >= 0, "need n_coarse >= 2 and n_fine >= 0")
        require(self.chunk >= 1, "chunk must be >= 1")


@dataclass
class NeRFGridConfig:
    resolution: int = field(128, "final grid cells per side over the scene box")
    init_resolution: int = field(32, "grid cells per side at the start (coarse-to-fine; resolution / 2^k)")
    grow_every: int = field(150, "training steps between doublings of the grid resolution")
    density_rank: int = field(8, "density components per plane/line pair (TensoRF VM rank)")
    color_rank: int = field(16, "appearance components per plane/line pair")
    sh_degree: int = field(1, "spherical-harmonics degree of the colour (0: no view dependence)")
    step_ratio: float = field(0.5, "distance between samples along a ray, in grid cells")
    occupancy_resolution: int = field(64, "cells per side of the occupancy grid (empty-space skipping)")
    occupancy_every: int = field(16, "training steps between occupancy-grid updates")
    occupancy_start: int = field(64, "training steps before the first update (until then every cell is occupied)")
    occupancy_alpha: float = field(1e-3, "a cell is empty when its alpha per step stays below this")
    ert_threshold: float = field(1e-4, "early ray termination: drop samples whose transmittance is below this")
    grid_lr: float = field(0.02, "learning rate of the grids (the SH basis uses the run's --lr)")
    analytic_grad: bool = field(True, "render with the hand-derived gradient instead of autograd's")
    chunk: int = field(8192, "rays per forward pass when rendering whole views")

    def validate(self):
        require(self.init_resolution >= 4, f"init_resolution must be >= 4, got {self.init_resolution}")
        ratio = self.resolution / self.init_resolution
        require(self.init_resolution >= 4 and ratio >= 1 and ratio == 2 ** round(math.log2(ratio)),
                f"resolution ({self.resolution}) must be init_resolution ({self.init_resolution}) times a power of 2")
        require(self.grow_every >= 1, "grow_every must be >= 1")
        require(self.density_rank >= 1 and self.color_rank >= 1, "ranks must be >= 1")
        require(self.sh_degree in (0, 1, 2), f"sh_degree must be 0, 1 or 2, got {self.sh_degree}")
        require(0.05 <= self.step_ratio <= 4, f"step_ratio must be in [0.05, 4], got {self.step_ratio}")
        require(self.occupancy_resolution >= 4, "occupancy_resolution must be >= 4")
        require(self.occupancy_every >= 1, "occupancy_every must be >= 1")
        require(0 < self.occupancy_alpha < 1 and 0 <= self.ert_threshold < 1, "thresholds must be in (0, 1)")
        require(self.grid_lr > 0 and self.chunk >= 1, "grid_lr and chunk must be positive")


@dataclass
class NeRFSampleConfig:
    orbit: int = field(60, "frames of the turntable GIF (a circle around the scene)")
    elevation: float = field(30.0, "camera elevation of the orbit, in degrees")
    size: int | None = field(None, "frame height and width in pixels (default: the data's)")
    fps: int = field(20, "frames per second of the GIF")

    def validate(self):
        require(1 <= self.orbit <= 3600, f"--orbit must be in 1..3600 frames, got {self.orbit}")
        require(self.size is None or 8 <= self.size <= 2048, f"--size must be in 8..2048, got {self.size}")
        require(1 <= self.fps <= 100, f"--fps must be in 1..100, got {self.fps}")


# ----------------------------------------------------------------- the scene a model is built for
def scene_extras(info: DataInfo) -> dict:
    """near, far, background, image size, focal, box bound and camera radius from the data's extras."""
    ex = info.extras
    need = ("near", "far", "background", "height", "width", "focal", "bound", "camera_radius")
    missing = [k for k in need if k not in ex]
    if info.kind != "rays" or missing:
        raise ConfigError(f"NeRF models need ray data (blender, tiny-nerf, synthetic-scene); got kind {info.kind!r}"
                          + (f" without {', '.join(missing)}" if missing else ""))
    return ex


class RadianceModel(GenerativeModel):
    """What both NeRF models share: the loss, metrics per held-out view, whole-view and orbit rendering."""

    def __init__(self, config, data_info: DataInfo):
        super().__init__(config, data_info)
        ex = scene_extras(data_info)
        self.near, self.far = float(ex["near"]), float(ex["far"])
        self.register_buffer("background", torch.tensor(ex["background"], dtype=torch.float32))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))   # training forward passes done

    def render_rays(self, o: torch.Tensor, d: torch.Tensor, perturb: bool = False) -> dict[str, torch.Tensor]:
        """{"rgb" [R, 3], "depth" [R], "opacity" [R], and for training the losses' colours}."""
        raise NotImplementedError

    @torch.no_grad()
    def render_chunks(self, o: torch.Tensor, d: torch.Tensor) -> dict[str, torch.Tensor]:
        outs = [self.render_rays(o[i:i + self.config.chunk], d[i:i + self.config.chunk])
                for i in range(0, len(o), self.config.chunk)]
        return {k: torch.cat([out[k] for out in outs]) for k in ("rgb", "depth", "opacity")}

    def loss(self, batch, phase: str = "main"):
        o, d, target = batch[:3]
        if self.training:
            self.step += 1
        out = self.render_rays(o, d, perturb=self.training)
        mse = sum(((c - target) ** 2).mean() for c in out["train_colors"])
        final = ((out["rgb"] - target) ** 2).mean().detach()
        return mse, {"mse": final, "psnr": -10.0 * torch.log10(final.clamp_min(1e-10))}

    def eval_metrics(self, batch, **options):
        """One whole held-out view per batch: its PSNR, 10 log10(1 / MSE), and the per-pixel MSE.

        SSIM and seconds per rendered view come from the eval layer (``genlab.families.nerf.metrics``): timings are not
        deterministic, and the eval layer may not be imported from here.
        """
        o, d, target = batch[:3]
        H, W = int(self.data_info.extras["height"]), int(self.data_info.extras["width"])
        pred = self.render_chunks(o, d)["rgb"].clamp(0, 1).view(-1, H * W * 3)   # [V H W, 3] -> [V, H W 3]
        err = ((pred - target.reshape(-1, H * W * 3)) ** 2).mean(dim=-1)        # [V]
        return {"psnr": -10.0 * torch.log10(err.clamp_min(1e-20)),
                "mse": Avg(err.sum() * H * W * 3, err.numel() * H * W * 3)}

    @torch.no_grad()
    def render_view(self, pose: torch.Tensor, height: int | None = None, width: int | None = None,
                    focal: float | None = None) -> dict[str, torch.Tensor]:
        """rgb [H, W, 3], depth [H, W], opacity [H, W] of a camera-to-world pose (the data's camera by default)."""
        ex = self.data_info.extras
        H, W = height or int(ex["height"]), width or int(ex["width"])
        f = focal if focal is not None else float(ex["focal"]) * W / int(ex["width"])
        o, d = camera_rays(intrinsics(f, W, H), pose.double(), H, W)
        out = self.render_chunks(o.reshape(-1, 3).float().to(self.background.device),   # [H, W, 3] -> [H W, 3]
                                 d.reshape(-1, 3).float().to(self.background.device))
        return {"rgb": out["rgb"].view(H, W, 3), "depth": out["depth"].view(H, W),
                "opacity": out["opacity"].view(H, W)}

    def orbit(self, n: int, elevation: float = 30.0, size: int | None = None) -> torch.Tensor:
        """A turntable: n frames [n, H, W, 3] on a circle at the cameras' distance."""
        ex = self.data_info.extras
        poses = orbit_poses(n, float(ex["camera_radius"]), elevation, tuple(ex.get("target", (0.0, 0.0, 0.0))),
                            tuple(ex.get("up", (0.0, 0.0, 1.0))))
        scale = 1.0 if size is None else size / int(ex["width"])
        H, W = (int(ex["height"]), int(ex["width"])) if size is None else (size, size)
        return torch.stack([self.render_view(p, H, W, float(ex["focal"]) * scale)["rgb"] for p in poses])


# ----------------------------------------------------------------- vanilla NeRF
@register_model("nerf", NeRFConfig, "vanilla NeRF: positional encoding, 8-layer MLP with a skip, coarse + fine "
                "hierarchical sampling (Mildenhall et al. 2020)", default_data="synthetic-scene",
                sample_config=NeRFSampleConfig, sample="figures:sample_orbit", abilities={RendersViews},
                data_kinds=("rays",))
class NeRF(RadianceModel):
    def __init__(self, config: NeRFConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        c = config
        self.coarse = VanillaField(c.pos_freqs, c.dir_freqs, c.width, c.depth, c.depth // 2)
        self.fine = VanillaField(c.pos_freqs, c.dir_freqs, c.width, c.depth, c.depth // 2) if c.n_fine else None

    def _composite(self, field, o, d, t):
        R, N = t.shape
        x = o[:, None] + t[..., None] * d[:, None]                                   # [R, N, 3]
        rgb, sigma = field(x.reshape(-1, 3), d[:, None].expand(R, N, 3).reshape(-1, 3))   # [R N, 3] each
        rgb, sigma = rgb.view(R, N, 3), sigma.view(R, N)                            # [R N, ...] -> [R, N, ...]
        deltas = deltas_from_t(t, self.far)
        color = render_color(sigma, rgb, deltas, self.background, analytic=self.config.analytic_grad)
        w, t_last = render_weights(sigma.detach(), deltas)
        return color, w, (w * t).sum(-1), 1 - t_last

    def render_rays(self, o, d, perturb=False):
        gen = None
        t_c = stratified_samples(self.near, self.far, self.config.n_coarse, len(o), perturb, gen, o.device)
        color_c, w, depth, opacity = self._composite(self.coarse, o, d, t_c)
        colors = [color_c]
        if self.fine is not None:
            edges = torch.cat([t_c, torch.full_like(t_c[:, :1], self.far)], dim=-1)   # bins [t_i, t_{i+1}]
            t_f = sample_pdf(edges, w, self.config.n_fine, deterministic=not perturb)
            t_all, _ = torch.sort(torch.cat([t_c, t_f], dim=-1), dim=-1)
            color_f, _, depth, opacity = self._composite(self.fine, o, d, t_all)
            colors.append(color_f)
        return {"rgb": colors[-1], "depth": depth, "opacity": opacity, "train_colors": colors}


# ----------------------------------------------------------------- the fast grid field
@register_model("nerf-grid", NeRFGridConfig, "fast NeRF: factorised explicit grid (TensoRF VM) with SH colour, "
                "occupancy grid, early ray termination, coarse-to-fine growth", default_data="synthetic-scene",
                sample_config=NeRFSampleConfig, sample="figures:sample_orbit", abilities={RendersViews},
                data_kinds=("rays",))
class NeRFGrid(RadianceModel):
    def __init__(self, config: NeRFGridConfig, data_info: DataInfo):
        super().__init__(config, data_info)
        c = config
        self.bound = float(data_info.extras["bound"])
        self.field = TensorialField(self.bound, c.resolution, c.density_rank, c.color_rank, c.sh_degree)
        self.occupancy = OccupancyGrid(c.occupancy_resolution, self.bound)
        self._sync_resolution()

    def phases(self):
        grids = [p for n, p in self.named_parameters() if "grid" in n]
        rest = [p for n, p in self.named_parameters() if "grid" not in n]
        return {"main": {"params": [{"params": grids, "lr": self.config.grid_lr}, {"params": rest}]}}

    # coarse-to-fine: the resolution is a function of the step counter (a buffer), so resume is exact
    def resolution_at(self, step: int) -> int:
        c = self.config
        return min(c.resolution, c.init_resolution * 2 ** (step // c.grow_every))

    def _sync_resolution(self) -> None:
        r = self.resolution_at(int(self.step))
        if r != self.field.density_grid.active:
            self.field.grow(r)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        r = self.resolution_at(int(self.step))      # a loaded model resumes at its step's resolution
        self.field.density_grid.active = self.field.color_grid.active = r

    def step_size(self) -> float:
        return 2 * self.bound / self.field.density_grid.active * self.config.step_ratio

    def render_rays(self, o, d, perturb=False):
        c = self.config
        if self.training:
            self._sync_resolution()
            if int(self.step) >= c.occupancy_start and int(self.step) % c.occupancy_every == 0:
                threshold = -math.log(1 - c.occupancy_alpha) / self.step_size()
                self.occupancy.update(self.field.density, threshold)
        R, step = len(o), self.step_size()
        box = torch.full((3,), self.bound, device=o.device)
        t0, t1 = ray_aabb(o, d, -box, box)
        t0, t1 = t0.clamp_min(self.near), t1.clamp_max(self.far)
        hit = t1 > t0
        M = max(1, int(math.ceil(((t1 - t0)[hit].max().item() if hit.any() else 0.0) / step)))
        u = torch.rand(R, 1, device=o.device) if perturb else torch.full((R, 1), 0.5, device=o.device)
        t = t0[:, None] + (torch.arange(M, device=o.device) + u) * step              # [R, M]
        x = o[:, None] + t[..., None] * d[:, None]                                  # [R, M, 3]
        keep = hit[:, None] & (t < t1[:, None])
        keep &= self.occupancy(x.view(-1, 3)).view(R, M)                            # empty-space skipping
        ray_of = torch.arange(R, device=o.device)[:, None].expand(R, M)
        sigma_k = self.field.density(x[keep])                                       # [P]
        # early ray termination: drop samples behind an (almost) opaque surface before the colour
        with torch.no_grad():
            sig = torch.zeros(R, M, device=o.device)
            sig[keep] = sigma_k
            T = torch.exp(-torch.cumsum(sig * step, dim=-1) + sig * step)           # T_i (exclusive), [R, M]
            alive = T[keep] > c.ert_threshold                                       # [P]
        flat = keep.view(-1).nonzero()[:, 0][alive]                                # indices into [R M]
        sigma_k = sigma_k[alive]
        rgb_k = self.field.color(x.view(-1, 3)[flat], d[ray_of.reshape(-1)[flat]])  # [P', 3]
        sigma = torch.zeros(R * M, device=o.device).index_put((flat,), sigma_k).view(R, M)
        rgb = torch.zeros(R * M, 3, device=o.device).index_put((flat,), rgb_k).view(R, M, 3)
        deltas = torch.full((R, M), step, device=o.device)
        color = render_color(sigma, rgb, deltas, self.background, analytic=c.analytic_grad)
        w, t_last = render_weights(sigma.detach(), deltas)
        return {"rgb": color, "depth": (w * t).sum(-1), "opacity": 1 - t_last, "train_colors": [color],
                "samples": torch.tensor(float(len(flat)))}
