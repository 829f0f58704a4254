"""The run's training settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from genlab.config import field, require


@dataclass
class TrainConfig:
    epochs: int = field(10, "passes over the training set (for token streams: nominal passes)")
    max_steps: int | None = field(None, "stop after this many optimizer steps in total (overrides epochs)")
    batch_size: int = field(128, "examples (windows, sentence pairs, rays) per step, per process under torchrun")
    grad_accum: int = field(1, "accumulate gradients over this many batches per optimizer step")
    lr: float = field(1e-3, "peak learning rate")
    optimizer: Literal["adam", "adamw", "sgd", "muon"] = field(
        "adam", "optimizer (muon: torch.optim.Muon for 2-D weight matrices, AdamW for the rest)")
    betas: tuple[float, float] = field((0.9, 0.999), "Adam betas")
    weight_decay: float = field(0.0, "weight decay (decoupled for adamw)")
    schedule: Literal["constant", "warmup-cosine", "inverse-sqrt", "exponential"] = field(
        "constant", "learning-rate schedule: linear warm-up then constant / cosine decay to min_lr_ratio / "
        "inverse square root (Vaswani et al. 2017, Eq. 3) / exponential decay by lr_gamma per epoch")
    warmup_steps: int = field(0, "linear warm-up steps (warmup-cosine, inverse-sqrt; also constant)")
    min_lr_ratio: float = field(0.1, "warmup-cosine: final lr as a fraction of lr")
    lr_gamma: float = field(0.95, "exponential: lr multiplier per epoch")
    ema: float | None = field(None, "keep an exponential moving average of the weights with this decay "
                              "(e.g. 0.999); eval and sampling then use it")
    autocast: Literal["none", "bf16"] = field("none", "mixed precision: run forward passes in bfloat16")
    grad_clip: float | None = field(None, "clip the gradient norm of each phase to this value")
    eval_every: int = field(1, "evaluate on the validation split every N epochs (0: never)")
    eval_steps: int | None = field(None, "evaluate on the validation split every N steps instead of per epoch")
    val_batches: int | None = field(None, "use at most this many validation batches per evaluation")
    log_every: int = field(50, "write training metrics every N steps")
    checkpoint_every: int = field(1, "write checkpoints/last.pt every N epochs")
    eval_batch_size: int = field(512, "batch size for evaluation")
    seed: int = field(0, "random seed (data order, initialisation, noise)")
    device: str = field("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    progress: bool = field(True, "show a progress bar on a terminal")

    def validate(self):
        require(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        require(self.max_steps is None or self.max_steps > 0, "max_steps must be positive")
        require(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        require(self.grad_accum > 0, f"grad_accum must be positive, got {self.grad_accum}")
        require(self.lr > 0, f"lr must be positive, got {self.lr}")
        require(all(0 <= b < 1 for b in self.betas),
                f"betas must each be in [0, 1) (momentum / decay rates), got {' '.join(map(str, self.betas))}")
        require(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        require(0 < self.lr_gamma <= 1, "lr_gamma must be in (0, 1]")
        require(self.ema is None or 0 < self.ema < 1, "ema must be in (0, 1), e.g. 0.999")
        require(self.grad_clip is None or self.grad_clip > 0, "grad_clip must be positive")
        require(self.log_every > 0 and self.checkpoint_every > 0, "log_every and checkpoint_every must be positive")
        require(self.eval_every >= 0, "eval_every must be >= 0")
        require(self.eval_steps is None or self.eval_steps > 0, "eval_steps must be positive")
        require(self.val_batches is None or self.val_batches > 0, "val_batches must be positive")
        require(self.eval_batch_size > 0, "eval_batch_size must be positive")
