"""What the experiments share: the data choice, snapshot callbacks, and a one-thread mode."""
from __future__ import annotations

import functools
from contextlib import contextmanager

import torch


def mnist_or_digits(quick: bool, data_dir: str | None) -> tuple[str, dict]:
    """Full runs use MNIST (a local folder when given, else a checked download); quick runs the
    bundled digits."""
    return ("digits", {}) if quick else ("mnist", {"data_dir": data_dir} if data_dir else {})


def snapshots(epochs, draw):
    """A trainer callback calling ``draw(model, epoch)`` in eval mode under a fixed seed, before training
    (epoch 0) and after each epoch listed in ``epochs``."""
    wanted = set(epochs)

    def callback(trainer, event):
        epoch = trainer.state.epoch if event == "epoch" else 0
        if epoch in wanted and (event == "epoch" or epoch == 0):
            model = trainer.model
            was_training = model.training
            model.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                draw(model, epoch)
            model.train(was_training)
    return callback


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


def one_thread_when_quick(fn):
    """Decorator for an experiment ``fn(out, quick, data_dir)``: ``single_thread`` in quick mode."""
    @functools.wraps(fn)
    def wrapper(out, quick, data_dir):
        if not quick:
            return fn(out, quick, data_dir)
        with single_thread():
            return fn(out, quick, data_dir)
    return wrapper
