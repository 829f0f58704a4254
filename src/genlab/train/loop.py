"""The one training loop. It drives any model that follows the protocol of ``genlab.models.base``:
``phases()`` gives one optimizer per phase, ``loss(batch, phase)`` the scalar each one minimises.

Features: epochs or a step budget, Adam/AdamW, gradient clipping, validation every N epochs,
progress bar, JSON-lines + CSV metrics (TensorBoard if installed), atomic checkpoints, exact resume
(data order and noise are derived from (seed, epoch, step), the RNG state is checkpointed), Ctrl-C
saves and exits, NaN/inf losses stop the run keeping the last good checkpoint, DDP under torchrun.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..data.registry import TensorData
from ..errors import TrainingDiverged
from . import checkpoint
from .config import TrainConfig
from .distributed import DistInfo, all_true, barrier, pick_device, setup, shard
from .logger import MetricsLogger


@dataclass
class TrainState:
    epoch: int = 0            # completed epochs
    step_in_epoch: int = 0    # steps done in the current epoch
    global_step: int = 0
    interrupted: bool = False
    history: list = field(default_factory=list)   # one dict per epoch


class _PhaseLoss(nn.Module):
    """Routes DDP's forward to ``model.loss`` so DDP sees (and synchronises) every phase."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch, phase):
        return self.model.loss(batch, phase)


def batch_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + step) * 64 + rank


def epoch_batches(data: TensorData, batch_size: int, seed: int, epoch: int, dist: DistInfo):
    """This rank's index batches for ``epoch``: a permutation seeded by (seed, epoch)."""
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return shard(perm, dist).split(batch_size)


def to_device(batch, device):
    return tuple(t.to(device, non_blocking=True) for t in batch)


