"""NeRF on Lego at 100x100: held-out PSNR against training time, fast grid field vs vanilla NeRF.

    python benchmarks/bench_nerf.py --file PATH/tiny_lego_100px.npz --model nerf-grid --minutes 10
    python benchmarks/bench_nerf.py --scene-dir PATH/nerf_synthetic/lego --downscale 8 --model nerf-grid
    python benchmarks/bench_nerf.py --file PATH.npz --model nerf --minutes 10 --set width=128 n_coarse=32 n_fine=64

Views 90-99 are held out (``--holdout``), composited over white. Training follows the project's models
(Adam; the grid field's grids at their own learning rate) for a wall-clock budget; every ``--eval-every``
seconds of training the held-out views are rendered and PSNR / SSIM recorded (evaluation time is not
counted as training time). Reports wall and process CPU seconds (the machine may be shared), seconds per
rendered view, peak resident memory, and renders at a second size (``--size2``, default 200). Writes a
JSON record (``--out``).
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from genlab.config import from_dict
from genlab.families.nerf import data as scenes
from genlab.families.nerf.experiments import timed_training
from genlab.families.nerf.metrics import render_split
from genlab.maths.image_quality import psnr, ssim
from genlab.model import get_model_spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--file", help="tiny-NeRF .npz (images, poses, focal, alphas)")
    p.add_argument("--scene-dir", help="NeRF-synthetic scene folder (instead of --file)")
    p.add_argument("--downscale", type=int, default=8, help="with --scene-dir: shrink the 800 px images K times")
    p.add_argument("--holdout", default="90-99")
    p.add_argument("--model", default="nerf-grid", choices=["nerf-grid", "nerf"])
    p.add_argument("--set", nargs="*", default=[], help="model options key=value")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget")
    p.add_argument("--batch-size", type=int, default=1024, help="rays per step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (the grids use grid_lr)")
    p.add_argument("--eval-every", type=float, default=120.0, help="seconds of training between evaluations")
    p.add_argument("--eval-views", type=int, default=10, help="held-out views rendered at intermediate evaluations "
                   "(the final one renders all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size2", type=int, default=200, help="also time renders at this size (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_nerf.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.scene_dir:
        cfg = scenes.BlenderConfig(scene_dir=args.scene_dir, downscale=args.downscale, holdout=args.holdout)
        train, test = (scenes.blender(cfg, s) for s in ("train", "test"))
    else:
        cfg = scenes.TinyNerfConfig(file=args.file, background="white", holdout=args.holdout)
        train, test = (scenes.tiny_nerf(cfg, s) for s in ("train", "test"))
    spec = get_model_spec(args.model)
    options = {k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") or v[:1] == "-" else v
               for k, v in (kv.split("=", 1) for kv in args.set)}
    model = spec.cls(from_dict(spec.config, options), train.info)

    def evaluate(tag, views=None):
        r = render_split(model, test, max_views=views)
        row = {"tag": tag, "psnr": float(psnr(r["pred"], r["target"]).mean()),
               "ssim": float(ssim(r["pred"], r["target"]).mean()),
               "render_s_per_view": sum(r["seconds"]) / len(r["seconds"]),
               "render_cpu_s_per_view": sum(r["cpu_seconds"]) / len(r["cpu_seconds"])}
        return row, r

    # genlab's one training loop, timed by the experiment's hook (evaluation time excluded)
    curve = timed_training(model, train, test, args.minutes, args.batch_size, args.lr, args.eval_every,
                           seed=args.seed, log=lambda row: print(json.dumps(row), flush=True),
                           eval_views=args.eval_views)
    steps, wall, cpu = curve[-1]["step"], curve[-1]["train_wall_s"], curve[-1]["train_cpu_s"]
    final, r = evaluate("final")
    extra = {}
    if args.size2:
        poses = test.scene.poses[:3]
        t0, c0 = time.perf_counter(), time.process_time()
        for pose in poses:
            model.render_view(pose, args.size2, args.size2, float(train.info.extras["focal"]) * args.size2 / 100)
        extra[f"render_s_per_view_{args.size2}px"] = (time.perf_counter() - t0) / len(poses)
        extra[f"render_cpu_s_per_view_{args.size2}px"] = (time.process_time() - c0) / len(poses)
    record = {"model": args.model, "options": options, "data": args.file or args.scene_dir,
              "holdout": args.holdout, "eval_views": args.eval_views,
              "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads, "steps": steps,
              "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1), "final": final, "curve": curve,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra,
              "psnr_per_view": [round(float(v), 2) for v in psnr(r["pred"], r["target"])]}
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}, indent=1))


if __name__ == "__main__":
    main()
