"""The run's training settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import field, require


@dataclass
class TrainConfig:
    epochs: int = field(10, "passes over the training set")
    max_steps: int | None = field(None, "stop after this many optimizer steps in total (overrides epochs)")
    batch_size: int = field(128, "examples per step (per process under torchrun)")
    lr: float = field(1e-3, "learning rate")
    optimizer: Literal["adam", "adamw"] = field("adam", "optimizer")
    betas: tuple[float, float] = field((0.9, 0.999), "Adam betas")
    weight_decay: float = field(0.0, "weight decay (decoupled for adamw)")
    grad_clip: float | None = field(None, "clip the gradient norm of each phase to this value")
    eval_every: int = field(1, "evaluate on the validation split every N epochs (0: never)")
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
        require(self.lr > 0, f"lr must be positive, got {self.lr}")
        require(self.grad_clip is None or self.grad_clip > 0, "grad_clip must be positive")
        require(self.log_every > 0 and self.checkpoint_every > 0, "log_every and checkpoint_every must be positive")
        require(self.eval_every >= 0, "eval_every must be >= 0")
