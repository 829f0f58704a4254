"""Radiance fields F(x, d) -> (c, sigma): the vanilla MLP and a fast factorised grid.

``VanillaField`` is the network of Mildenhall et al. 2020 (Fig. 7): gamma(x) (Eq. 4, L = 10) through 8
ReLU layers of width 256 with gamma(x) concatenated again into the fifth (the skip connection); a linear
head gives the density sigma (non-negative), a 256-wide feature is joined with gamma(d) (L = 4) and one
128-wide layer gives the colour c through a sigmoid. sigma depends on x only, c on x and d.

``TensorialField`` is the fast field (NeRF's first limit, speed), an explicit grid in the spirit of Plenoxels
(Fridovich-Keil et al. 2022) and DVGO (Sun et al. 2022), factorised as in TensoRF (Chen et al. 2022,
Eq. 4, the vector-matrix "VM" decomposition) so that it is small enough for CPU training:

    raw(x) = sum_r  P^XY_r(x, y) L^Z_r(z) + P^XZ_r(x, z) L^Y_r(y) + P^YZ_r(y, z) L^X_r(x)

with learned planes P (R x R) and lines L (R), bilinearly / linearly interpolated. The density is
sigma = s softplus(raw_sigma(x) + b) (interpolate, then activate: sharp surfaces inside a voxel, as in
DVGO Sec. 4.1); the colour is the sigmoid of spherical harmonics of degree <= 2 (PlenOctrees, Yu et al. 2021,
Eq. 5; degree 1 by default, 12 coefficients) which are a linear map of the appearance components:
c(x, d) = sigmoid(sum_lm k_lm(x) Y_lm(d)), k(x) = B [P_r L_r]_r.

Coarse-to-fine growth (DVGO Sec. 5 / TensoRF progressive upsampling) keeps the parameter shapes fixed,
so any optimizer and checkpoint works: at r < R cells per side the planes and lines are averaged over
blocks of R / r cells and held constant on each block; on growing, the stored parameters take those
block values, so the field is the same function just after growing and the finer cells then move apart.

``OccupancyGrid``: a coarse boolean grid of cells whose density can matter (Plenoxels / instant-NGP,
Mueller et al. 2022 Sec. 4): samples in empty cells are skipped. The renderer in ``model.py`` adds early
ray termination.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genlab.families.nerf.encoding import encoded_size, positional_encoding, sh_basis


# ----------------------------------------------------------------- the vanilla MLP field
class VanillaField(nn.Module):
    """F_Theta(x, d) -> (c, sigma) of Mildenhall et al. 2020, Fig. 7 (depth 8, skip into layer 5)."""

    def __init__(self, pos_freqs: int = 10, dir_freqs: int = 4, width: int = 256, depth: int = 8, skip: int = 4):
        super().__init__()
        self.pos_freqs, self.dir_freqs, self.skip = pos_freqs, dir_freqs, skip
        d_pos, d_dir = encoded_size(3, pos_freqs), encoded_size(3, dir_freqs)
        self.layers = nn.ModuleList(
            nn.Linear(d_pos if i == 0 else width + (d_pos if i == skip else 0), width) for i in range(depth))
        self.sigma_head = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.color_layer = nn.Linear(width + d_dir, width // 2)
        self.color_head = nn.Linear(width // 2, 3)

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x, d: [P, 3] -> (c [P, 3], sigma [P])."""
        gx = positional_encoding(x, self.pos_freqs)                       # [P, 3] -> [P, 63]
        h = gx
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, gx], dim=-1)                            # the skip connection
            h = F.relu(layer(h))
        sigma = F.softplus(self.sigma_head(h)[..., 0] - 1.0)              # [P, 1] -> [P], >= 0 (mip-NeRF's softplus)
        gd = positional_encoding(d, self.dir_freqs)                       # [P, 3] -> [P, 27]
        h = F.relu(self.color_layer(torch.cat([self.feature(h), gd], dim=-1)))
        return torch.sigmoid(self.color_head(h)), sigma


# ----------------------------------------------------------------- the factorised grid (TensoRF VM)
PLANES = ((0, 1), (0, 2), (1, 2))    # XY, XZ, YZ planes ...
LINES = (2, 1, 0)                    # ... each paired with the line along the remaining axis


