"""The loop's options against independent computations: schedules, EMA, gradient accumulation, batch
sources, metrics as sums and counts, exact resume with every option on, SIGTERM."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from genlab.data.batches import BucketedBatches, PermutationBatches, WindowBatches
from genlab.data.registry import DataInfo, PairData, TensorData, TokenStream
from genlab.model import Avg, GenerativeModel
from genlab.training.config import TrainConfig
from genlab.training.ema import EMA
from genlab.training.loop import Trainer, evaluate_model
from genlab.training.schedules import lr_factor

ONE = SimpleNamespace(rank=0, world_size=1)


# ------------------------------------------------------------------ schedules
@pytest.mark.unit
def test_schedules_match_their_closed_forms():
    total, warm = 100, 10
    for s in range(total):
        f = lr_factor("warmup-cosine", s, total, warm, 0.1)
        if s + 1 <= warm:
            assert f == pytest.approx((s + 1) / warm)
        else:
            p = (s + 1 - warm) / (total - warm)
            assert f == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
        d = 64   # Vaswani et al. 2017, Eq. 3, divided by its peak value
        vaswani = d ** -0.5 * min((s + 1) ** -0.5, (s + 1) * warm ** -1.5)
        peak = d ** -0.5 * warm ** -0.5
        assert lr_factor("inverse-sqrt", s, total, warm) == pytest.approx(vaswani / peak)
    assert lr_factor("warmup-cosine", total - 1, total, warm, 0.1) == pytest.approx(0.1)
    assert lr_factor("exponential", 25, total, 0, gamma=0.5, epoch=2) == pytest.approx(0.25)
    assert lr_factor("constant", 3, total, 0) == 1.0


# ------------------------------------------------------------------ EMA
@pytest.mark.unit
def test_ema_is_the_warmed_up_exponential_average():
    net = torch.nn.Linear(2, 1, bias=False)
    ema = EMA(net, decay=0.9)
    expected = net.weight.detach().clone()
    for i in range(1, 30):
        with torch.no_grad():
            net.weight.add_(1.0)
        ema.update(net)
        d = min(0.9, (1 + i) / (10 + i))
        expected = d * expected + (1 - d) * net.weight.detach()
    assert torch.allclose(ema.model.weight, expected)


# ------------------------------------------------------------------ a tiny model for the loop
class Regression(GenerativeModel):
    """Least squares y = w.x; loss = mean squared error (deterministic: no noise)."""

    def __init__(self, config=None, data_info=None):
        super().__init__(config, data_info)
        torch.manual_seed(0)
        self.w = torch.nn.Linear(3, 1)

    def loss(self, batch, phase="main"):
        x, y = batch
        return ((self.w(x).squeeze(-1) - y) ** 2).mean(), {}

    def eval_metrics(self, batch, **options):
        x, y = batch
        return {"se": (self.w(x).squeeze(-1) - y) ** 2}


def regression_data(n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g)
    return TensorData((x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3), DataInfo("points", (3,)))


@pytest.mark.unit
def test_gradient_accumulation_equals_the_large_batch():
    data = regression_data(64)
    cfg = dict(max_steps=1, lr=0.1, optimizer="sgd", betas=(0.0, 0.999), progress=False, eval_every=0)
    big = Trainer(Regression(), data, TrainConfig(batch_size=32, **cfg))
    big.fit()
    acc = Trainer(Regression(), data, TrainConfig(batch_size=16, grad_accum=2, **cfg))
    acc.fit()
    for a, b in zip(big.model.parameters(), acc.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.unit
def test_resume_is_exact_with_schedule_ema_and_accumulation(tmp_path):
    data = regression_data(96)
    opts = dict(epochs=4, batch_size=16, grad_accum=2, lr=0.05, schedule="warmup-cosine", warmup_steps=3,
                ema=0.9, progress=False, eval_every=0, log_every=1)
    full = Trainer(Regression(), data, TrainConfig(**opts), tmp_path / "full")
    full.fit()

    def interrupt(trainer):   # Ctrl-C in the middle of epoch 2
        if trainer.state.global_step == 7:
            os.kill(os.getpid(), signal.SIGINT)
    half = Trainer(Regression(), data, TrainConfig(**opts), tmp_path / "part", step_hooks=[interrupt])
    assert half.fit().interrupted and half.state.global_step == 7
    resumed = Trainer(Regression(), data, TrainConfig(**opts), tmp_path / "part").resume()
    resumed.fit()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(full.eval_model.parameters(), resumed.eval_model.parameters()):
        assert torch.equal(a, b)
    assert full.eval_model is not full.model


@pytest.mark.unit
def test_bf16_autocast_trains():
    t = Trainer(Regression(), regression_data(), TrainConfig(max_steps=3, batch_size=16, autocast="bf16",
                                                             progress=False, eval_every=0))
    t.fit()
    assert t.state.global_step == 3


# ------------------------------------------------------------------ batch sources
@pytest.mark.unit
def test_permutation_batches_cover_each_example_once_per_epoch_and_shard():
    x = torch.arange(10)
    src = PermutationBatches((x,), 3, seed=0, dist=ONE)
    seen = torch.cat([src.get(0, i)[0] for i in range(src.steps_per_epoch)])
    assert sorted(seen.tolist()) == list(range(10))
    assert not torch.equal(seen, torch.cat([src.get(1, i)[0] for i in range(src.steps_per_epoch)]))
    ranks = [PermutationBatches((x,), 5, 0, SimpleNamespace(rank=r, world_size=2)) for r in (0, 1)]
    both = torch.cat([r.get(0, 0)[0] for r in ranks])
    assert sorted(both.tolist()) == list(range(10)) and ranks[0].steps_per_epoch == ranks[1].steps_per_epoch


@pytest.mark.unit
def test_window_batches_are_shifted_windows_and_deterministic():
    tokens = torch.arange(1000)
    src = WindowBatches(tokens, block_size=8, batch_size=4, seed=3, dist=ONE)
    x, y = src.get(0, 5)
    assert x.shape == (4, 8) and torch.equal(y, x + 1)          # targets are the next tokens
    assert torch.equal(x, WindowBatches(tokens, 8, 4, 3, ONE).get(0, 5)[0])
    assert not torch.equal(x, src.get(0, 6)[0])


@pytest.mark.unit
def test_token_stream_eval_predicts_each_token_once():
    stream = TokenStream(torch.arange(101), DataInfo("text", (1,)))
    ys = torch.cat([y.flatten() for _, y in stream.eval_batches(3, block_size=10)])
    assert ys.tolist() == list(range(1, 101))


@pytest.mark.unit
def test_bucketed_batches_cover_all_pairs_pad_and_respect_the_token_budget():
    g = torch.Generator().manual_seed(0)
    lens = torch.randint(1, 30, (200,), generator=g)
    src = [torch.full((int(n),), i + 1) for i, n in enumerate(lens)]
    tgt = [torch.full((int(n) + 1,), i + 1) for i, n in enumerate(lens)]
    b = BucketedBatches(src, tgt, batch_size=16, seed=0, dist=ONE, pad_id=0, max_tokens=400)
    ids = []
    for step in range(b.steps_in(0)):
        s, t = b.get(0, step)
        assert s.shape[0] <= 16 and s.shape[0] * (s.shape[1] + t.shape[1]) <= 400 + 60
        ids += [int(row[0]) for row in s]
        for row in s:
            n = int((row != 0).sum())
            assert torch.all(row[:n] == row[0]) and torch.all(row[n:] == 0)
    assert sorted(ids) == list(range(1, 201))
    pad = sum(int((b.get(0, i)[0] == 0).sum()) for i in range(b.steps_in(0)))
    assert pad < 0.2 * int(lens.sum()), "length bucketing should keep padding small"


# ------------------------------------------------------------------ metrics as sums and counts
class Tokens(GenerativeModel):
    """Reports a per-token value on the real (non-pad) tokens of a padded batch."""

    def eval_metrics(self, batch, **options):
        src, tgt = batch
        mask = tgt != 0
        return {"per_token": Avg(tgt[mask].float().sum(), mask.sum()), "per_pair": src[:, 0].float()}

    def finalize_metrics(self, means):
        return means | {"exp_per_token": math.exp(means["per_token"] / 100)}


@pytest.mark.unit
def test_evaluation_averages_per_token_not_per_batch():
    src = [torch.tensor([1]), torch.tensor([2]), torch.tensor([3])]
    tgt = [torch.tensor([5, 5, 5, 5]), torch.tensor([1]), torch.tensor([2, 2])]
    data = PairData(src, tgt, DataInfo("pairs", (1,)))
    m = evaluate_model(Tokens(None, None), data, batch_size=2, device="cpu")
    assert m["per_token"] == pytest.approx((20 + 1 + 4) / 7)       # 7 real tokens
    assert m["per_pair"] == pytest.approx(2.0)                     # per example
    assert m["exp_per_token"] == pytest.approx(math.exp(25 / 7 / 100))


# ------------------------------------------------------------------ SIGTERM
@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path):
    code = ("import sys; from genlab.cli import main; sys.exit(main(['train', 'vae', '--epochs', '500', "
            "'--hidden', '16', '--no-progress', '--out', sys.argv[1]]))")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stderr=subprocess.PIPE,
                            text=True, env=env)
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    import time
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted" in err and "--resume" in err
    from genlab.training import checkpoint
    assert checkpoint.load(ckpt)["global_step"] > 0
