"""What the experiments share: values declared for full and quick runs, snapshot callbacks, test
batches, metrics and the relative paths a summary lists."""
from __future__ import annotations

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
    ``Both(full=[0, 10, 80], quick=[0, 2, 6])(ctx)``."""
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
    """``Experiment.callbacks``: ``draw(ctx, setting, trainer, epoch)`` at the declared epochs
    (``trainer.model`` is the model, ``trainer.val_data`` its held-out images)."""
    def make(ctx: Context, s: Setting) -> list:
        return [snapshots(epochs(ctx), lambda trainer, epoch: draw(ctx, s, trainer, epoch))]
    return make


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def held_out(trainer, n: int) -> torch.Tensor:
    """The first ``n`` validation images of a run in training (the same ones at every snapshot)."""
    return trainer.val_data.tensors[0][:n].to(device_of(trainer.model))


def test_metrics(run, digits: int = 4, **options) -> dict:
    """The run's test metrics (no extra metrics), rounded; ``options`` go to its eval config."""
    record = evaluate(run, options=options, extras=False)
    return {k: round(float(v), digits) for k, v in record["metrics"].items() if isinstance(v, (int, float))}


def relative(ctx: Context, paths) -> list[str]:
    return [str(Path(p).relative_to(ctx.out)) for p in paths if p is not None]


def target(description: str, met: bool) -> dict:
    """The two entries of a summary that states a target."""
    return {"target": description, "target_met": bool(met)}


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