class VMGrid(nn.Module):
    """rank components of the vector-matrix decomposition on [-bound, bound]^3 at resolution R (TensoRF Eq. 4).

    ``features(x)`` -> [P, 3 rank]: the products P^m_r L^m_r for the three plane/line pairs m.
    """

    def __init__(self, rank: int, resolution: int, bound: float, init_std: float = 0.1):
        super().__init__()
        self.bound, self.resolution, self.rank = bound, resolution, rank
        self.planes = nn.Parameter(init_std * torch.randn(3, rank, resolution, resolution))   # [3, r, R, R]
        self.lines = nn.Parameter(init_std * torch.randn(3, rank, resolution, 1))             # [3, r, R, 1]
        self.active = resolution        # cells per side in use (coarse-to-fine)

    def _effective(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The planes and lines in use: at ``active`` < R cells per side, block averages held constant over
        each block (k = R / active fine cells), so the field has only active^2 (active) degrees of freedom."""
        k = self.resolution // self.active
        if k == 1:
            return self.planes, self.lines
        planes = F.interpolate(F.avg_pool2d(self.planes, k), scale_factor=k, mode="nearest")        # [3, r, R, R]
        lines = F.interpolate(F.avg_pool2d(self.lines, (k, 1)), scale_factor=(k, 1), mode="nearest")  # [3, r, R, 1]
        return planes, lines

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [P, 3] in world units -> [P, 3 rank]."""
        u = x / self.bound                                                        # [-1, 1] inside the box
        planes, lines = self._effective()
        pc = torch.stack([u[:, [a, b]] for a, b in PLANES])[:, :, None, :]       # [3, P, 1, 2] (grid_sample's (x, y))
        lc = torch.stack([torch.stack([torch.zeros_like(u[:, a]), u[:, a]], -1) for a in LINES])[:, :, None, :]
        pf = F.grid_sample(planes, pc, align_corners=False, padding_mode="border")   # [3, r, P, 1]
        lf = F.grid_sample(lines, lc, align_corners=False, padding_mode="border")    # [3, r, P, 1]
        return (pf * lf)[..., 0].permute(2, 0, 1).reshape(x.shape[0], 3 * self.rank)  # [3, r, P] -> [P, 3 r]

    @torch.no_grad()
    def grow(self, active: int) -> None:
        """Use ``active`` cells per side. The stored parameters take the block values in use, so the field
        is exactly the same function just after growing; the finer cells are then free to differ."""
        if active == self.active:
            return
        planes, lines = self._effective()
        self.planes.copy_(planes)
        self.lines.copy_(lines)
        self.active = active


class TensorialField(nn.Module):
    """The fast field: VM-factorised density and SH appearance grids (TensoRF-SH, Chen et al. 2022)."""

    def __init__(self, bound: float = 1.5, resolution: int = 128, density_rank: int = 8, color_rank: int = 16,
                 sh_degree: int = 1, density_scale: float = 25.0, density_shift: float = -10.0):
        super().__init__()
        self.bound, self.sh_degree = bound, sh_degree
        self.density_scale, self.density_shift = density_scale, density_shift
        self.density_grid = VMGrid(density_rank, resolution, bound)
        self.color_grid = VMGrid(color_rank, resolution, bound)
        self.basis = nn.Linear(3 * color_rank, 3 * (sh_degree + 1) ** 2, bias=False)   # B: components -> SH coeffs

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """sigma(x) = s softplus(sum of density components + shift), [P, 3] -> [P]."""
        raw = self.density_grid.features(x).sum(dim=-1)
        return self.density_scale * F.softplus(raw + self.density_shift)

    def color(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """c(x, d) = sigmoid(sum_lm k_lm(x) Y_lm(d)), [P, 3] x [P, 3] -> [P, 3]."""
        k = self.basis(self.color_grid.features(x))                           # [P, 3 (deg+1)^2]
        k = k.view(x.shape[0], 3, (self.sh_degree + 1) ** 2)                   # [P, 3 (deg+1)^2] -> [P, 3, (deg+1)^2]
        return torch.sigmoid((k * sh_basis(d, self.sh_degree)[:, None, :]).sum(dim=-1))

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.color(x, d), self.density(x)

    def grow(self, active: int) -> None:
        self.density_grid.grow(active)
        self.color_grid.grow(active)


# ----------------------------------------------------------------- empty-space skipping
class OccupancyGrid(nn.Module):
    """Cells of [-bound, bound]^3 whose density can be visible (instant-NGP's density bitfield, Sec. 4).

    ``update(field, threshold)`` keeps a decaying maximum of sigma at jittered points of every cell,
    marks cells above ``threshold`` and dilates by one cell; ``__call__(x)`` looks points up.
    """

    def __init__(self, resolution: int = 64, bound: float = 1.5):
        super().__init__()
        self.resolution, self.bound = resolution, bound
        self.register_buffer("density", torch.full((resolution,) * 3, math.inf))   # decaying max of sigma
        self.register_buffer("occupied", torch.ones((resolution,) * 3, dtype=torch.bool))

    def cell_index(self, x: torch.Tensor) -> torch.Tensor:
        G = self.resolution
        i = ((x / self.bound * 0.5 + 0.5) * G).floor().long().clamp(0, G - 1)      # [P, 3]
        return (i[:, 0] * G + i[:, 1]) * G + i[:, 2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Occupied flags [P] of points [P, 3] (points outside the box count as empty)."""
        inside = (x.abs() <= self.bound).all(dim=-1)
        return inside & self.occupied.view(-1)[self.cell_index(x)]

    @torch.no_grad()
    def update(self, density_fn, threshold: float, decay: float = 0.95, generator=None, chunk: int = 1 << 16) -> None:
        G = self.resolution
        dev = self.occupied.device
        idx = torch.stack(torch.meshgrid(*[torch.arange(G, device=dev)] * 3, indexing="ij"), -1).view(-1, 3)  # [G^3, 3]
        jitter = torch.rand(idx.shape, generator=generator).to(dev)
        x = ((idx + jitter) / G * 2 - 1) * self.bound                                       # cell -> world
        sigma = torch.cat([density_fn(x[i:i + chunk]) for i in range(0, len(x), chunk)]).view(G, G, G)
        finite = torch.isfinite(self.density)
        self.density = torch.where(finite, torch.maximum(self.density * decay, sigma), sigma)
        occ = (self.density > threshold).float()[None, None]
        self.occupied = F.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0
