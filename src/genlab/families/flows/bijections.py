"""The bijection library of the normalizing flows (Dinh et al. 2017; Kingma & Dhariwal 2018).

Direction convention: every :class:`Bijection` maps *data towards the base* in ``forward`` (the
normalizing direction) and back in ``inverse``; both return the per-example log |det J| of the map
they apply, so for a chain x -> z = f_K o ... o f_1(x) the change of variables reads

  log p(x) = log p_Z(f(x)) + sum_k log |det d f_k / d h_{k-1}|             (Dinh et al. 2017, Eq. 3)

Layers: an invertible MLP layer y = LeakyReLU(W x + b) with W triangular and a positive
(exp-parameterised) diagonal, permutations, reshapes, ActNorm with data-dependent
initialisation (Kingma & Dhariwal 2018, section 3.1), RealNVP affine coupling (Dinh et al. 2017,
Eqs. 6-9) and the logit transform for images (ibid., section 4.1).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.nn import mlp


# ----------------------------------------------------------------- the bijection interface
class Bijection(nn.Module):
    """``forward(x) -> (y, log|det dy/dx|)``, ``inverse(y) -> (x, log|det dx/dy|)``, both per example."""

    def forward(self, x):
        raise NotImplementedError

    def inverse(self, y):
        raise NotImplementedError


class Compose(Bijection):
    """f = f_K o ... o f_1; log|det J_f| = sum_k log|det J_{f_k}| (chain rule for determinants)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        logdets = []
        for layer in self.layers:
            x, logdet = layer(x)
            logdets.append(logdet)
        return x, self._total(logdets, x)

    def inverse(self, y):
        logdets = []
        for layer in reversed(self.layers):
            y, logdet = layer.inverse(y)
            logdets.append(logdet)
        return y, self._total(logdets, y)

    @staticmethod
    def _total(logdets: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """sum_k log|det J_k| in one stack and one sum ([K, B] -> [B]), not K additions: fewer autograd nodes."""
        return torch.stack(logdets).sum(0) if logdets else x.new_zeros(len(x))

    def stages(self, x) -> list[torch.Tensor]:
        """x and its image after each layer (for figures of the transformation)."""
        out = [x]
        for layer in self.layers:
            x, _ = layer(x)
            out.append(x)
        return out


# ----------------------------------------------------------------- layers
class TriangularLeakyLayer(Bijection):
    """An invertible MLP layer: y = sigma(W x + b).

    W lower triangular with W_ii = exp(s_i) > 0, so det W = prod_i exp(s_i); sigma = LeakyReLU
    with slope a > 0 is strictly increasing, sigma'(h) in {1, a}. Hence

      log|det dy/dx| = sum_i s_i + sum_i log sigma'(h_i),   h = W x + b
      inverse:  h = sigma^{-1}(y) (y / a where y <= 0),  x = W^{-1}(h - b)  (triangular solve)
    """

    def __init__(self, dim: int, slope: float = 0.2):
        super().__init__()
        if not slope > 0:
            raise ConfigError(f"LeakyReLU slope must be > 0 to be invertible, got {slope}")
        self.slope = slope
        self.lower = nn.Parameter(torch.randn(dim, dim) * (0.3 / math.sqrt(dim)))
        self.log_diag = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def weight(self) -> torch.Tensor:
        return torch.tril(self.lower, -1) + torch.diag(torch.exp(self.log_diag))

    def forward(self, x):
        h = x @ self.weight().T + self.bias
        y = torch.where(h > 0, h, self.slope * h)
        log_act = (h <= 0).to(h.dtype).sum(-1) * math.log(self.slope)
        return y, self.log_diag.sum() + log_act

    def inverse(self, y):
        h = torch.where(y > 0, y, y / self.slope)
        x = torch.linalg.solve_triangular(self.weight(), (h - self.bias).T, upper=False).T
        log_act = (y <= 0).to(y.dtype).sum(-1) * math.log(self.slope)
        return x, -(self.log_diag.sum() + log_act)


class Permutation(Bijection):
    """y = x[perm] on the last dimension; |det| = 1."""

    def __init__(self, perm: torch.Tensor):
        super().__init__()
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x):
        return x[..., self.perm], x.new_zeros(len(x))

    def inverse(self, y):
        return y[..., self.inv_perm], y.new_zeros(len(y))


class Reshape(Bijection):
    """A change of shape (e.g. image -> vector); |det| = 1."""

    def __init__(self, in_shape, out_shape):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def forward(self, x):
        return x.reshape(len(x), *self.out_shape), x.new_zeros(len(x))      # [B, *in_shape] -> [B, *out_shape]

    def inverse(self, y):
        return y.reshape(len(y), *self.in_shape), y.new_zeros(len(y))       # [B, *out_shape] -> [B, *in_shape]


