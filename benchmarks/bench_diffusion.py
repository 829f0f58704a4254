"""Diffusion benchmarks: training throughput of U-Nets, quality per CPU-minute, and the sampler table.

    python benchmarks/bench_diffusion.py throughput [--threads 2]
        images/s of one training step (forward, backward, Adam) at batch 128 on 28x28, for genlab's U-Net
        at several widths and for diffusers' 1.62M-parameter UNet2DModel (the issue's baseline).
    python benchmarks/bench_diffusion.py quality --data-dir DIR --minutes 15 [--which genlab|diffusers]
        trains on MNIST for a wall-clock budget, FID (local features, --fid-n samples by --sampler with
        --sample-steps steps) every --every minutes: the FID-vs-minutes curve. --save FILE keeps the final
        EMA weights (genlab only) for the sampler table.
    python benchmarks/bench_diffusion.py samplers RUN|FILE [--n 500]
        on one trained run (a run folder, or the weights written by quality --save): FID of --n samples and
        the median seconds for a batch of 64 images, for every sampler x {10, 20, 100, 1000} steps.
    python benchmarks/bench_diffusion.py bpd RUN|FILE [--vlb-samples 20]
        the variational bound in bits/dim on the 8-bit MNIST test set, with its standard error.

Times are on ``--clock`` (default the process CPU time; the training budget of ``quality`` too). Results go to
stdout as JSON lines (one per measurement, with every timed repeat), each with the command that produced it,
the clock and the peak resident memory; the load average is printed at start and end (stderr).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

from _clock import Timer, add_clock_option, peak_rss_mb, report_env

CLOCK = "cpu"      # set from --clock in main()


def emit(row: dict) -> None:
    print(json.dumps(row | {"clock": CLOCK, "peak_rss_mb": round(peak_rss_mb(), 1), "command": " ".join(sys.argv)}),
          flush=True)


def diffusers_unet():
    from diffusers import UNet2DModel
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                       layers_per_block=2, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8)


def throughput(args) -> None:
    from genlab.families.diffusion.unet import UNet, UNetConfig
    widths = [(16, (1, 2, 2), True), (32, (1, 2, 2), True), (32, (1, 2, 2), False), (48, (1, 2, 2), True)]
    nets = {f"genlab c={c} mults={m} attn={a}":
            (lambda c=c, m=m, a=a: UNet(UNetConfig(channels=c, mults=m, attention=a), 1)) for c, m, a in widths}
    nets["diffusers UNet2DModel (32,64,64)x2"] = diffusers_unet
    bs = args.batch
    for name, make in nets.items():
        torch.manual_seed(0)
        net = make()
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x, t = torch.randn(bs, 1, 28, 28), torch.randint(0, 1000, (bs,))
        timer = Timer(CLOCK)
        for _ in range(args.iters + 1):
            with timer:
                out = net(x, t)
                out = out.sample if hasattr(out, "sample") else out
                loss = (out - x).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        rates = [bs / s for s in timer.laps[1:]]              # the first step is warm-up
        emit({"bench": "throughput", "net": name, "params": sum(p.numel() for p in net.parameters()),
              "threads": torch.get_num_threads(), "batch": bs,
              "images_per_s_per_iter": [round(r, 1) for r in rates],
              "images_per_s_median": round(sorted(rates)[len(rates) // 2], 1),
              "images_per_s_best": round(max(rates), 1)})


def quality(args) -> None:
    """FID vs training minutes on MNIST for genlab's DDPM or a minimal diffusers loop."""
    from genlab.data.registry import get_spec, load_dataset
    from genlab.eval.fid import features_and_probs, frechet_distance, gaussian_stats, get_classifier, reference_subset
    from genlab.families.diffusion.model import DDPM, DDPMConfig
    data = load_dataset("mnist", "train", data_dir=args.data_dir)
    test = load_dataset("mnist", "test", data_dir=args.data_dir)
    classifier, _ = get_classifier("mnist", get_spec("mnist").config(data_dir=args.data_dir), progress=False)
    ref = reference_subset(test.tensors[0], args.fid_n)
    ref_stats = gaussian_stats(features_and_probs(classifier, ref)[0])
    torch.manual_seed(0)
    model = DDPM(DDPMConfig(channels=args.channels, mults=tuple(args.mults), weighting=args.weighting,
                            prediction=args.prediction), data.info)
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema))
    if args.which == "diffusers":
        from diffusers import DDPMScheduler
        net, sched = diffusers_unet(), DDPMScheduler(num_train_timesteps=1000)
        params = net.parameters()
    else:
        params = model.parameters()
    opt = torch.optim.Adam(params, args.lr)
    x_all = data.tensors[0]
    g = torch.Generator().manual_seed(0)
    def report(train_s: float, step: int) -> None:
        if args.which == "genlab":
            samples = ema.module.sample(args.fid_n, args.sampler, args.sample_steps, torch.Generator().manual_seed(1))
        else:
            import diffusers

            from genlab.families.diffusion.samplers import SAMPLERS
            ours = SAMPLERS[args.sampler]
            s = getattr(diffusers, ours.diffusers_equivalent)(num_train_timesteps=1000, **ours.diffusers_config)
            s.set_timesteps(args.sample_steps)
            gen = torch.Generator().manual_seed(1)
            z = torch.randn(args.fid_n, 1, 28, 28, generator=gen)
            with torch.no_grad():
                z = z * s.init_noise_sigma
                for t in s.timesteps:
                    z = s.step(net(s.scale_model_input(z, t), t).sample, t, z, generator=gen).prev_sample
            samples = ((z + 1) / 2).clamp(0, 1)
        fid = frechet_distance(*gaussian_stats(features_and_probs(classifier, samples)[0]), *ref_stats)
        if args.grid:
            from genlab.viz.figures import save_image_grid
            save_image_grid(samples[:64], f"{args.grid}_{args.which}_{train_s / 60:.1f}min.png")
        emit({"bench": "quality", "which": args.which, "train_minutes": round(train_s / 60, 2), "steps": step,
              "fid_local": round(fid, 2), "fid_samples": args.fid_n, "sampler": f"{args.sampler}-{args.sample_steps}",
              "threads": torch.get_num_threads()})

    timer = Timer(CLOCK)
    start = timer.now()
    train_s, step, next_eval = 0.0, 0, args.every * 60
    while train_s < args.minutes * 60:
        if train_s >= next_eval:
            report(train_s, step)
            next_eval += args.every * 60
        t0 = timer.now()
        idx = torch.randint(0, len(x_all), (args.batch,), generator=g)
        x = x_all[idx]
        if args.which == "genlab":
            loss, _ = model.loss((x, None))
        else:
            x0 = x * 2 - 1
            noise, t = torch.randn_like(x0), torch.randint(0, 1000, (len(x0),))
            loss = (net(sched.add_noise(x0, noise, t), t).sample - noise).pow(2).mean()
        if args.cosine:                        # anneal to zero over the time budget
            for group in opt.param_groups:
                group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, train_s / (args.minutes * 60))))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if args.which == "genlab":
            ema.update_parameters(model)
        step += 1
        train_s += timer.now() - t0
    report(train_s, step)
    if args.save and args.which == "genlab":
        torch.save({"config": dataclasses.asdict(model.config), "state_dict": ema.module.state_dict()}, args.save)
    emit({"bench": "quality-done", "which": args.which, "steps": step, "train_s": round(train_s, 1),
          "total_s": round(timer.now() - start, 1)})


