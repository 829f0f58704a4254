"""The one training loop. It drives any model that follows the protocol of ``genlab.model``:
``phases()`` gives one optimizer per phase, ``loss(batch, phase)`` the scalar each one minimises.

Step-based: each optimizer step consumes ``grad_accum`` batches from the dataset's batch source
(``genlab.data.batches``: permutations of in-memory examples, random windows of a token stream,
length-bucketed pairs); each epoch is as long as the source's ``steps_in(epoch)``. Options: Adam /
AdamW / SGD / Muon, learning-rate schedules (``schedules.lr_factor``), EMA of the weights (used by
eval and sampling), gradient accumulation, bf16 autocast, gradient clipping, validation per epoch or
every N steps, per-step hooks, progress bar, JSON-lines + CSV metrics, atomic checkpoints, exact
resume (batches are a function of (seed, epoch, step, rank); every rank's RNG, the optimizers and EMA
are checkpointed; schedules are pure functions of the step), Ctrl-C and SIGTERM save and stop (under
torchrun every rank stops after the same step), NaN/inf losses stop the run keeping the last good
checkpoint, DDP under torchrun.
"""
from __future__ import annotations

import functools
import math
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from genlab.errors import GenlabError, TrainingDiverged
from genlab.model import Avg, Texts
from genlab.progress import progress as progress_bar
from genlab.training import checkpoint
from genlab.training.config import TrainConfig
from genlab.training.distributed import DistInfo, all_gather, all_max, all_true, barrier, pick_device, setup
from genlab.training.ema import EMA
from genlab.training.logger import MetricsLogger, batch_work
from genlab.training.schedules import lr_factor


@dataclass
class TrainState:
    epoch: int = 0            # completed epochs
    step_in_epoch: int = 0    # batches done in the current epoch
    global_step: int = 0      # optimizer steps done
    interrupted: bool = False
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM)
    idle: bool = False         # a resume that found nothing left to do
    history: list = field(default_factory=list)   # one dict per epoch


class _PhaseLoss(nn.Module):
    """Routes DDP's forward to ``model.loss`` so DDP sees (and synchronises) every phase."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch, phase):
        return self.model.loss(batch, phase)


def to_device(batch, device):
    return tuple(t.to(device, non_blocking=True) for t in batch)


def make_optimizers(model, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per phase. With AdamW or Muon and weight decay, parameters of fewer than 2 dims
    (biases, norm gains) are not decayed, as nanoGPT's ``configure_optimizers`` does."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    optimizers = {}
    for name, group in model.phases().items():
        group = dict(group) if isinstance(group, dict) else {"params": list(group)}
        if cfg.optimizer == "muon":
            optimizers[name] = _muon(group, cfg, embeddings)
            continue
        if cfg.optimizer == "sgd":
            defaults = {"lr": cfg.lr, "momentum": cfg.betas[0], "weight_decay": cfg.weight_decay}
            opt = torch.optim.SGD(**(defaults | group))
        elif cfg.optimizer == "adamw":
            params = list(group.pop("params"))
            wd = group.pop("weight_decay", cfg.weight_decay)
            groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": wd},
                      {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
            opt = torch.optim.AdamW([g for g in groups if g["params"]],
                                    **({"lr": cfg.lr, "betas": cfg.betas} | group))
        else:
            opt = torch.optim.Adam(**({"lr": cfg.lr, "betas": cfg.betas, "weight_decay": cfg.weight_decay} | group))
        optimizers[name] = opt
    for opt in optimizers.values():
        for g in opt.param_groups:
            g.setdefault("base_lr", g["lr"])
    return optimizers


class _Combined(torch.optim.Optimizer):
    """Muon for 2-D hidden weight matrices and AdamW for the rest, stepped together (Jordan et al. 2024)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers
        self.param_groups = [g for o in optimizers for g in o.param_groups]
        self.defaults = {}
        self.state = {}

    def zero_grad(self, set_to_none: bool = True):
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        for o in self.optimizers:
            o.step()

    def state_dict(self):
        return {"parts": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state):
        for o, s in zip(self.optimizers, state["parts"]):
            o.load_state_dict(s)