class ActNorm(Bijection):
    """y = x * exp(log_scale) + loc, one (loc, log_scale) per feature / channel (Glow).

    log|det| = (number of positions sharing a parameter) * sum log_scale. Data-dependent init:
    the first training batch sets them so that y has zero mean and unit variance per feature.
    """

    def __init__(self, param_shape):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(param_shape))
        self.log_scale = nn.Parameter(torch.zeros(param_shape))
        self.register_buffer("initialized", torch.tensor(False))
        # A Python copy of the flag once it is True, so that a training step does not read the buffer
        # (a tensor -> bool synchronisation) per layer; loading a state dict resets it from the buffer.
        self._known_initialized = False
        self.register_load_state_dict_post_hook(lambda module, _keys: module._forget_initialized())

    def _forget_initialized(self):
        self._known_initialized = False

    def _reduce_dims(self, x):
        return [0] + [i + 1 for i, s in enumerate(self.loc.shape) if s == 1]

    @torch.no_grad()
    def initialize(self, x):
        dims = self._reduce_dims(x)
        mean, std = x.mean(dims), x.std(dims).clamp_min(1e-6)
        self.log_scale.copy_(-torch.log(std).reshape(self.loc.shape))     # [n_params] -> param_shape
        self.loc.copy_((-mean / std).reshape(self.loc.shape))             # [n_params] -> param_shape
        self.initialized.fill_(True)
        self._known_initialized = True

    def _logdet(self, x):
        """The same log|det| for every example: one scalar, expanded (a view) to [B]."""
        positions = math.prod(x.shape[1:]) // self.log_scale.numel()
        total = self.log_scale.sum()
        return (total if positions == 1 else total * positions).expand(len(x))

    def forward(self, x):
        if self.training and not self._known_initialized:
            if bool(self.initialized):
                self._known_initialized = True
            else:
                self.initialize(x)
        return torch.addcmul(self.loc, x, torch.exp(self.log_scale)), self._logdet(x)     # x * exp(s) + loc

    def inverse(self, y):
        return (y - self.loc) * torch.exp(-self.log_scale), -self._logdet(y)


class AffineCoupling(Bijection):
    """RealNVP affine coupling with a binary ``mask`` (1 = passed through unchanged):

      y = m*x + (1-m) * (x * exp(s) + t),   (s, t) = net(m*x),  s = scale * tanh(raw)
      log|det| = sum (1-m) * s;             inverse: x = m*y + (1-m) * (y - t) * exp(-s)
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module, param_shape):
        super().__init__()
        self.register_buffer("mask", mask)
        self.register_buffer("free", 1 - mask, persistent=False)      # 1 - m, built once
        self.net = net
        self.scale = nn.Parameter(torch.ones(param_shape))

    def _shift_scale(self, x_masked):
        raw_s, t = self.net(x_masked).chunk(2, dim=1)
        s = torch.tanh(raw_s) * (self.scale * self.free)     # scale * tanh(raw) * (1-m); m is 0/1, so exact
        return s, t * self.free

    def forward(self, x):
        s, t = self._shift_scale(x * self.mask)
        return torch.addcmul(t, x, torch.exp(s)), s.flatten(1).sum(-1)     # x * exp(s) + t

    def inverse(self, y):
        s, t = self._shift_scale(y * self.mask)
        return (y - t) * torch.exp(-s), -s.flatten(1).sum(-1)


class ConvConditioner(nn.Module):
    """(s, t) for image couplings: the masked image and the mask itself -> 2C channels (last conv zero-init)."""

    def __init__(self, mask: torch.Tensor, channels_in: int, hidden: int):
        super().__init__()
        self.register_buffer("mask", mask[:1].unsqueeze(0))
        self.net = nn.Sequential(
            nn.Conv2d(channels_in + 1, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, 2 * channels_in, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):
        return self.net(torch.cat([x, self.mask.expand(len(x), -1, -1, -1)], 1))


def mlp_conditioner(dim: int, hidden, act: str) -> nn.Module:
    net = mlp([dim, *hidden, 2 * dim], act)
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class LogitTransform(Bijection):
    """u in (0,1) -> y = logit(p), p = a + (1 - 2a) u (RealNVP's squeeze away from 0 and 1):

      log|dy/du| = sum_i [log(1 - 2a) - log p_i - log(1 - p_i)]
    """

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def _logdet(self, p):
        return (math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(-1)

    def forward(self, u):
        p = self.alpha + (1 - 2 * self.alpha) * u
        return torch.log(p) - torch.log1p(-p), self._logdet(p)

    def inverse(self, y):
        p = torch.sigmoid(y)
        return (p - self.alpha) / (1 - 2 * self.alpha), -self._logdet(p)
