"""Loop overhead: genlab's trainer vs a bare PyTorch loop on the 784-400-20 MLP VAE.

Both train the same architecture (the PyTorch examples' VAE: 784-400-20, batch 128, Adam 1e-3,
Bernoulli likelihood, analytic KL) on the same binarized images, one epoch per repeat, alternating
genlab / bare so that machine noise hits both alike. Prints the images/s of every repeat, their medians
and ratio, on the chosen clock (``--clock``, default the process CPU time), with the load average at start
and end and the peak resident memory.

    python benchmarks/bench_vae_loop.py --data mnist --data-dir DIR --repeats 5 --threads 1
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from _clock import Timer, add_clock_option, report_env
from genlab.data import load_dataset
from genlab.families.vae.model import VAE, VAEConfig
from genlab.training import TrainConfig, Trainer


class BareVAE(nn.Module):
    """The PyTorch examples' VAE, written out by hand."""

    def __init__(self, d=784, h=400, z=20):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(d, h), nn.Linear(h, z), nn.Linear(h, z)
        self.fc3, self.fc4 = nn.Linear(z, h), nn.Linear(h, d)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.fc4(F.relu(self.fc3(z)))
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum()
        return (rec + kl) / len(x)


def bare_epoch(model, opt, x, batch_size, seed, timer: Timer) -> float:
    x = x.flatten(1)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    with timer:
        for idx in perm.split(batch_size):
            opt.zero_grad()
            loss = model(x[idx])
            loss.backward()
            opt.step()
    return len(x) / timer.last


def genlab_epoch(trainer, timer: Timer) -> float:
    trainer.cfg.epochs += 1
    with timer:
        trainer.fit()
    return len(trainer.train_data) / timer.last


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--limit", type=int, default=None, help="use only N training images")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    add_clock_option(p)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report_env("start", args.clock)
    timer = Timer(args.clock)
    opts = {"data_dir": args.data_dir} if args.data_dir else {}
    data = load_dataset(args.data, "train", view="binarized", limit=args.limit, **opts)
    torch.manual_seed(0)
    ours = VAE(VAEConfig(hidden=(400,), z_dim=20), data.info)
    trainer = Trainer(ours, data, TrainConfig(epochs=0, batch_size=128, lr=1e-3, progress=False, eval_every=0,
                                              log_every=100, checkpoint_every=10**6))
    bare = BareVAE(d=data.tensors[0][0].numel())
    bare_opt = torch.optim.Adam(bare.parameters(), lr=1e-3)
    genlab_epoch(trainer, timer), bare_epoch(bare, bare_opt, data.tensors[0], 128, 0, timer)   # warm-up
    g, b = [], []
    for r in range(args.repeats):
        g.append(genlab_epoch(trainer, timer))
        b.append(bare_epoch(bare, bare_opt, data.tensors[0], 128, r + 1, timer))
    mg, mb = statistics.median(g), statistics.median(b)
    print(f"data={args.data} n={len(data)} threads={torch.get_num_threads()} repeats={args.repeats} "
          f"clock={args.clock}")
    print(f"genlab trainer: median {mg:,.0f} images/s  (runs: {', '.join(f'{v:,.0f}' for v in g)})")
    print(f"bare loop:      median {mb:,.0f} images/s  (runs: {', '.join(f'{v:,.0f}' for v in b)})")
    print(f"ratio genlab/bare: {mg / mb:.3f}  (per-run ratios: {', '.join(f'{x / y:.3f}' for x, y in zip(g, b))})")
    end = report_env("end", args.clock)
    print(f"peak RSS {end['peak_rss_mb']:.0f} MB (both loops in one process)")


if __name__ == "__main__":
    main()
