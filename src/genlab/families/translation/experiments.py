"""Experiments of the translation family: pre-norm vs post-norm transformers (Xiong et al. 2020).

``prenorm-vs-postnorm``: encoder-decoder translators with {5, 12} layers x {pre, post}-norm x
{warm-up, no warm-up}, each trained with the same optimizer, learning rate and batches, with
gradient clipping off, logging the gradient 2-norm of every encoder and decoder layer at every step.
It draws norm against step per layer for a shallow and a deep model and adds norm vs
layer index at initialization, loss curves, and test BLEU / chrF / NLL per run in ``summary.json``.

Xiong et al. 2020 ("On Layer Normalization in the Transformer Architecture", Theorem 1): at
initialization the gradient of the last layers of a post-norm transformer is large (it does not
shrink with depth) while a pre-norm one's scales like 1/sqrt(L), which is why post-norm needs a
learning-rate warm-up and pre-norm can go without. The warm-up arm ramps the learning rate linearly
over the first ``warmup_steps`` steps and then holds it; the no-warm-up arm holds it from step 1
(schedule ``constant`` in both, so warm-up is the only difference).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from genlab.eval.evaluate import evaluate
from genlab.experiments.common import Both
from genlab.experiments.registry import Check, Context, Experiment, Setting, declare
from genlab.families.translation.figures import plot_norms_vs_layer, read_grad_norms, smooth
from genlab.families.translation.gradnorms import grad_norm_hook
from genlab.training.logger import read_jsonl
from genlab.training.rundir import RunDir
from genlab.viz.figures import pyplot, save_figure

FAMILY = "translation"
DEPTHS = (5, 12)
NORMS = ("post", "pre")
WARMUPS = (True, False)

FULL = {"data": "multi30k", "model": {"d_model": 128, "heads": 4, "mlp_ratio": 2.0, "dropout": 0.1},
        "data_options": {"vocab_size": 4000, "max_tokens": 3000},
        "train": {"max_steps": 1000, "lr": 1e-3, "betas": (0.9, 0.98), "warmup_steps": 300,
                  "batch_size": 256, "eval_every": 0, "log_every": 25},
        "beam": 4}
QUICK = {"data": "synthetic-pairs", "model": {"d_model": 32, "heads": 2, "mlp_ratio": 2.0, "dropout": 0.0},
         "data_options": {"n_train": 2000, "n_val": 20, "n_test": 60, "vocab_size": 300, "max_tokens": 1200,
                          "max_adjectives": 1, "pp_prob": 0.0},
         "train": {"max_steps": 40, "lr": 3e-3, "betas": (0.9, 0.98), "warmup_steps": 15,
                   "batch_size": 128, "eval_every": 0, "log_every": 5},
         "beam": 1}
# prenorm-vs-postnorm-toy: the --quick models trained five times longer (200 steps) on the toy pair: long enough
# for the arms to separate in BLEU, about 75 CPU-seconds in all.
TOY = QUICK | {"data_options": QUICK["data_options"] | {"n_test": 100},
               "train": QUICK["train"] | {"max_steps": 200, "warmup_steps": 50, "log_every": 10}}


def run_name(layers: int, norm: str, warmup: bool) -> str:
    return f"{norm}-L{layers}-{'warmup' if warmup else 'nowarmup'}"


def arm_options(plan: dict, layers: int, norm: str, warmup: bool) -> dict:
    """The training options of one arm: the plan's, with this depth and norm, its warm-up or none,
    a constant schedule and no gradient clipping."""
    train = dict(plan["train"]) | {"warmup_steps": plan["train"]["warmup_steps"] if warmup else 0,
                                   "schedule": "constant", "grad_clip": None, "progress": False}
    return (plan["model"] | {"layers": layers, "norm": norm, "log_grad_norms": False}
            | dict(plan["data_options"]) | train)


def arms(full: dict) -> list[Setting]:
    """Every arm, trained on ``full`` (``QUICK`` with --quick) with the per-layer gradient-norm hook; a
    diverged arm is recorded, not fatal."""
    return [Setting(run_name(layers, norm, warmup), "translator", arm_options(full, layers, norm, warmup),
                    quick=arm_options(QUICK, layers, norm, warmup), data=full["data"], quick_data=QUICK["data"],
                    step_hooks=lambda ctx, s: [grad_norm_hook], may_diverge=True)
            for layers in DEPTHS for norm in NORMS for warmup in WARMUPS]


def read_arm(ctx: Context, layers: int, norm: str, warmup: bool, beam: int) -> dict:
    """One trained (or diverged) arm: its test BLEU / chrF / NLL and its logged gradient norms and losses."""
    name = run_name(layers, norm, warmup)
    folder = RunDir(ctx.folder(name))
    row: dict = {"run": name, "layers": layers, "norm": norm, "warmup": warmup,
                 "train_time_s": round(folder.read_summary().get("train_time_s", 0.0), 2)}
    if name in ctx.runs:
        metrics = evaluate(ctx.runs[name], extras=False, options={"beam": beam})["metrics"]
        row |= {k: round(float(metrics[k]), 4) for k in ("bleu", "chrf", "nll_nats")}
        row |= {"bleu_signature": metrics["bleu_signature"], "diverged": False}
    else:
        row |= {"diverged": True, "error": ctx.diverged[name], "bleu": None, "bleu_signature": None,
                "chrf": None, "nll_nats": None}
    steps, norms, names = read_grad_norms(folder.metrics_jsonl)
    losses = [(r["step"], r["loss"]) for r in read_jsonl(folder.metrics_jsonl) if r.get("split") == "train"]
    row["final_train_loss"] = round(losses[-1][1], 4) if losses and math.isfinite(losses[-1][1]) else None
    if len(steps):
        first = norms[0]
        n_enc = sum(n.startswith("enc") for n in names)
        row["grad_norm_step1"] = {"encoder": [round(float(v), 4) for v in first[:n_enc]],
                                  "decoder": [round(float(v), 4) for v in first[n_enc:]]}
        # Xiong et al.'s prediction in one number: last-layer over first-layer norm of the decoder at step 1
        row["decoder_last_over_first_step1"] = round(float(first[-1] / max(first[n_enc], 1e-12)), 3)
        early = norms[: max(1, len(steps) // 10)]
        row["grad_norm_cv_first_10pct"] = round(float(np.mean(early.std(0) / np.maximum(early.mean(0), 1e-12))), 3)
    return {"row": row, "steps": steps, "norms": norms, "names": names, "losses": losses}


FIGURE_NOTE = Both(full="", quick="--quick: a few dozen steps of a tiny model on the offline toy pair; the step-1 "
                                  "profile by layer is what Xiong et al. predict, later behaviour needs the full run")


def figures(out: Path, results: dict, note: str) -> list[str]:
    plt = pyplot()
    paths = []
    for layers in DEPTHS:   # a shallow (5 layers) and a deep (12 layers) model, with the warm-up arm added
        fig, axes = plt.subplots(2, 4, figsize=(16, 7), dpi=100, squeeze=False)
        for r, norm in enumerate(NORMS):
            for c, warmup in enumerate(WARMUPS):
                res = results[run_name(layers, norm, warmup)]
                for k, part in enumerate(("enc", "dec")):
                    ax = axes[r][2 * c + k]
                    cols = [i for i, n in enumerate(res["names"]) if n.startswith(part)]
                    cmap = plt.get_cmap("viridis")
                    for j, i in enumerate(cols):
                        ax.plot(res["steps"], smooth(res["norms"][:, i], max(1, len(res["steps"]) // 100)), lw=0.9,
                                color=cmap(j / max(1, len(cols) - 1)), label=f"layer {j + 1}")
                    ax.set_yscale("log")
                    ax.grid(alpha=0.3)
                    div = " (diverged)" if res["row"]["diverged"] else ""
                    ax.set_title(f"{norm}-norm, {'warm-up' if warmup else 'no warm-up'}: "
                                 f"{'encoder' if part == 'enc' else 'decoder'}{div}", fontsize=9)
                    ax.set(xlabel="step", ylabel="gradient 2-norm")
                    if r == 0 and c == 0:
                        ax.legend(fontsize=6, ncol=2)
        fig.suptitle(f"Per-layer gradient norms, {layers}-layer encoder and decoder")
        paths.append(save_figure(fig, out / "figures" / f"grad_norms_{layers}_layers.png", note))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), dpi=100)
    for ax, layers in zip(axes, DEPTHS):
        for norm in NORMS:
            res = results[run_name(layers, norm, True)]
            if len(res["steps"]):
                plot_norms_vs_layer(ax, res["steps"], res["norms"], res["names"], [0],
                                    title=f"{layers} layers: gradient norm at step 1", label=f"{norm}-norm, ")
        ax.legend(fontsize=8)
    paths.append(save_figure(fig, out / "figures" / "grad_norms_by_layer_step1.png",
                       "Xiong et al. 2020, Theorem 1: post-norm gradients grow towards the last layers at "
                       "initialization; pre-norm ones stay flat"))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), dpi=100)
    for ax, layers in zip(axes, DEPTHS):
        for norm in NORMS:
            for warmup in WARMUPS:
                res = results[run_name(layers, norm, warmup)]
                if res["losses"]:
                    s, v = zip(*res["losses"])
                    ax.plot(s, v, lw=1.0, ls="-" if warmup else "--",
                            label=f"{norm}-norm, {'warm-up' if warmup else 'no warm-up'}")
        ax.set(xlabel="step", ylabel="training loss (label-smoothed, nats/token)", title=f"{layers} layers")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    paths.append(save_figure(fig, out / "figures" / "loss_curves.png", note))
    return [str(p) for p in paths]


def findings(rows: list[dict]) -> dict:
    """What the measurements show, stated from the numbers."""
    by = {r["run"]: r for r in rows}
    out = {}
    for layers in DEPTHS:
        post, pre = by[run_name(layers, "post", True)], by[run_name(layers, "pre", True)]
        if "decoder_last_over_first_step1" in post and "decoder_last_over_first_step1" in pre:
            out[f"L{layers}_step1_decoder_last_over_first"] = {"post": post["decoder_last_over_first_step1"],
                                                              "pre": pre["decoder_last_over_first_step1"]}
        for warmup in WARMUPS:
            a, b = by[run_name(layers, "post", warmup)], by[run_name(layers, "pre", warmup)]
            key = f"L{layers}_{'warmup' if warmup else 'nowarmup'}_bleu_post_vs_pre"
            out[key] = {"post": a["bleu"], "pre": b["bleu"], "post_diverged": a["diverged"]}
    return out


def analyze_prenorm_vs_postnorm(ctx: Context, plan: Both) -> dict:
    p = plan(ctx)
    results = {run_name(layers, norm, warmup): read_arm(ctx, layers, norm, warmup, p["beam"])
               for layers in DEPTHS for norm in NORMS for warmup in WARMUPS}
    rows = [r["row"] for r in results.values()]
    return {"data": p["data"], "model": p["model"], "train": {k: v for k, v in p["train"].items()},
            "beam": p["beam"], "table": rows, "findings": findings(rows),
            "figures": figures(ctx.out, results, FIGURE_NOTE(ctx))}


def check_step1_profile(s: dict) -> Check:
    """Xiong et al. 2020, Thm. 1 at step 1: the post-norm decoder's last layer gets larger gradients than its
    first (ratio > 1.5), the pre-norm one's do not grow (ratio < 1.5), at every depth."""
    f = s["findings"]
    ratios = {k.split("_")[0]: f[k] for k in f if k.endswith("_step1_decoder_last_over_first")}
    return Check(bool(ratios) and all(r["post"] > 1.5 > r["pre"] for r in ratios.values()),
                 "decoder last/first-layer gradient norm at step 1: " + ", ".join(
                     f"{k[1:]} layers post-norm {r['post']}, pre-norm {r['pre']}" for k, r in ratios.items()),
                 "post-norm > 1.5 > pre-norm at every depth")