def load_trained(args):
    """(model, data name, data config, test images in [0, 1]) from a run folder or a `quality --save` file."""
    from genlab.eval.fid import unit_view
    from genlab.training.run import load_run
    if Path(args.run).is_file():                      # weights from `quality --save` (trained on MNIST)
        from genlab.data.registry import get_spec, load_dataset
        from genlab.families.diffusion.model import DDPM, DDPMConfig
        saved = torch.load(args.run, weights_only=True)
        config = saved["config"] | {"mults": tuple(saved["config"]["mults"])}
        data_config = get_spec("mnist").config(data_dir=args.data_dir)
        test = load_dataset("mnist", "test", config=data_config)
        model = DDPM(DDPMConfig(**config), test.info)
        model.load_state_dict(saved["state_dict"])
        return model.eval(), "mnist", data_config, test.tensors[0]
    run = load_run(args.run)
    return (run.model.eval(), run.data_name, run.data_config,
            unit_view(run.data_name, run.data_config, "test").tensors[0])


def seconds_per_64(model, name: str, steps: int, reps: int) -> dict:
    """Seconds on the clock to sample a batch of 64 images with sampler ``name``: every repeat and the median."""
    timer = Timer(CLOCK)
    for _ in range(reps):
        with timer:
            model.sample(64, name, steps, torch.Generator().manual_seed(1))
    return {"seconds_per_64": round(sorted(timer.laps)[reps // 2], 3),
            "seconds_per_64_per_repeat": [round(t, 3) for t in timer.laps]}


def samplers(args) -> None:
    from genlab.eval.fid import features_and_probs, frechet_distance, gaussian_stats, get_classifier, reference_subset
    from genlab.families.diffusion.samplers import SAMPLERS
    model, data_name, data_config, test_images = load_trained(args)
    classifier, _ = get_classifier(data_name, data_config, progress=False)
    ref = reference_subset(test_images, args.n)
    ref_stats = gaussian_stats(features_and_probs(classifier, ref)[0])
    for name in args.samplers or SAMPLERS:
        for steps in args.steps:
            fids = []                      # seed k: initial noise from seed 99 + 2k, the sampler's from 100 + 2k
            for k in range(args.seeds):
                noise = torch.randn((args.n, *model.data_info.shape), generator=torch.Generator().manual_seed(99 + 2 * k))
                x = model.sample(args.n, name, steps, torch.Generator().manual_seed(100 + 2 * k), noise=noise)
                fids.append(frechet_distance(*gaussian_stats(features_and_probs(classifier, x)[0]), *ref_stats))
            fid = sum(fids) / len(fids)
            spread = {} if len(fids) == 1 else {"fid_per_seed": [round(f, 2) for f in fids],
                                                "fid_std": round(float(torch.tensor(fids).std()), 2)}
            emit({"bench": "samplers", "sampler": name, "steps": steps, "fid_local": round(fid, 2), "n": args.n,
                  **spread, **seconds_per_64(model, name, steps, args.reps),
                  "threads": torch.get_num_threads()})


@torch.no_grad()
def bpd(args) -> None:
    """The variational bound (Ho et al. 2020, Eq. 5) in bits/dim on 8-bit MNIST test images, with its standard
    error over images (the KL terms by --vlb-samples stratified timesteps per image, unbiased)."""
    from genlab.maths.densities import bits_per_dim
    model, _, _, test_images = load_trained(args)
    x = test_images[: args.n] if args.n else test_images
    g = torch.Generator().manual_seed(0)
    timer = Timer(CLOCK)
    with timer:
        nats = torch.cat([model.vlb_nats(x[i:i + args.batch], args.vlb_samples, generator=g)
                          for i in range(0, len(x), args.batch)])
    b = bits_per_dim(nats, x.shape[1:])
    emit({"bench": "bpd", "bpd": round(b.mean().item(), 4), "stderr": round((b.std() / math.sqrt(len(b))).item(), 4),
          "nll_nats": round(nats.mean().item(), 2), "images": len(x), "vlb_samples": args.vlb_samples,
          "seconds": round(timer.last, 1), "threads": torch.get_num_threads()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    add_clock_option(p)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--iters", type=int, default=5)
    q = sub.add_parser("quality")
    q.add_argument("--data-dir", required=True)
    q.add_argument("--minutes", type=float, default=15)
    q.add_argument("--every", type=float, default=3)
    q.add_argument("--which", choices=("genlab", "diffusers"), default="genlab")
    q.add_argument("--channels", type=int, default=16)
    q.add_argument("--mults", type=int, nargs="+", default=[1, 2, 2])
    q.add_argument("--batch", type=int, default=32)
    q.add_argument("--lr", type=float, default=2e-3)
    q.add_argument("--fid-n", type=int, default=500)
    q.add_argument("--grid", default="", help="write a PNG grid of 64 samples at each evaluation to GRID_*.png")
    q.add_argument("--ema", type=float, default=0.995)
    q.add_argument("--weighting", choices=("uniform", "snr", "min_snr"), default="uniform",
                   help="loss weighting over timesteps (genlab only; min_snr: Hang et al. 2023, gamma 5)")
    q.add_argument("--prediction", choices=("epsilon", "sample", "v_prediction"), default="epsilon",
                   help="what the network predicts (genlab only)")
    q.add_argument("--cosine", action="store_true", help="cosine learning-rate decay to zero over --minutes")
    q.add_argument("--sampler", choices=("ddpm", "euler-a", "dpm++2m", "dpm++2m-sde"), default="ddpm",
                   help="sampler for the FID samples (ancestral sampling scored best on briefly trained models)")
    q.add_argument("--sample-steps", type=int, default=100)
    q.add_argument("--save", default="", help="write the final EMA weights to this file (genlab only)")
    s = sub.add_parser("samplers")
    s.add_argument("run", help="a run folder, or a weights file written by quality --save")
    s.add_argument("--data-dir", default=None, help="folder with mnist/ (for a weights file)")
    s.add_argument("--n", type=int, default=500)
    s.add_argument("--steps", type=int, nargs="+", default=[10, 20, 100, 1000])
    s.add_argument("--samplers", nargs="+", default=None, help="only these samplers (default: all)")
    s.add_argument("--seeds", type=int, default=1, help="FID averaged over this many sampling seeds (with their spread)")
    s.add_argument("--reps", type=int, default=3, help="time a batch of 64 images this many times (the median)")
    b = sub.add_parser("bpd")
    b.add_argument("run", help="a run folder, or a weights file written by quality --save")
    b.add_argument("--data-dir", default=None, help="folder with mnist/ (for a weights file)")
    b.add_argument("--n", type=int, default=0, help="first N test images (default: all 10,000)")
    b.add_argument("--vlb-samples", type=int, default=20)
    b.add_argument("--batch", type=int, default=500)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = args.clock
    report_env("start", CLOCK)
    {"throughput": throughput, "quality": quality, "samplers": samplers, "bpd": bpd}[args.cmd](args)
    report_env("end", CLOCK)


if __name__ == "__main__":
    main()
