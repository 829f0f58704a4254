"""Adversarial-family benchmarks.

1. GAN training throughput: genlab's Trainer vs a bare PyTorch loop driving the same networks with the
   same losses and optimizers, interleaved in one process; medians of several repeats.
2. FID (local classifier features) on MNIST for a few-epoch AAE, GAN and VAE, with training times.

Times are on ``--clock`` (default the process CPU time); every repeat is printed, with the load average at
start and end (stderr) and the peak resident memory.

  python benchmarks/bench_gan.py --data-dir DIR [--steps 200 --repeats 5 --epochs 2 --threads 1]
  python benchmarks/bench_gan.py --data-dir DIR --steps 20 --repeats 2 --skip-fid      # a smoke test
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

from _clock import Timer, add_clock_option, peak_rss_mb, report_env
from genlab.data.registry import load_dataset
from genlab.eval.fid import get_classifier, sample_quality
from genlab.model import build_model
from genlab.training.config import TrainConfig
from genlab.training.loop import Trainer
from genlab.training.run import train


def bare_loop(model, x: torch.Tensor, steps: int, batch: int, lr: float, timer: Timer) -> float:
    """D step then G step per batch, BCE losses, Adam(0.5, 0.999): examples per second."""
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=lr, betas=(0.5, 0.999))
    perm = torch.randperm(len(x))
    with timer:
        for step in range(steps):
            idx = perm[(step * batch) % (len(x) - batch):][:batch]
            real = x[idx]
            fake = torch.sigmoid(model.generator(torch.randn(batch, model.config.z_dim))).view_as(real).detach()
            v_real, v_fake = model.discriminator(real).view(-1), model.discriminator(fake).view(-1)
            d_loss = (F.binary_cross_entropy_with_logits(v_real, torch.ones_like(v_real))
                      + F.binary_cross_entropy_with_logits(v_fake, torch.zeros_like(v_fake)))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            fake = torch.sigmoid(model.generator(torch.randn(batch, model.config.z_dim))).view_as(real)
            v_fake = model.discriminator(fake).view(-1)
            g_loss = F.binary_cross_entropy_with_logits(v_fake, torch.ones_like(v_fake))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
    return steps * batch / timer.last


def trainer_loop(model, data, steps: int, batch: int, lr: float, timer: Timer) -> float:
    cfg = TrainConfig(epochs=10_000, max_steps=steps, batch_size=batch, lr=lr, eval_every=0, progress=False,
                      log_every=50, device="cpu")
    trainer = Trainer(model, data, cfg)
    with timer:
        trainer.fit()
    return steps * batch / timer.last


def throughput(data, steps: int, repeats: int, batch: int, arch: str, clock: str) -> dict:
    genlab_rates, bare_rates, timer = [], [], Timer(clock)
    for r in range(repeats):
        torch.manual_seed(r)
        m1 = build_model("gan", data.info, arch=arch)
        torch.manual_seed(r)
        m2 = build_model("gan", data.info, arch=arch)
        genlab_rates.append(trainer_loop(m1, data, steps, batch, 2e-4, timer))
        bare_rates.append(bare_loop(m2, data.tensors[0], steps, batch, 2e-4, timer))
    g, b = statistics.median(genlab_rates), statistics.median(bare_rates)
    return {"arch": arch, "steps": steps, "batch": batch, "repeats": repeats, "clock": clock,
            "genlab_examples_per_s": [round(v) for v in genlab_rates], "bare_examples_per_s": [round(v) for v in bare_rates],
            "median_genlab": round(g), "median_bare": round(b), "ratio_genlab_over_bare": round(g / b, 3),
            "ratio_per_repeat": [round(x / y, 3) for x, y in zip(genlab_rates, bare_rates)],
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def fid_table(data_dir: str, epochs: int, clock: str) -> list[dict]:
    rows = []
    recipes = [("aae", {"z_dim": 8, "lam": 0.995, "lr": 1e-3}),
               ("gan", {"arch": "dcgan", "lr": 2e-4, "batch_size": 64}),
               ("vae", {"z_dim": 20, "lr": 1e-3})]
    timer = Timer(clock)
    for name, opts in recipes:
        with timer:
            run = train(name, "mnist", None, data_options={"data_dir": data_dir}, epochs=epochs, progress=False,
                        eval_every=0, **opts)
        train_s = timer.last
        q = sample_quality(run, n=2000)
        rows.append({"model": name, "options": opts, "epochs": epochs, "clock": clock, "train_s": round(train_s, 1),
                     "fid_local": round(q["fid"], 2), "fid_samples": q["fid_samples"],
                     "classifier_score": round(q["classifier_score"], 3), "peak_rss_mb": round(peak_rss_mb(), 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder with the MNIST idx files")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-fid", action="store_true")
    add_clock_option(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env_start = report_env("start", args.clock)
    data = load_dataset("mnist", "train", view="continuous", data_dir=args.data_dir)
    result = {"threads": args.threads, "clock": args.clock, "env_start": env_start,
              "throughput": throughput(data, args.steps, args.repeats, 64, "mlp", args.clock)}
    print(json.dumps(result["throughput"]), flush=True)
    if not args.skip_fid:
        timer = Timer(args.clock)
        with timer:
            _, acc = get_classifier("mnist", data_config_for(args.data_dir))
        result["classifier"] = {"test_accuracy": acc, "seconds (0 if cached)": round(timer.last, 1)}
        print(json.dumps(result["classifier"]), flush=True)
        result["fid"] = fid_table(args.data_dir, args.epochs, args.clock)
    result["env_end"] = report_env("end", args.clock)
    print(json.dumps(result, indent=2))


def data_config_for(data_dir: str):
    from genlab.data.registry import data_config
    return data_config("mnist", {"data_dir": data_dir})


if __name__ == "__main__":
    main()
