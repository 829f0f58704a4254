"""Flow benchmarks (results in BENCHMARKS.md, "## Flows").

  toy       test nll_nats of each flow on each toy set against the true density's data_nll_nats
  normflows the same RealNVP (8 affine couplings, MLP 64-64 conditioners, ActNorm) trained by genlab
            and by the normflows library on the same data, same steps, same optimizer: NLL and the training
            time of every repeat (genlab and normflows alternating), their medians and the median ratio
  mnist     RealNVP bits/dim on MNIST (8-bit, uniform dequantization), epochs and time

Times are on ``--clock`` (default the process CPU time). The load average at start and end and the peak
resident memory are printed (stderr) and stored in results.json.

Example: python benchmarks/bench_flows.py toy normflows mnist --data-dir DIR --out runs/bench-flows
         python benchmarks/bench_flows.py normflows --compare-sets 8gaussians --steps 1500 --threads 1
Prints one JSON object per benchmark and writes them to OUT/results.json.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch

import genlab
from _clock import Timer, add_clock_option, peak_rss_mb, report_env
from genlab.data import load_dataset
from genlab.eval import evaluate


def toy(out: Path, args) -> list[dict]:
    sets = args.sets.split(",")
    rows = []
    for model in args.models.split(","):
        for data in sets:
            if model == "realnvp" and data == "gmm1d":
                continue
            opts = dict(epochs=args.epochs, batch_size=256, lr=args.lr, eval_every=0, progress=False)
            if model == "cnf":
                opts |= dict(epochs=args.cnf_epochs, hidden=(64, 64, 64), steps=8)
            timer = Timer(args.clock)
            with timer:
                run = genlab.train(model, data, out / f"{model}-{data}", data_options={"n": args.n}, **opts)
            train_s = timer.last
            m = evaluate(run, extras=True)["metrics"]
            row = {"model": model, "data": data, "n_train": args.n, "epochs": run.state.epoch,
                   "train_time_s": round(train_s, 1), "nll_nats": round(m["nll_nats"], 4)}
            if "data_nll_nats" in m:
                row |= {"data_nll_nats": round(m["data_nll_nats"], 4),
                        "gap_nats": round(m["nll_nats"] - m["data_nll_nats"], 4)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def normflows_realnvp(dim: int, couplings: int, hidden: int):
    import normflows as nf
    flows = []
    for _ in range(couplings):
        flows.append(nf.flows.ActNorm(dim))
        net = nf.nets.MLP([dim // 2, hidden, hidden, 2 * (dim - dim // 2)], init_zeros=True)
        flows.append(nf.flows.AffineCouplingBlock(net))
        flows.append(nf.flows.Permute(dim, mode="swap"))
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)


def fit(loss_fn, params, x: torch.Tensor, steps: int, batch: int, lr: float, seed: int, clock: str) -> float:
    """The same minimal Adam loop for both libraries; returns its seconds on ``clock``."""
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    timer = Timer(clock)
    with timer:
        for _ in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=gen)
            loss = loss_fn(x[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return timer.last


def normflows_vs_genlab(out: Path, args) -> list[dict]:
    from genlab.model import build_model
    rows = []
    for data in args.compare_sets.split(","):
        train = load_dataset(data, "train", n=args.n)
        test = load_dataset(data, "test", n=args.n).tensors[0]
        per_lib = {"genlab": [], "normflows": []}
        for rep in range(args.repeats):
            torch.manual_seed(rep)
            ours = build_model("realnvp", train.info, couplings=8, hidden=(64, 64))
            ours.train()
            t_ours = fit(lambda b: ours.loss((b,))[0], ours.parameters(), train.tensors[0], args.steps, 256, args.lr, rep,
                         args.clock)
            ours.eval()
            with torch.no_grad():
                nll_ours = float(-ours.log_prob(test).mean())
            torch.manual_seed(rep)
            theirs = normflows_realnvp(2, 8, 64)
            t_theirs = fit(lambda b: theirs.forward_kld(b), theirs.parameters(), train.tensors[0], args.steps, 256,
                           args.lr, rep, args.clock)
            theirs.eval()
            with torch.no_grad():
                nll_theirs = float(-theirs.log_prob(test).mean())
            per_lib["genlab"].append((nll_ours, t_ours, sum(p.numel() for p in ours.parameters())))
            per_lib["normflows"].append((nll_theirs, t_theirs, sum(p.numel() for p in theirs.parameters())))
        true_nll = float(-genlab.data.toy.log_density(data, test.double()).mean()) \
            if data in genlab.data.toy.KNOWN_DENSITY else None
        row = {"data": data, "steps": args.steps, "batch": 256, "repeats": args.repeats, "clock": args.clock,
               "threads": torch.get_num_threads(), "data_nll_nats": true_nll}
        for lib, vals in per_lib.items():
            finite = [v[0] for v in vals if math.isfinite(v[0])]
            row[lib] = {"nll_nats_per_repeat": [round(v[0], 4) for v in vals],
                        "nll_nats_median_of_finite": round(statistics.median(finite), 4) if finite else None,
                        "time_s_per_repeat": [round(v[1], 2) for v in vals],
                        "time_s_median": round(statistics.median(v[1] for v in vals), 2), "params": vals[0][2]}
        ratios = [a[1] / b[1] for a, b in zip(per_lib["genlab"], per_lib["normflows"])]
        row["time_ratio_per_repeat"] = [round(r, 3) for r in ratios]
        row["time_ratio_genlab_over_normflows"] = round(statistics.median(ratios), 3)
        row["peak_rss_mb"] = round(peak_rss_mb(), 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def mnist(out: Path, args) -> list[dict]:
    data_options = {"data_dir": args.data_dir, "limit": args.mnist_limit}
    timer = Timer(args.clock)
    with timer:
        run = genlab.train("realnvp", "mnist", out / "realnvp-mnist", data_options=data_options,
                           epochs=args.mnist_epochs, batch_size=64, lr=1e-3, channels=args.mnist_channels,
                           couplings=8, eval_every=0, progress=False)
    train_s = timer.last
    m = evaluate(run, extras=False, limit=args.mnist_test)["metrics"]
    row = {"model": "realnvp", "data": "mnist", "train_examples": len(run.data("train")), "epochs": run.state.epoch,
           "channels": args.mnist_channels, "couplings": 8, "train_time_s": round(train_s, 1),
           "test_examples": args.mnist_test, "nll_nats": round(m["nll_nats"], 2), "bpd": round(m["bpd"], 4)}
    print(json.dumps(row), flush=True)
    return [row]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", nargs="+", choices=["toy", "normflows", "mnist"])
    p.add_argument("--out", default="runs/bench-flows")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--models", default="realnvp,invertible-mlp")
    p.add_argument("--sets", default="8gaussians,checkerboard,gmm2d,gmm1d,moons,circles,pinwheel,2spirals")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--cnf-epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--compare-sets", default="8gaussians,checkerboard")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mnist-epochs", type=int, default=1)
    p.add_argument("--mnist-limit", type=int, default=None)
    p.add_argument("--mnist-channels", type=int, default=32)
    p.add_argument("--mnist-test", type=int, default=10000)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    add_clock_option(p)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"torch_threads": torch.get_num_threads(), "clock": args.clock, "env_start": report_env("start", args.clock)}
    for name in args.which:
        results[name] = {"toy": toy, "normflows": normflows_vs_genlab, "mnist": mnist}[name](out, args)
    results["env_end"] = report_env("end", args.clock)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