def check_deep_bleu(s: dict) -> Check:
    """The step-1 profile, and at 12 layers pre-norm translating better than post-norm with and without warm-up."""
    profile = check_step1_profile(s)
    f = s["findings"]
    bleu = {w: f[f"L12_{w}_bleu_post_vs_pre"] for w in ("warmup", "nowarmup")}
    better = all(b["pre"] > b["post"] + 1 for b in bleu.values())
    return Check(profile.holds and better, profile.measured + "; 12-layer BLEU " + ", ".join(
        f"{w}: post-norm {b['post']}, pre-norm {b['pre']}" for w, b in bleu.items()),
        profile.expected + "; pre-norm BLEU > post-norm's + 1 at 12 layers, with and without warm-up")


PROFILE = {"L5_step1_decoder_last_over_first": {"post": 3.6, "pre": 0.82},
           "L12_step1_decoder_last_over_first": {"post": 25.0, "pre": 0.43}}
BLEU = {"L12_warmup_bleu_post_vs_pre": {"post": 0.0, "pre": 21.2},
        "L12_nowarmup_bleu_post_vs_pre": {"post": 1.7, "pre": 8.4}}


declare(Experiment(
    name="prenorm-vs-postnorm", family=FAMILY,
    description="pre-norm vs post-norm translators, {5,12} layers x {warm-up, none}: per-layer gradient "
                "norms, loss curves, BLEU (Xiong et al. 2020)",
    runs=arms(FULL), analyze=lambda ctx: analyze_prenorm_vs_postnorm(ctx, Both(full=FULL, quick=QUICK)),
    data="multi30k", quick_data="synthetic-pairs", one_thread_quick=True,
    quick_note="8 runs of 40 steps with a 32-wide model on the offline toy pair: shows the step-1 gradient "
               "profile by layer and the first steps; BLEU after 40 steps is not the converged comparison",
    claim="at initialization a post-norm transformer's gradients grow towards its last layers while a pre-norm "
          "one's stay flat, which is why post-norm needs a learning-rate warm-up (Xiong et al. 2020, Thm. 1; "
          "MVA assignment, Question 22)",
    check=check_step1_profile,
    examples=({"findings": PROFILE},
              {"findings": PROFILE | {"L12_step1_decoder_last_over_first": {"post": 1.0, "pre": 1.0}}})))

declare(Experiment(
    name="prenorm-vs-postnorm-toy", family=FAMILY,
    description="prenorm-vs-postnorm on the offline toy pair, 200 steps per arm (about 75 CPU-seconds)",
    runs=arms(TOY), analyze=lambda ctx: analyze_prenorm_vs_postnorm(ctx, Both(full=TOY, quick=QUICK)),
    data="synthetic-pairs", quick_data="synthetic-pairs", one_thread=True,
    quick_note="the same 40-step runs as prenorm-vs-postnorm --quick",
    claim="post-norm gradients grow towards the last layers at initialization and pre-norm ones stay flat; at 12 "
          "layers the pre-norm translator learns better than the post-norm one, with or without warm-up "
          "(Xiong et al. 2020; MVA assignment, Question 22)",
    check=check_deep_bleu,
    quick_cannot="40 steps per arm train no translator yet (BLEU near 0 for all): "
                 "`genlab experiment run prenorm-vs-postnorm-toy` (200 steps per arm, about 75 CPU-seconds)",
    examples=({"findings": PROFILE | BLEU},
              {"findings": PROFILE | BLEU | {"L12_nowarmup_bleu_post_vs_pre": {"post": 9.0, "pre": 8.4}}})))