def make_optimizers(model, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizers = {}
    for name, group in model.phases().items():
        group = dict(group) if isinstance(group, dict) else {"params": list(group)}
        kwargs = {"lr": cfg.lr, "betas": cfg.betas, "weight_decay": cfg.weight_decay} | group
        optimizers[name] = opt_cls(**kwargs)
    return optimizers


class Trainer:
    """Train ``model`` on ``train_data``; write everything under ``out`` (on rank 0).

    Under torchrun it trains with DDP across the processes; ``distributed=False`` keeps it to this
    process (e.g. a helper model trained by rank 0 alone).
    """

    def __init__(self, model, train_data: TensorData, config: TrainConfig, out: str | Path | None = None,
                 val_data: TensorData | None = None, callbacks: list[Callable] = (),
                 run_config: dict | None = None, distributed: bool = True):
        self.cfg = config
        self.device = pick_device(config.device)
        self.dist = setup(self.device) if distributed else DistInfo()
        self.model = model.to(self.device)
        self.train_data, self.val_data = train_data, val_data
        self.out = Path(out) if out else None
        self.callbacks = list(callbacks)
        self.optimizers = make_optimizers(self.model, config)
        self.phase_params = {k: [p for g in o.param_groups for p in g["params"]] for k, o in self.optimizers.items()}
        self.state = TrainState()
        self._running, self._count = {}, 0    # metrics summed since the last log row
        self.logger = MetricsLogger(self.out if self.dist.is_main else None, run_config)
        self.ddp = None
        self._compute = self.model.loss
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(
                _PhaseLoss(self.model), device_ids=ids, find_unused_parameters=len(self.optimizers) > 1)
            self._compute = self.ddp
        torch.manual_seed(config.seed * 7919 + 1 + self.dist.rank)   # noise stream; model init is the caller's

    # ------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out / "checkpoints" / "last.pt" if self.out else None

    def save(self) -> None:
        if not (self.out and self.dist.is_main):
            return
        s = self.state
        checkpoint.save_atomic({
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "epoch": s.epoch, "step_in_epoch": s.step_in_epoch, "global_step": s.global_step,
            "rng": torch.get_rng_state(), "history": s.history,
            "running": {k: float(v) for k, v in self._running.items()}, "running_count": self._count,
        }, self.checkpoint_path)

    def resume(self) -> "Trainer":
        """Continue from ``out/checkpoints/last.pt`` exactly where it stopped."""
        ckpt = checkpoint.load(self.checkpoint_path)
        self.model.load_state_dict(ckpt["model"])
        for k, o in self.optimizers.items():
            configured = [(g["lr"], g["weight_decay"]) for g in o.param_groups]
            o.load_state_dict(ckpt["optimizers"][k])
            for g, (lr, wd) in zip(o.param_groups, configured):   # a resumed run may lower the lr
                g["lr"], g["weight_decay"] = lr, wd
        self.state = TrainState(ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"],
                                history=list(ckpt["history"]))
        torch.set_rng_state(ckpt["rng"])
        self._running, self._count = dict(ckpt["running"]), ckpt["running_count"]
        self.logger.truncate_after(self.state.global_step)
        return self

    # ------------------------------------------------------------ the loop
    def train_step(self, batch) -> dict[str, torch.Tensor]:
        logs = {}
        for phase, opt in self.optimizers.items():
            opt.zero_grad(set_to_none=True)
            loss, phase_logs = self._compute(batch, phase)
            loss.backward()
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.phase_params[phase], self.cfg.grad_clip)
            opt.step()
            logs[f"loss/{phase}" if len(self.optimizers) > 1 else "loss"] = loss.detach()
            logs.update({k: v.detach() for k, v in phase_logs.items()})
        return logs

    def fit(self) -> TrainState:
        cfg, s = self.cfg, self.state
        stop = _StopFlag()
        try:
            with stop:
                if s.global_step == 0 and s.epoch == 0:
                    self._callbacks("start")
                while s.epoch < cfg.epochs and not self._budget_spent():
                    t0 = time.perf_counter()
                    seen = self._run_epoch(stop)
                    if stop.raised or s.interrupted:
                        break
                    s.epoch, s.step_in_epoch = s.epoch + 1, 0
                    self._end_epoch(seen, time.perf_counter() - t0)
        finally:
            if stop.raised:
                s.interrupted = True
                self.save()
                self.logger.note(f"interrupted at epoch {s.epoch} step {s.step_in_epoch}; "
                                 f"checkpoint saved; continue with --resume {self.out}")
            self.logger.close()
        return s

    def _budget_spent(self) -> bool:
        return self.cfg.max_steps is not None and self.state.global_step >= self.cfg.max_steps

    def _run_epoch(self, stop: "_StopFlag") -> int:
        cfg, s = self.cfg, self.state
        self.model.train()
        batches = epoch_batches(self.train_data, cfg.batch_size, cfg.seed, s.epoch, self.dist)
        transform = self.train_data.batch_transform
        seen = 0
        bar = self.logger.progress(len(batches), s.epoch, cfg.epochs, initial=s.step_in_epoch,
                                   enabled=cfg.progress and self.dist.is_main)
        for step in range(s.step_in_epoch, len(batches)):
            idx = batches[step]
            batch = tuple(t[idx] for t in self.train_data.tensors)
            if transform is not None:
                batch = transform(batch, torch.Generator().manual_seed(batch_seed(cfg.seed, s.epoch, step, self.dist.rank)))
            logs = self.train_step(to_device(batch, self.device))
            for k, v in logs.items():
                self._running[k] = self._running.get(k, 0.0) + v
            self._count += 1
            seen += len(idx)
            s.step_in_epoch, s.global_step = step + 1, s.global_step + 1
            bar.update(1)
            if s.global_step % cfg.log_every == 0 or step == len(batches) - 1 or self._budget_spent():
                means = {k: float(v) / self._count for k, v in self._running.items()}
                self._check_finite(means)
                self.logger.log({"split": "train", "epoch": s.epoch, "step": s.global_step, **means})
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:3]})
                self._running, self._count = {}, 0
            if stop.raised or self._budget_spent():
                break
        bar.close()
        return seen

    def _check_finite(self, means: dict[str, float]) -> None:
        bad = [k for k, v in means.items() if not torch.isfinite(torch.tensor(v))]
        if not all_true(not bad, self.dist):
            where = f"; the last good checkpoint is {self.checkpoint_path}" if self.out else ""
            raise TrainingDiverged(
                f"loss is not finite at step {self.state.global_step} ({', '.join(bad) or 'another rank'})"
                f"{where}. Try a smaller --lr, --grad-clip 1.0, or check the data.")

    def _end_epoch(self, seen: int, elapsed: float) -> None:
        s, cfg = self.state, self.cfg
        row = {"epoch": s.epoch, "step": s.global_step, "time_s": round(elapsed, 3),
               "examples_per_s": round(seen * self.dist.world_size / max(elapsed, 1e-9), 1)}
        if self.val_data is not None and cfg.eval_every and (s.epoch % cfg.eval_every == 0 or s.epoch == cfg.epochs):
            row |= {f"val/{k}": v for k, v in self.evaluate(self.val_data).items()}
        s.history.append(row)
        self.logger.log({"split": "epoch", **row})
        self.logger.epoch_row(row)
        if s.epoch % cfg.checkpoint_every == 0 or s.epoch == cfg.epochs or self._budget_spent():
            self.save()
        self._callbacks("epoch")

    def _callbacks(self, event: str) -> None:
        if self.dist.is_main:
            for cb in self.callbacks:
                cb(self, event)
        barrier(self.dist)

    @torch.no_grad()
    def evaluate(self, data: TensorData, **options) -> dict[str, float]:
        """Average the model's per-example ``eval_metrics`` over ``data``."""
        return evaluate_model(self.model, data, self.cfg.eval_batch_size, self.device, **options)


@torch.no_grad()
def evaluate_model(model, data: TensorData, batch_size: int, device, progress: bool = False,
                   **options) -> dict[str, float]:
    """Mean over ``data`` of each per-example value returned by ``model.eval_metrics``."""
    from tqdm.auto import tqdm
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for start in tqdm(range(0, len(data), batch_size), desc="eval", disable=not progress or None, leave=False):
        batch = to_device(tuple(t[start:start + batch_size] for t in data.tensors), device)
        for k, v in model.eval_metrics(batch, **options).items():
            sums[k] = sums.get(k, 0.0) + float(v.double().sum())
        n += len(batch[0])
    model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


class _StopFlag:
    """Turns the first Ctrl-C into a flag checked between steps; a second one aborts at once."""

    def __init__(self):
        self.raised = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False
