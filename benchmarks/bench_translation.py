"""Translation benchmark (results in BENCHMARKS.md, "## Translation"): Multi30k test2016 en->de BLEU
against wall time of training on this machine, with genlab's translator and training loop.

Training runs for ``--minutes`` of training time; every ``--eval-minutes`` the clock stops, the
validation split (1,014 sentences) is translated greedily and scored with sacrebleu against the raw
references (val BLEU vs minutes); the test split (test2016, 1,000 sentences) is translated once, at the
end, with beam search (``--beam``, length penalty ``--alpha``) for the final BLEU and chrF. Also reported: training tokens/s (source + target
subwords, padding excluded) and beam-search sentences/s. The reference point (issue 13): a public
PyTorch transformer reports 30.6 BLEU after 12 epochs and 32.8 after 21 on a GPU; the target is
>= 30 BLEU within 60 minutes of training on 2 CPU cores.

Example (the long measurement; the machine should be otherwise idle):
    python benchmarks/bench_translation.py --data-dir DIR --minutes 60 --out runs/bench-translation
A smoke test of the script: --minutes 0.5 --eval-minutes 0.25 --limit-test 50
Times (the budget, tokens/s, sentences/s) are on ``--clock`` (default the process CPU time); the load average
at start and end (stderr) and the peak resident memory are printed and stored.
Prints one JSON object and writes it to OUT/results.json (the curve also to OUT/curve.json and
OUT/bleu_vs_minutes.png).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import genlab
from _clock import Timer, add_clock_option, peak_rss_mb, report_env
from genlab.data import load_dataset
from genlab.families.translation import bleu, chrf
from genlab.training.rundir import write_json_atomic
from genlab.viz.figures import line_plot

RECIPE = {   # model, data and training options of the measured recipe
    "model": {"d_model": 256, "heads": 4, "layers": 3, "mlp_ratio": 4.0, "dropout": 0.1, "norm": "pre",
              "label_smoothing": 0.1, "tie_embeddings": True, "log_grad_norms": False},
    "data": {"vocab_size": 8000, "max_tokens": 6000},
    "train": {"lr": 1e-3, "betas": (0.9, 0.98), "schedule": "inverse-sqrt", "warmup_steps": 800,
              "batch_size": 512, "eval_every": 0, "log_every": 50, "epochs": 10_000},
}


class Clock:
    """A step hook: pauses the training clock to score the validation split every ``every`` seconds, and
    stops training after ``budget`` seconds of training time (by capping ``max_steps``). The clock
    starts at the first step (``on_event("start")``), after data loading and tokenizer training."""

    def __init__(self, budget_s: float, every_s: float, val_src, val_ref, out: Path, clock: str):
        self.budget, self.every, self.src, self.ref, self.out = budget_s, every_s, val_src, val_ref, out
        self.now = Timer(clock).now
        self.start = self.now()
        self.paused = 0.0
        self.next = every_s
        self.curve: list[dict] = []
        self.steps_per_epoch = 1

    def on_event(self, trainer, event: str) -> None:
        if event == "start":
            self.start, self.paused = self.now(), 0.0

    def train_seconds(self) -> float:
        return self.now() - self.start - self.paused

    def score(self, model, step: int) -> None:
        t0 = self.now()
        hyps = model.translate(self.src, beam=1)
        score, signature = bleu(hyps, self.ref)
        row = {"train_minutes": round(self.train_seconds() / 60, 3), "step": step,
               "epoch": round(step / self.steps_per_epoch, 3), "val_bleu_greedy": round(score, 2),
               "bleu_signature": signature, "decode_s": round(self.now() - t0, 1)}
        self.curve.append(row)
        print(json.dumps(row), flush=True)
        write_json_atomic(self.out / "curve.json", self.curve)
        model.train()
        self.paused += self.now() - t0

    def __call__(self, trainer) -> None:
        self.steps_per_epoch = trainer.steps_per_epoch
        if self.train_seconds() >= self.next:
            self.score(trainer.eval_model, trainer.state.global_step)
            self.next += self.every
        if self.train_seconds() >= self.budget:
            trainer.cfg.max_steps = trainer.state.global_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None, help="folder with multi30k/ (else $GENLAB_DATA, else download)")
    ap.add_argument("--minutes", type=float, default=60.0, help="training time budget (evaluation excluded)")
    ap.add_argument("--eval-minutes", type=float, default=5.0, help="score val BLEU (greedy) this often")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=0.6, help="GNMT length penalty")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit-test", type=int, default=None, help="score only the first N val and test sentences (smoke test)")
    ap.add_argument("--limit-train", type=int, default=None, help="train on the first N pairs (smoke test)")
    ap.add_argument("--out", default="runs/bench-translation")
    add_clock_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    env_start = report_env("start", args.clock)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_options = dict(RECIPE["data"]) | {"data_dir": args.data_dir}
    split = {s: load_dataset("multi30k", s, **data_options) for s in ("val", "test")}
    (val_src, val_ref), (src, ref) = ((d.extras["src_text"][: args.limit_test], d.extras["tgt_text"][: args.limit_test])
                                      for d in (split["val"], split["test"]))
    clock = Clock(args.minutes * 60, args.eval_minutes * 60, val_src, val_ref, out, args.clock)
    if args.limit_train:
        data_options["limit"] = args.limit_train
    run = genlab.train("translator", "multi30k", out / "run", overwrite=True, report=False,
                       step_hooks=[clock], callbacks=[clock.on_event],
                       model_options=RECIPE["model"], data_options=data_options,
                       train_options=RECIPE["train"] | {"device": args.device, "progress": False})
    train_s = clock.train_seconds()
    steps = run.state.global_step
    if not clock.curve or clock.curve[-1]["step"] != steps:
        clock.score(run.model, steps)
    train_data = load_dataset("multi30k", "train", **data_options)
    tokens_per_epoch = sum(len(s) + len(t) - 1 for s, t in zip(train_data.src, train_data.tgt))   # real subwords
    timer = Timer(args.clock)
    with timer:
        hyps = run.model.translate(src, beam=args.beam, alpha=args.alpha)
    beam_s = timer.last
    score, signature = bleu(hyps, ref)
    result = {
        "benchmark": "multi30k test2016 en-de", "recipe": RECIPE, "threads": args.threads, "clock": args.clock,
        "device": args.device, "train_minutes": round(train_s / 60, 2), "steps": steps,
        "epochs": round(steps / clock.steps_per_epoch, 2),
        "train_tokens_per_s": round(tokens_per_epoch * steps / clock.steps_per_epoch / train_s, 1),
        "test_bleu": round(score, 2), "test_chrf": round(chrf(hyps, ref)[0], 2), "bleu_signature": signature,
        "beam": args.beam, "alpha": args.alpha, "beam_sentences_per_s": round(len(src) / beam_s, 2),
        "curve": clock.curve, "target_bleu": 30.0,
        # the clock stops at the first step past the budget, so train_s overshoots it by at most one step
        "target_met": score >= 30.0 and args.minutes <= 60,
        "val_greedy_minutes_to_30": next((r["train_minutes"] for r in clock.curve if r["val_bleu_greedy"] >= 30), None),
        "examples": [{"src": s, "ref": r, "hyp": h} for s, r, h in list(zip(src, ref, hyps))[:5]],
        "peak_rss_mb": round(peak_rss_mb(), 1), "env_start": env_start, "env_end": report_env("end", args.clock),
    }
    write_json_atomic(out / "results.json", result)
    line_plot({"val BLEU (greedy)": ([r["train_minutes"] for r in clock.curve],
                                     [r["val_bleu_greedy"] for r in clock.curve])},
              out / "bleu_vs_minutes.png", title="Multi30k en-de: val (curve), test2016 (final)",
              xlabel="training minutes",
              ylabel="BLEU", hlines={"reference, 12 epochs (30.6)": 30.6, "reference, 21 epochs (32.8)": 32.8},
              integer_x=False, note=f"final beam-{args.beam} test BLEU {score:.2f} after {train_s / 60:.1f} min")
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