def _muon(group: dict, cfg: TrainConfig, embeddings: set[int]) -> torch.optim.Optimizer:
    """Muon (orthogonalised momentum, Jordan et al. 2024) for the 2-D hidden weight matrices; AdamW for
    embeddings, output heads tied to them, biases and norm gains (no weight decay on the last two)."""
    params = group.pop("params")
    lr = group.pop("lr", cfg.lr)
    matrices = [p for p in params if p.ndim == 2 and id(p) not in embeddings]
    ids = {id(p) for p in matrices}
    rest = [p for p in params if id(p) not in ids]
    parts = []
    if matrices:
        parts.append(torch.optim.Muon(matrices, lr=lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"))
    groups = [{"params": [p for p in rest if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in rest if p.ndim < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if groups:
        parts.append(torch.optim.AdamW(groups, lr=lr, betas=cfg.betas))
    return _Combined(parts)


class Trainer:
    """Train ``model`` on ``train_data``; write everything under ``out`` (on rank 0).

    ``callbacks``: ``fn(trainer, event)`` with event "start" (before the first step) or "epoch" (after
    each epoch). ``step_hooks``: ``fn(trainer)`` after every optimizer step. Under torchrun it trains
    with DDP across the processes; ``distributed=False`` keeps it to this process.
    """

    def __init__(self, model, train_data, config: TrainConfig, out: str | Path | None = None,
                 val_data=None, callbacks: list[Callable] = (), run_config: dict | None = None,
                 distributed: bool = True, step_hooks: list[Callable] = ()):
        self.cfg = config
        self.device = pick_device(config.device)
        self.dist = setup(self.device) if distributed else DistInfo()
        self.model = model.to(self.device)
        self.train_data, self.val_data = train_data, val_data
        self.out = Path(out) if out else None
        self.callbacks, self.step_hooks = list(callbacks), list(step_hooks)
        own = model.step_hooks() if hasattr(model, "step_hooks") else []
        self.step_hooks += [h for h in own if h not in self.step_hooks]
        self.hints = model.batch_hints() if hasattr(model, "batch_hints") else {}
        self.source = train_data.train_batches(config.batch_size, config.seed, self.dist, **self.hints)
        self.optimizers = make_optimizers(self.model, config)
        self.phase_params = {k: [p for g in o.param_groups for p in g["params"]] for k, o in self.optimizers.items()}
        self.ema = EMA(self.model, config.ema) if config.ema else None
        self.state = TrainState()
        self._running, self._count = {}, 0    # metrics summed since the last log row
        self._lines = None                    # the plain progress lines off a terminal (set by fit)
        self.logger = MetricsLogger(self.out if self.dist.is_main else None, run_config)
        self.ddp = None
        self._compute = self.model.loss
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(
                _PhaseLoss(self.model), device_ids=ids, find_unused_parameters=len(self.optimizers) > 1)
            self._compute = self.ddp
        self._autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                          if config.autocast == "bf16" else nullcontext())
        self._saved = False
        self.stop_requested = False   # set by a hook (request_stop) to end training after this step
        torch.manual_seed(config.seed * 7919 + 1 + self.dist.rank)   # noise stream; model init is the caller's

    def request_stop(self) -> None:
        """End training after the current step (e.g. a hook's time budget is spent); a checkpoint is saved."""
        self.stop_requested = True

    # ------------------------------------------------------------ sizes
    def epoch_steps(self, epoch: int) -> int:
        """Optimizer steps in epoch ``epoch`` (epochs of length-bucketed batches differ in length)."""
        return math.ceil(self.source.steps_in(epoch) / self.cfg.grad_accum)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in the current epoch."""
        return self.epoch_steps(self.state.epoch)

    @functools.cached_property
    def total_steps(self) -> int:
        """``max_steps``, or the optimizer steps of all ``epochs`` (each epoch its own length)."""
        return self.cfg.max_steps or sum(self.epoch_steps(e) for e in range(self.cfg.epochs))

    @property
    def eval_model(self) -> nn.Module:
        """The weights eval and sampling use: the EMA when it is on."""
        return self.ema.model if self.ema else self.model

    # ------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out / "checkpoints" / "last.pt" if self.out else None

    def _rng_state(self) -> dict[str, torch.Tensor]:
        """This process's generators: torch's CPU one and, on a GPU, its CUDA one. (Batches draw from
        generators seeded by (seed, epoch, step, rank), so the sources keep no state.)"""
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, saved) -> None:
        """Give this rank its own generators back (a checkpoint from before per-rank states holds
        rank 0's CPU state alone)."""
        if isinstance(saved, torch.Tensor):
            saved = [{"cpu": saved}]
        mine = saved[self.dist.rank % len(saved)]
        torch.set_rng_state(mine["cpu"])
        if self.device.type == "cuda" and "cuda" in mine:
            torch.cuda.set_rng_state(mine["cuda"], self.device)

    def save(self) -> None:
        """Write ``out/checkpoints/last.pt`` (rank 0). Under torchrun every rank must call it: the
        ranks' RNG states are gathered to rank 0, which writes them all into the one checkpoint."""
        if not self.out:
            return
        rng = all_gather(self._rng_state(), self.dist)   # [one dict per rank]
        self._saved = True
        if not self.dist.is_main:
            return
        s = self.state
        checkpoint.save_atomic({
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "epoch": s.epoch, "step_in_epoch": s.step_in_epoch, "global_step": s.global_step,
            "rng": rng, "history": s.history,
            "running": {k: float(v) for k, v in self._running.items()}, "running_count": self._count,
        }, self.checkpoint_path)

    def resume(self) -> Trainer:
        """Continue from ``out/checkpoints/last.pt`` exactly where it stopped."""
        ckpt = checkpoint.load(self.checkpoint_path, need=("model", "optimizers"))
        config = self.out / "config.json"
        checkpoint.load_weights(self.model, ckpt["model"], self.checkpoint_path, config)
        try:
            for k, o in self.optimizers.items():
                configured = [(g["base_lr"], g["weight_decay"]) for g in o.param_groups]
                o.load_state_dict(ckpt["optimizers"][k])
                for g, (lr, wd) in zip(o.param_groups, configured):   # a resumed run may lower the lr
                    g["base_lr"], g["lr"], g["weight_decay"] = lr, lr, wd
            if self.ema is not None and ckpt.get("ema"):
                self.ema.load_state_dict(ckpt["ema"])
            counters = [ckpt[k] for k in ("epoch", "step_in_epoch", "global_step", "running_count")]
            if not all(type(c) is int and c >= 0 for c in counters):
                raise TypeError(f"epoch, step_in_epoch, global_step, running_count are {counters}, not counts")
            self.state = TrainState(*counters[:3], history=list(ckpt["history"]))
            self._set_rng_state(ckpt["rng"])
            self._running, self._count = dict(ckpt["running"]), ckpt["running_count"]
        except (KeyError, ValueError, RuntimeError, TypeError) as e:   # optimizer / EMA / state do not fit
            raise GenlabError(f"{self.checkpoint_path} cannot continue the run that {config} describes "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else 'missing entry'}); "
                              f"was config.json (its model or training settings) edited? Restore it, or "
                              f"train again into a new folder") from None
        self.logger.truncate_after(self.state.global_step)
        self._saved = True
        return self

    # ------------------------------------------------------------ the loop
    def _set_lr(self) -> float:
        cfg = self.cfg
        f = lr_factor(cfg.schedule, self.state.global_step, self.total_steps, cfg.warmup_steps,
                      cfg.min_lr_ratio, cfg.lr_gamma, epoch=self.state.epoch)
        for o in self.optimizers.values():
            for g in o.param_groups:
                g["lr"] = g["base_lr"] * f
        return cfg.lr * f

    def train_step(self, batches: list) -> dict[str, torch.Tensor]:
        """One optimizer step per phase over ``batches`` (gradients accumulated over them)."""
        logs: dict[str, torch.Tensor] = {}
        lr = self._set_lr()
        for phase, opt in self.optimizers.items():
            opt.zero_grad(set_to_none=True)
            for batch in batches:
                with self._autocast:
                    loss, phase_logs = self._compute(batch, phase)
                (loss / len(batches)).backward()
                key = f"loss/{phase}" if len(self.optimizers) > 1 else "loss"
                logs[key] = logs.get(key, 0) + loss.detach().float() / len(batches)
                for k, v in phase_logs.items():
                    logs[k] = logs.get(k, 0) + v.detach().float() / len(batches)
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.phase_params[phase], self.cfg.grad_clip)
            opt.step()
        if self.ema is not None:
            self.ema.update(self.model)
        if self.cfg.schedule != "constant" or self.cfg.warmup_steps:
            logs["lr"] = torch.tensor(lr)
        return logs

    def fit(self) -> TrainState:
        cfg, s = self.cfg, self.state
        stop = _StopFlag(abort_on_second=not self.dist.enabled)
        epochs = cfg.epochs if cfg.max_steps is None else math.inf
        completed = False
        self._lines = self.logger.step_lines(self.total_steps, s.global_step, _kind(self.train_data),
                                             cfg.progress and self.dist.is_main)
        try:
            with stop:
                if s.global_step == 0 and s.epoch == 0 and s.step_in_epoch == 0:
                    self._callbacks("start")
                while s.epoch < epochs and not self._budget_spent() and not self.stop_requested:
                    t0 = time.perf_counter()
                    seen = self._run_epoch(stop)
                    if stop.raised:
                        break
                    if s.step_in_epoch < self.source.steps_in(s.epoch):   # budget spent mid-epoch
                        self.save()
                        break
                    s.epoch, s.step_in_epoch = s.epoch + 1, 0
                    self._end_epoch(seen, time.perf_counter() - t0)
                self._agree_on_stop(stop)   # a signal after the last step: every rank hears of it
            completed = True
        finally:
            if stop.raised:
                s.interrupted, s.signal = True, stop.signum
                if completed or not self.dist.enabled:   # (a collective after an error could hang)
                    self.save()
                if self.dist.is_main:
                    self.logger.note(f"interrupted at epoch {s.epoch} step {s.global_step}; checkpoint saved; "
                                     f"continue with: genlab train --resume {self.out}")
            self.logger.close()
        return s

    def _budget_spent(self) -> bool:
        return self.cfg.max_steps is not None and self.state.global_step >= self.cfg.max_steps

    def _run_epoch(self, stop: _StopFlag) -> int:
        cfg, s = self.cfg, self.state
        self.model.train()
        n = self.source.steps_in(s.epoch)
        seen = 0
        label = f"epoch {s.epoch + 1}/{cfg.epochs}" if cfg.max_steps is None else f"epoch {s.epoch + 1}"
        bar = self.logger.progress(n, label, initial=s.step_in_epoch, enabled=cfg.progress and self.dist.is_main)
        while s.step_in_epoch < n:
            stop_at = min(n, s.step_in_epoch + cfg.grad_accum)
            batches = [to_device(self.source.get(s.epoch, i), self.device) for i in range(s.step_in_epoch, stop_at)]
            logs = self.train_step(batches)
            for k, v in logs.items():
                self._running[k] = self._running.get(k, 0.0) + v
            self._count += 1
            seen += sum(len(b[0]) for b in batches)
            bar.update(stop_at - s.step_in_epoch)
            if self._lines is not None:
                self._lines.update(1, batch_work(batches, _kind(self.train_data)) * self.dist.world_size)
            s.step_in_epoch, s.global_step = stop_at, s.global_step + 1
            last = s.step_in_epoch == n or self._budget_spent()
            if s.global_step % cfg.log_every == 0 or last:
                means = {k: float(v) / self._count for k, v in self._running.items()}
                self._check_finite(means)
                self.logger.log({"split": "train", "epoch": s.epoch, "step": s.global_step, **means})
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:3]})
                if self._lines is not None:
                    self._lines.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:3]})
                    self._lines.write()
                self._running, self._count = {}, 0
            if cfg.eval_steps and s.global_step % cfg.eval_steps == 0 and self.val_data is not None:
                row = {f"val/{k}": v for k, v in self.evaluate(self.val_data, max_batches=cfg.val_batches).items()}
                self.logger.log({"split": "val", "epoch": s.epoch, "step": s.global_step, **row})
                self.model.train()
            for hook in self.step_hooks:
                hook(self)
            self._agree_on_stop(stop)
            if stop.raised or self._budget_spent() or self.stop_requested:
                break
        bar.close()
        return seen

    def _agree_on_stop(self, stop: _StopFlag) -> None:
        """Under torchrun a signal may reach the ranks between different steps: after each step the
        ranks agree, so all stop after the same one (and save the same state)."""
        if self.dist.enabled:
            signum = all_max(stop.signum or 0, self.dist)
            if signum and not stop.raised:
                stop.raised, stop.signum = True, signum

    def _check_finite(self, means: dict[str, float]) -> None:
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if not all_true(not bad, self.dist):
            if self._saved:
                where = f"; the last good checkpoint is {self.checkpoint_path} (resume from it with a smaller --lr)"
            else:
                where = "; no checkpoint had been written yet"
            raise TrainingDiverged(
                f"loss is not finite at step {self.state.global_step} ({', '.join(bad) or 'another rank'})"
                f"{where}. Try a smaller --lr, --grad-clip 1.0, or check the data.")

    def _end_epoch(self, seen: int, elapsed: float) -> None:
        s, cfg = self.state, self.cfg
        row = {"epoch": s.epoch, "step": s.global_step, "time_s": round(elapsed, 3),
               "examples_per_s": round(seen * self.dist.world_size / max(elapsed, 1e-9), 1)}
        if (self.val_data is not None and cfg.eval_every and not cfg.eval_steps
                and (s.epoch % cfg.eval_every == 0 or s.epoch == cfg.epochs)):
            row |= {f"val/{k}": v for k, v in self.evaluate(self.val_data, max_batches=cfg.val_batches).items()}
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
    def evaluate(self, data, max_batches: int | None = None, **options) -> dict[str, float]:
        """The model's ``eval_metrics`` over ``data``, as sums over counts (EMA weights when on)."""
        return evaluate_model(self.eval_model, data, self.cfg.eval_batch_size, self.device,
                              max_batches=max_batches, hints=self.hints, **options)


