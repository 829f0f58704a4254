"""NeRF on Lego at 100x100: held-out PSNR against training time, fast grid field vs vanilla NeRF.

    python benchmarks/bench_nerf.py --file PATH/tiny_lego_100px.npz --model nerf-grid --minutes 10
    python benchmarks/bench_nerf.py --scene-dir PATH/nerf_synthetic/lego --downscale 8 --model nerf-grid
    python benchmarks/bench_nerf.py --file PATH.npz --model nerf --minutes 10 --set width=128 n_coarse=32 n_fine=64

Views 90-99 are held out (``--holdout``), composited over white. genlab's Trainer trains the model (Adam;
the grid field's grids at their own learning rate) for a budget of ``--minutes`` of training on ``--clock``
(default the process CPU time); every ``--eval-every`` seconds of training the held-out views are rendered
and PSNR / SSIM recorded (evaluation time is not counted as training time). Every curve point carries both
wall and process-CPU training seconds; reported beside them: seconds per rendered view (wall and CPU), peak
resident memory, renders at a second size (``--size2``, default 200) and the load average at start and end.
Writes a JSON record (``--out``).

    python benchmarks/bench_nerf.py --file PATH.npz --minutes 0.1 --eval-every 3 --eval-views 1 --size2 0   # smoke
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from _clock import CLOCKS, Timer, add_clock_option, peak_rss_mb, report_env
from genlab.config import from_dict
from genlab.families.nerf import data as scenes
from genlab.families.nerf.metrics import render_split
from genlab.maths.image_quality import psnr, ssim
from genlab.model import get_model_spec
from genlab.training.config import TrainConfig
from genlab.training.loop import Trainer


class BudgetClock:
    """A step hook: training seconds on both clocks (the budget on ``clock``), ``measure()`` every ``every``
    seconds of training and at the end (its time excluded), then the trainer stops. The clock starts after
    the first optimizer step (one-off warm-up is not counted)."""

    def __init__(self, budget_s: float, every_s: float, clock: str, measure, log):
        self.budget, self.every, self.clock, self.measure, self.log = budget_s, every_s, clock, measure, log
        self.spent = {"wall": 0.0, "cpu": 0.0}
        self.mark, self.next, self.curve = None, every_s, []

    def __call__(self, trainer) -> None:
        now = {k: f() for k, f in CLOCKS.items()}
        if self.mark is not None:
            for k in self.spent:
                self.spent[k] += now[k] - self.mark[k]
            done = self.spent[self.clock] >= self.budget
            if self.spent[self.clock] >= self.next or done:
                row = {"step": trainer.state.global_step, "train_wall_s": round(self.spent["wall"], 2),
                       "train_cpu_s": round(self.spent["cpu"], 2), **self.measure()}
                self.curve.append(row)
                self.log(row)
                trainer.model.train()
                self.next += self.every
            if done:
                trainer.request_stop()
        self.mark = {k: f() for k, f in CLOCKS.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--file", help="tiny-NeRF .npz (images, poses, focal, alphas)")
    p.add_argument("--scene-dir", help="NeRF-synthetic scene folder (instead of --file)")
    p.add_argument("--downscale", type=int, default=8, help="with --scene-dir: shrink the 800 px images K times")
    p.add_argument("--holdout", default="90-99")
    p.add_argument("--model", default="nerf-grid", choices=["nerf-grid", "nerf"])
    p.add_argument("--set", nargs="*", default=[], help="model options key=value")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget, minutes on --clock")
    p.add_argument("--batch-size", type=int, default=1024, help="rays per step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (the grids use grid_lr)")
    p.add_argument("--eval-every", type=float, default=120.0, help="seconds of training between evaluations")
    p.add_argument("--eval-views", type=int, default=10, help="held-out views rendered at intermediate evaluations "
                   "(the final one renders all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size2", type=int, default=200, help="also time renders at this size (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_nerf.json")
    add_clock_option(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    env_start = report_env("start", args.clock)

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

    # genlab's one training loop, timed by the hook above (evaluation time excluded)
    clock = BudgetClock(args.minutes * 60, args.eval_every, args.clock, lambda: evaluate("curve", args.eval_views)[0],
                        log=lambda row: print(json.dumps(row), flush=True))
    cfg = TrainConfig(epochs=10**9, max_steps=10**9, batch_size=args.batch_size, lr=args.lr, eval_every=0,
                      log_every=10**9, checkpoint_every=10**9, progress=False, seed=args.seed, device="cpu")
    Trainer(model, train, cfg, out=None, step_hooks=[clock], distributed=False).fit()
    curve = clock.curve
    steps, wall, cpu = curve[-1]["step"], curve[-1]["train_wall_s"], curve[-1]["train_cpu_s"]
    final, r = evaluate("final")
    extra = {}
    if args.size2:
        poses = test.scene.poses[:3]
        timers = {k: Timer(k) for k in CLOCKS}
        with timers["wall"], timers["cpu"]:
            for pose in poses:
                model.render_view(pose, args.size2, args.size2, float(train.info.extras["focal"]) * args.size2 / 100)
        extra[f"render_s_per_view_{args.size2}px"] = timers["wall"].last / len(poses)
        extra[f"render_cpu_s_per_view_{args.size2}px"] = timers["cpu"].last / len(poses)
    record = {"model": args.model, "options": options, "data": args.file or args.scene_dir,
              "holdout": args.holdout, "eval_views": args.eval_views, "clock": args.clock, "budget_minutes": args.minutes,
              "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads, "steps": steps,
              "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1), "final": final, "curve": curve,
              "peak_rss_mb": round(peak_rss_mb(), 1), **extra,
              "psnr_per_view": [round(float(v), 2) for v in psnr(r["pred"], r["target"])],
              "render_cpu_s_per_view_each": [round(v, 3) for v in r["cpu_seconds"]],
              "env_start": env_start, "env_end": report_env("end", args.clock)}
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}, indent=1))


if __name__ == "__main__":
    main()
