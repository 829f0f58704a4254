"""What the experiments share: values declared for full and quick runs (``Both``), the runner's
per-run mechanisms (``snapshot_callbacks`` for ``Setting.callbacks``, ``training_budget`` for
``Setting.step_hooks``), test batches, metrics and the relative paths a summary lists."""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genlab.eval.evaluate import evaluate
from genlab.experiments.registry import Context, Setting


@dataclass(frozen=True)
class Both:
    """A value declared for full runs and for ``--quick`` runs (e.g. snapshot epochs, sample sizes):
    ``Both(full=[0, 10, 80], quick=[0, 2, 6])(ctx)``. The one way an analysis or a hook differs between
    the two modes (a setting's training options differ by ``Setting.quick``)."""
    full: Any
    quick: Any

    def __call__(self, ctx: Context | bool) -> Any:
        """The value for ``ctx`` (a context, or the quick flag itself: ``Experiment.runs`` may be a ``Both``)."""
        return self.quick if (ctx if isinstance(ctx, bool) else ctx.quick) else self.full


def snapshots(epochs, draw: Callable) -> Callable:
    """A trainer callback calling ``draw(trainer, epoch)`` with the model in eval mode under a fixed
    seed, before training (epoch 0) and after each epoch listed in ``epochs``."""
    wanted = set(epochs)

    def callback(trainer, event):
        epoch = trainer.state.epoch if event == "epoch" else 0
        if epoch in wanted and (event == "epoch" or epoch == 0):
            model = trainer.model
            was_training = model.training
            model.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                draw(trainer, epoch)
            model.train(was_training)
    return callback


def snapshot_callbacks(epochs: Both, draw: Callable) -> Callable[[Context, Setting], list]:
    """``Setting.callbacks``: ``draw(ctx, setting, trainer, epoch)`` at the declared epochs
    (``trainer.model`` is the model, ``trainer.val_data`` its held-out images)."""
    def make(ctx: Context, s: Setting) -> list:
        return [snapshots(epochs(ctx), lambda trainer, epoch: draw(ctx, s, trainer, epoch))]
    return make


BUDGET_SPLIT = "budget"    # the ``split`` of the rows ``training_budget`` logs to a run's metrics.jsonl


@dataclass(frozen=True)
class Budget:
    """How long a run trains and how often it is measured: ``steps`` optimizer steps, measured every
    ``every`` steps, or ``minutes`` of training wall-clock time, measured every ``every`` seconds. Quick
    runs use steps, so that their results do not depend on how busy the machine is."""
    every: float
    steps: int | None = None
    minutes: float | None = None

    def __post_init__(self):
        if (self.steps is None) == (self.minutes is None):
            raise ValueError("a Budget is either steps or minutes")


def training_budget(budget: Both, measure: Callable, split: str = "test") -> Callable[[Context, Setting], list]:
    """``Setting.step_hooks``: train for the ``budget`` (a ``Both`` of ``Budget``), calling
    ``measure(trainer, data) -> dict`` on the ``split`` of the setting's dataset at every ``budget.every``
    (steps or seconds of training) and once more when the budget is spent; then the trainer stops (a
    checkpoint is saved).

    The time ``measure`` takes is not training time. The clock starts at the end of the first optimizer
    step (one-off warm-up is not counted). Each measurement is a row of the run's ``metrics.jsonl`` with
    ``split`` "budget": ``step``, ``train_wall_s``, ``train_cpu_s`` (process CPU seconds) and what
    ``measure`` returned; ``budget_rows(run)`` reads them back."""
    from genlab.data.registry import load_dataset
    from genlab.training.run import prepare

    def make(ctx: Context, s: Setting) -> list:
        data, options = ctx.plan(s)
        _, data, _, dcfg, _ = prepare(s.model, data, **options)
        held = load_dataset(data, split, config=dcfg)
        b: Budget = budget(ctx)
        clock: dict = {}

        def spent() -> float:             # steps or seconds of training so far
            return clock["steps"] if b.steps is not None else clock["wall"]

        def hook(trainer) -> None:
            if not clock:                       # the first step: start the clock
                clock.update(wall=0.0, cpu=0.0, steps=1, next=b.every, w0=time.perf_counter(),
                             c0=time.process_time())
                return
            clock["wall"] += time.perf_counter() - clock["w0"]
            clock["cpu"] += time.process_time() - clock["c0"]
            clock["steps"] += 1
            done = spent() >= (b.steps if b.steps is not None else b.minutes * 60)
            if spent() >= clock["next"] or done:
                row = {"step": trainer.state.global_step, "train_wall_s": round(clock["wall"], 2),
                       "train_cpu_s": round(clock["cpu"], 2), **measure(trainer, held)}
                trainer.logger.log({"split": BUDGET_SPLIT, **row})
                trainer.model.train()
                clock["next"] += b.every
            if done:
                trainer.request_stop()
            clock["w0"], clock["c0"] = time.perf_counter(), time.process_time()
        return [hook]
    return make


def budget_rows(run) -> list[dict]:
    """The measurements ``training_budget`` logged during ``run``'s training, in order."""
    from genlab.training.logger import read_jsonl
    return [{k: v for k, v in r.items() if k != "split"}
            for r in read_jsonl(run.folder.metrics_jsonl) if r.get("split") == BUDGET_SPLIT]


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def held_out(trainer, n: int) -> torch.Tensor:
    """The first ``n`` validation images of a run in training (the same ones at every snapshot)."""
    return trainer.val_data.tensors[0][:n].to(device_of(trainer.model))


def test_metrics(run, digits: int = 4, **options) -> dict:
    """The run's test metrics (no extra metrics), rounded; ``options`` go to its eval config."""
    record = evaluate(run, options=options, extras=False)
    return {k: round(float(v), digits) for k, v in record["metrics"].items() if isinstance(v, (int, float))}


def reconstruction_spread(model, x: torch.Tensor) -> float:
    """How much the reconstructions of different inputs differ, relative to the inputs: the mean over
    pixels of the std across the reconstructions of ``x``, over the same std of ``x`` itself. About 0 when
    every input gets the same reconstruction (a collapsed code), about 1 when they differ as the inputs do."""
    model.eval()
    with torch.no_grad():
        r = model.reconstruct(x.to(device_of(model))).cpu()
    return round(float(r.flatten(1).std(0).mean() / x.flatten(1).std(0).mean().clamp_min(1e-12)), 4)   # [B, D]


def relative(ctx: Context, paths) -> list[str]:
    return [str(Path(p).relative_to(ctx.out)) for p in paths if p is not None]


@contextmanager
def single_thread():
    """One intra-op thread: tiny networks gain nothing from more, and on a busy machine idle-spinning
    worker threads made quick runs up to 20x slower (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