@torch.no_grad()
def evaluate_model(model, data, batch_size: int, device, progress: bool = False, max_batches: int | None = None,
                   hints: dict | None = None, texts: dict | None = None, **options) -> dict[str, float]:
    """Each metric of ``model.eval_metrics`` over ``data``: sum of totals / sum of counts.

    A ``[B]`` tensor counts as B examples; an :class:`~genlab.model.Avg` brings its own count
    (tokens, pixels, images); a :class:`~genlab.model.Texts` is joined over the batches, in order.
    ``model.finalize_metrics`` then adds derived values (e.g. perplexity, corpus BLEU from the
    joined strings); the strings leave the result, and go into ``texts`` when a dict is given.
    Every rank of a DDP run evaluates the whole split (eval batches are not sharded), so the
    strings of a split are all on each rank: nothing to gather.
    """
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    counts: dict[str, float] = {}
    joined: dict[str, list[str]] = {}
    hints = hints if hints is not None else (model.batch_hints() if hasattr(model, "batch_hints") else {})
    batches = data.eval_batches(batch_size, **hints)
    total = data.eval_batch_count(batch_size, **hints)
    total = min(total, max_batches) if max_batches is not None else total
    for i, batch in enumerate(progress_bar(batches, desc="eval", total=total, enabled=progress, unit="batch")):
        if max_batches is not None and i >= max_batches:
            break
        for k, v in model.eval_metrics(to_device(batch, device), **options).items():
            if isinstance(v, Texts):
                joined.setdefault(k, []).extend(v.items)
                continue
            if not isinstance(v, Avg):
                v = Avg(v.double().sum(), v.numel())
            totals[k] = totals.get(k, 0.0) + float(v.total)
            counts[k] = counts.get(k, 0.0) + float(v.count)
    model.train(was_training)
    means = {k: totals[k] / counts[k] if counts[k] else math.nan for k in totals} | joined
    out = model.finalize_metrics(means) if hasattr(model, "finalize_metrics") else means
    if texts is not None:
        texts.update(joined)
    return {k: v for k, v in out.items() if k not in joined}


def _kind(data) -> str:
    return getattr(getattr(data, "info", None), "kind", "")


class _StopFlag:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a flag checked between steps, so the run saves
    and stops cleanly; a second one aborts at once. Under torchrun (workers run in sessions of their
    own: a Ctrl-C reaches the launcher, which sends each worker SIGINT) a second one does not abort, as
    one rank leaving mid-step would leave the others waiting; the launcher kills workers that have not
    stopped within its shutdown timeout (30 s)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, abort_on_second: bool = True):
        self.abort_on_second = abort_on_second
        self.raised = False
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.raised and self.abort_on_second:
            raise KeyboardInterrupt
        if self.raised:
            return
        self.raised, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
