"""Experiments of the language-model family (Vaswani et al. 2017; Radford et al. 2018).

* ``rnn-vs-transformer``: measured training time per sequence and generation time against the
  sequence length n, for a GPT (with and without KV cache) and an LSTM, on log-log axes with fitted slopes.
* ``attention-anatomy``: attention maps of a trained GPT; without positions the model cannot
  tell order (its next-token distribution is invariant to shuffling the prefix; a block without causal
  mask is permutation-equivariant); the LayerNorm worked example x1 = [2, 1] -> [1, -1].
* ``gpt-shakespeare``: genlab's fast CPU recipe on Tiny Shakespeare: training curve, samples at several
  temperatures, bits per character on the test split.
"""
from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch

from genlab.config import from_dict
from genlab.eval.evaluate import evaluate
from genlab.experiments.common import Both, single_thread
from genlab.experiments.registry import Check, Context, Experiment, Setting, declare
from genlab.families.lm.figures import attention_grid, loglog_costs
from genlab.families.lm.gpt import GPT, GPTConfig
from genlab.families.lm.rnn import RNNLM, RNNLMConfig
from genlab.families.lm.sampling import token_nll
from genlab.nn.norms import layer_norm
from genlab.nn.positions import sinusoidal_table
from genlab.nn.transformer import BlockConfig, EncoderBlock
from genlab.training.logger import read_jsonl
from genlab.viz.figures import line_panels, line_plot

FAMILY = "lm"

# nanoGPT's CPU recipe for Shakespeare characters (its README), as genlab options: the benchmark's reference.
REFERENCE_RECIPE = dict(
    n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False, positions="learned",
    batch_size=12, lr=1e-3, optimizer="adamw", betas=(0.9, 0.99), weight_decay=0.1, grad_clip=1.0,
    schedule="warmup-cosine", warmup_steps=100, min_lr_ratio=0.1, max_steps=2000)

# genlab's fastest CPU recipe found (benchmarks/bench_gpt.py measures it against the reference; BENCHMARKS.md):
# Muon for the weight matrices (Jordan et al. 2024), a higher lr with a short warm-up, rotary positions,
# QK-norm, ReLU^2, RMSNorm, zero-initialized residual projections, batch 32, bf16 autocast.
FAST_RECIPE = dict(
    n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False, positions="rotary",
    activation="relu2", qk_norm=True, zero_init=True, norm_type="rmsnorm",
    batch_size=32, lr=6e-3, optimizer="muon", betas=(0.9, 0.99), weight_decay=0.1, grad_clip=1.0,
    schedule="warmup-cosine", warmup_steps=50, min_lr_ratio=0.05, autocast="bf16", max_steps=2000)


# ------------------------------------------------------------------ rnn-vs-transformer
def _median_time(fn, repeats: int) -> float:
    fn()                                                     # warm-up (allocations, kernel choice)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _train_step(model, x: torch.Tensor, V: int) -> None:
    """One forward + backward of next-token prediction on x [B, n] (the targets' shift is irrelevant to cost)."""
    model.zero_grad(set_to_none=True)
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out                          # RNNLM returns (logits, state)
    torch.nn.functional.cross_entropy(logits.reshape(-1, V), x.reshape(-1)).backward()   # [B, n, V] -> [B*n, V]


def measure_costs(lengths: list[int], width: int = 128, batch: int = 8, repeats: int = 3, seed: int = 0) -> dict:
    """Training time per sequence (forward + backward) and generation time of n tokens, against n."""
    torch.manual_seed(seed)
    V = 65
    gpt = GPT(from_dict(GPTConfig, dict(n_layer=2, n_head=4, n_embd=width, block_size=max(lengths) + 1)), V)
    rnn = RNNLM(from_dict(RNNLMConfig, dict(cell="lstm", n_layer=2, n_embd=width, hidden=width)), V)
    params = {"gpt": sum(p.numel() for p in gpt.parameters()), "lstm": sum(p.numel() for p in rnn.parameters())}
    rows = []
    for n in lengths:
        x = torch.randint(0, V, (batch, n))
        prompt = torch.randint(0, V, (1, 1))
        row = {"n": n,
               "train_s_per_seq_gpt": _median_time(partial(_train_step, gpt, x, V), repeats) / batch,
               "train_s_per_seq_lstm": _median_time(partial(_train_step, rnn, x, V), repeats) / batch}
        with torch.no_grad():
            gen = {"gpt_cache": partial(gpt.generate, prompt, n, temperature=0),
                   "gpt_no_cache": partial(gpt.generate, prompt, n, temperature=0, use_cache=False),
                   "lstm": partial(rnn.generate, prompt, n, temperature=0)}
            for name, fn in gen.items():
                row[f"generate_s_{name}"] = _median_time(fn, 1 if n > 256 else repeats)
                row[f"s_per_token_{name}"] = row[f"generate_s_{name}"] / n
        rows.append(row)
    return {"params": params, "rows": rows}


def _cheaper(rows: list[dict], a: str, b: str, label_a: str, label_b: str) -> str:
    wins = [(r["n"], label_a if r[a] < r[b] else label_b) for r in rows]
    parts, start = [], 0
    for i in range(1, len(wins) + 1):
        if i == len(wins) or wins[i][1] != wins[start][1]:
            lo, hi = wins[start][0], wins[i - 1][0]
            parts.append(f"{wins[start][1]} for n={lo}" + (f"..{hi}" if hi != lo else ""))
            start = i
    return "; ".join(parts)


LENGTHS = Both(full=[16, 32, 64, 128, 256, 512, 1024], quick=[16, 32, 64, 128, 256])
REPEATS = Both(full=3, quick=2)


def rnn_vs_transformer(ctx: Context) -> dict:
    out = ctx.out
    with single_thread():
        m = measure_costs(LENGTHS(ctx), repeats=REPEATS(ctx))
    rows, ns = m["rows"], [r["n"] for r in m["rows"]]
    train = {"GPT": (ns, [r["train_s_per_seq_gpt"] for r in rows]),
             "LSTM": (ns, [r["train_s_per_seq_lstm"] for r in rows])}
    gen = {"GPT + KV cache": (ns, [r["generate_s_gpt_cache"] for r in rows]),
           "GPT, no cache": (ns, [r["generate_s_gpt_no_cache"] for r in rows]),
           "LSTM": (ns, [r["generate_s_lstm"] for r in rows])}
    figs, half = out / "figures", len(ns) // 2                 # slopes of the larger half: the asymptotic regime
    train_slopes = loglog_costs(train, figs / "training_cost.png", "training: forward + backward per sequence",
                                "seconds per sequence", half)
    gen_slopes = loglog_costs(gen, figs / "generation_cost.png", "generating n tokens (total)", "seconds", half)
    per_token = {k: (x, [t / n for n, t in zip(x, y)]) for k, (x, y) in gen.items()}
    line_plot(per_token, figs / "generation_per_token.png", "generation: time per token", "n (tokens generated)",
              "seconds per token", logx=True, logy=True)
    return {
        "lengths": ns, "params": m["params"], "rows": rows,
        "slopes_training_per_sequence": train_slopes, "slopes_generation_total": gen_slopes,
        "theory": "training: RNN O(n) sequential steps, transformer O(n^2) attention work in parallel; "
                  "generating n tokens: RNN O(n), transformer with KV cache O(n^2), without cache O(n^3) "
                  "attention work (O(n^2) for the MLPs)",
        "cheaper_training": _cheaper(rows, "train_s_per_seq_gpt", "train_s_per_seq_lstm", "GPT", "LSTM"),
        "cheaper_generation": _cheaper(rows, "generate_s_gpt_cache", "generate_s_lstm", "GPT + KV cache", "LSTM"),
        "kv_cache_speedup_at_max_n": rows[-1]["generate_s_gpt_no_cache"] / rows[-1]["generate_s_gpt_cache"],
        "conditions": "one CPU thread, batch 8 for training, one sequence for generation, untrained models of "
                      "similar size (see params); median of repeats. On one thread the transformer's parallelism "
                      "over positions buys nothing, so the measured training cost compares work, not latency; "
                      "close rows can swap order between runs",
    }


def check_costs(s: dict) -> Check:
    g = s["slopes_generation_total"]
    lstm, cache, nocache = g["LSTM"], g["GPT + KV cache"], g["GPT, no cache"]
    return Check(0.8 <= lstm <= 1.2 and nocache >= lstm + 0.7 and nocache > cache,
                 f"log-log slopes of generation time: LSTM {lstm:.2f}, GPT with KV cache {cache:.2f}, "
                 f"without {nocache:.2f}",
                 "LSTM 0.8-1.2 (linear), GPT without cache >= LSTM + 0.7 and above GPT with the cache")


declare(Experiment("rnn-vs-transformer", FAMILY, "training time per sequence and generation time vs sequence "
                   "length: GPT with/without KV cache vs LSTM, log-log slopes (Vaswani et al. 2017, Table 1)",
                   analyze=rnn_vs_transformer,
                   claim="generating n tokens costs an RNN O(n) and a transformer more: superlinear without a KV "
                         "cache (midterm Problem 1a; Vaswani et al. 2017, Table 1)",
                   check=check_costs,
                   quick_cannot="generating at most 256 tokens on a shared CPU is dominated by per-call overhead "
                                "and load (two quick runs measured LSTM slopes 0.25 and 1.66): "
                                "`genlab experiment run rnn-vs-transformer` (lengths up to 1024)",
                   examples=({"slopes_generation_total": {"LSTM": 0.99, "GPT + KV cache": 1.18,
                                                          "GPT, no cache": 2.24}},
                             {"slopes_generation_total": {"LSTM": 0.25, "GPT + KV cache": 0.77,
                                                          "GPT, no cache": 1.27}})))


# ------------------------------------------------------------------ attention-anatomy
def prefix_shuffle_gap(logits_fn, tokens: torch.Tensor, n: int = 64, T: int = 32, seed: int = 0) -> float:
    """Mean over ``n`` windows of max_v |log p(v | x_<T) - log p(v | shuffled x_<T)| (the last input token
    kept in place). Exactly 0 for a one-block causal model without positions (its last position attends
    to the *set* of earlier tokens); deeper causal models can recover order from the mask itself
    (Haviv et al. 2022), and positions make it large."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(tokens) - T - 1, (n,), generator=g)
    x = tokens[starts[:, None] + torch.arange(T)]                                # [n, T]
    perm = torch.randperm(T - 1, generator=g)
    xs = torch.cat([x[:, :-1][:, perm], x[:, -1:]], dim=1)                       # shuffle all but the last token
    with torch.no_grad():
        a = torch.log_softmax(logits_fn(x)[:, -1].double(), -1)
        b = torch.log_softmax(logits_fn(xs)[:, -1].double(), -1)
    return float((a - b).abs().max(-1).values.mean())


def random_gpt(n_layer: int, positions: str, vocab: int, seed: int = 0) -> GPT:
    """An untrained GPT with weights large enough (std 0.3) that its outputs depend visibly on the input."""
    torch.manual_seed(seed)
    cfg = from_dict(GPTConfig, dict(n_layer=n_layer, n_head=4, n_embd=32, block_size=64, positions=positions,
                                    init_std=0.3))
    return GPT(cfg, vocab).double().eval()


def block_equivariance_gap(positions: bool, dim: int = 32, T: int = 10, seed: int = 0) -> float:
    """max |f(P x) - P f(x)| for a bidirectional block f with or without sinusoidal positions added."""
    torch.manual_seed(seed)
    blk = EncoderBlock(BlockConfig(dim, 4)).double().eval()
    x = torch.randn(2, T, dim, dtype=torch.float64)
    pe = sinusoidal_table(T, dim).double() if positions else torch.zeros(T, dim, dtype=torch.float64)
    perm = torch.randperm(T)
    with torch.no_grad():
        return float((blk(x[:, perm] + pe) - blk(x + pe)[:, perm]).abs().max())


def layernorm_example() -> dict:
    """LayerNorm by hand: x1 = [2, 1] -> mu 1.5, sigma 0.5 -> [1, -1]; any distinct pair goes to +-[1, -1]."""
    x1 = torch.tensor([2.0, 1.0])
    others = torch.tensor([[1.0, 3.0], [0.5, -2.0], [7.0, 6.0]])
    return {"x1": x1.tolist(), "x1_normalized": layer_norm(x1, eps=0.0).tolist(),
            "others": others.tolist(), "others_normalized": layer_norm(others, eps=0.0).tolist()}


ANATOMY_MODEL = dict(n_layer=2, n_head=4, n_embd=64, block_size=64, lr=3e-3, batch_size=32,
                     schedule="warmup-cosine", warmup_steps=50, eval_every=0)


def analyze_anatomy(ctx) -> dict:
    pos, nopos = ctx.runs["positions"], ctx.runs["no-positions"]
    test_tokens = pos.data("test").tokens
    maps_model = pos.model.eval()
    T = 32
    idx = test_tokens[:T][None]
    maps = maps_model.attention_maps(idx)
    labels = [maps_model.tokenizer.decode([int(t)]) for t in idx[0]]
    attention_grid(maps, labels, ctx.figures / "attention_maps.png",
                   "attention weights of a trained GPT (rows: queries, columns: keys)")
    nll = {name: evaluate(run, split="test", extras=False)["metrics"]["nll_nats"] for name, run in ctx.runs.items()}
    V = pos.model.net.vocab_size
    return {
        "test_nll_nats": nll,
        "prefix_shuffle_gap": {
            "trained, learned positions": prefix_shuffle_gap(pos.model.eval().logits, test_tokens),
            "trained, no positions (2 blocks)": prefix_shuffle_gap(nopos.model.eval().logits, test_tokens),
            "untrained, no positions, 1 block": prefix_shuffle_gap(random_gpt(1, "none", V), test_tokens),
            "untrained, no positions, 2 blocks": prefix_shuffle_gap(random_gpt(2, "none", V), test_tokens),
            "untrained, learned positions, 1 block": prefix_shuffle_gap(random_gpt(1, "learned", V), test_tokens)},
        "block_equivariance_gap": {"no positions": block_equivariance_gap(False),
                                   "sinusoidal positions": block_equivariance_gap(True)},
        "layernorm_example": layernorm_example(),
        "explanation": "self-attention treats its input as a set: without positions a bidirectional block is "
                       "permutation-equivariant (gap ~1e-16) and a one-block causal model's next-token "
                       "distribution ignores the order of the prefix (gap ~1e-16); stacked causal blocks recover "
                       "some order from the mask alone (Haviv et al. 2022), yet the model without positions "
                       "reaches a worse test NLL than the one with them",
    }


def check_anatomy(s: dict) -> Check:
    eq, gap, nll = s["block_equivariance_gap"], s["prefix_shuffle_gap"], s["test_nll_nats"]
    ln = s["layernorm_example"]["x1_normalized"]
    holds = (eq["no positions"] < 1e-10 < 1e-3 < eq["sinusoidal positions"]
             and gap["untrained, no positions, 1 block"] < 1e-10 and nll["positions"] < nll["no-positions"]
             and max(abs(a - b) for a, b in zip(ln, (1.0, -1.0))) < 1e-6)
    return Check(holds, f"equivariance gap {eq['no positions']:.2g} without positions, "
                        f"{eq['sinusoidal positions']:.2g} with; one-block shuffle gap "
                        f"{gap['untrained, no positions, 1 block']:.2g}; test NLL {nll['positions']:.3f} with "
                        f"positions, {nll['no-positions']:.3f} without; LayerNorm([2, 1]) = {ln}",
                 "gaps < 1e-10 without positions, > 1e-3 with; lower NLL with positions; LayerNorm([2, 1]) = [1, -1]")


ANATOMY_EXAMPLE = {"block_equivariance_gap": {"no positions": 1e-16, "sinusoidal positions": 0.5},
                   "prefix_shuffle_gap": {"untrained, no positions, 1 block": 1e-16},
                   "test_nll_nats": {"positions": 0.58, "no-positions": 0.66},
                   "layernorm_example": {"x1_normalized": [1.0, -1.0]}}


declare(Experiment(
    name="attention-anatomy", family=FAMILY,
    description="attention maps of a trained GPT; without positions order is invisible; the LayerNorm "
                "worked example (Vaswani et al. 2017; Ba et al. 2016)",
    runs=[Setting("positions", "gpt", ANATOMY_MODEL | {"positions": "learned", "max_steps": 1500},
                  quick={"max_steps": 200}),
          Setting("no-positions", "gpt", ANATOMY_MODEL | {"positions": "none", "max_steps": 1500},
                  quick={"max_steps": 250})],
    data="synthetic-text", quick_data="synthetic-text", analyze=analyze_anatomy, one_thread_quick=True,
    quick_note="200 steps per model: the attention maps are still rough; the shuffle gaps and the NLL gap "
               "already show",
    claim="self-attention sees a set: without positions a block is permutation-equivariant and a one-block causal "
          "model ignores the prefix's order, so positions lower the test NLL; LayerNorm maps [2, 1] to [1, -1] "
          "(midterm Problems 1b, 1d; Vaswani et al. 2017; Ba et al. 2016)",
    check=check_anatomy,
    examples=(ANATOMY_EXAMPLE, ANATOMY_EXAMPLE | {"test_nll_nats": {"positions": 0.7, "no-positions": 0.66}})))


# ------------------------------------------------------------------ gpt-shakespeare
SAMPLE_CHARS = Both(full=300, quick=120)         # characters generated per temperature


def analyze_shakespeare(ctx) -> dict:
    run = ctx.runs["gpt"]
    rows = read_jsonl(run.dir / "metrics.jsonl")
    train_rows = [r for r in rows if r.get("split") == "train"]
    val_rows = [r for r in rows if r.get("split") == "val"]
    series = {"train": ([r["step"] for r in train_rows], [r["loss"] for r in train_rows])}
    if val_rows:
        series["val"] = ([r["step"] for r in val_rows], [r["val/nll_nats"] for r in val_rows])
    line_plot(series, ctx.figures / "training_curves.png", "GPT on characters", "step", "nats per token")
    prompt = "ROMEO:" if run.data_name == "tinyshakespeare" else "Romeo"
    samples = {}
    for t in (0.5, 0.8, 1.0):
        samples[str(t)] = run.model.eval().generate_text(prompt, SAMPLE_CHARS(ctx), temperature=t, seed=0)
    (ctx.out / "samples.txt").write_text("\n\n".join(f"--- temperature {t} ---\n{s}" for t, s in samples.items()))
    metrics = evaluate(run, split="test")["metrics"]
    bits = metrics["bits_per_token"] * (1 / metrics.get("chars_per_token", 1.0))
    return {"data": run.data_name, "test_nll_nats": metrics["nll_nats"], "test_bits_per_char": bits,
            "samples": samples, **({"data_nll_nats": metrics["data_nll_nats"]} if "data_nll_nats" in metrics else {})}


SHAKESPEARE_NATS = 1.6       # nats/char: the fast recipe measured 1.485 after 600 s (BENCHMARKS.md)


def check_shakespeare(s: dict) -> Check:
    nll = s["test_nll_nats"]
    if "data_nll_nats" in s:     # a corpus whose entropy rate is known: the model should come close to it
        return Check(nll <= s["data_nll_nats"] + 0.15, f"test {nll:.3f} nats/token on {s['data']}, entropy rate "
                     f"{s['data_nll_nats']:.3f}", "within 0.15 nats of the entropy rate")
    return Check(s["data"] == "tinyshakespeare" and nll <= SHAKESPEARE_NATS,
                 f"test {nll:.3f} nats/char on {s['data']}", f"<= {SHAKESPEARE_NATS} nats/char on Tiny Shakespeare")


def _gpt_shakespeare_options() -> dict:
    return FAST_RECIPE | {"eval_steps": 250, "val_batches": 8, "eval_every": 0, "log_every": 25}


declare(Experiment(
    name="gpt-shakespeare", family=FAMILY,
    description="genlab's fast CPU GPT recipe on Tiny Shakespeare: curve, samples at temperatures 0.5/0.8/1.0, "
                "test bits per character",
    runs=[Setting("gpt", "gpt", _gpt_shakespeare_options(),
                  quick={"max_steps": 300, "n_layer": 2, "n_embd": 64, "eval_steps": 100})],
    data="tinyshakespeare", quick_data="synthetic-text", analyze=analyze_shakespeare, one_thread_quick=True,
    quick_note="300 steps of a 2-layer model on the offline synthetic corpus; the full run trains on Shakespeare",
    claim="a causal transformer trained by next-token prediction on teacher-forced, shifted targets learns the "
          "text's next-character distribution (Homework 2, Problem 3a-b; Radford et al. 2019)",
    check=check_shakespeare,
    examples=({"data": "tinyshakespeare", "test_nll_nats": 1.49}, {"data": "tinyshakespeare", "test_nll_nats": 2.5})))


# ------------------------------------------------------------------ teacher-forcing-vs-free-running
def bigram_reference(tokens: torch.Tensor, vocab: int, alpha: float = 0.5) -> torch.Tensor:
    """log R(b | a) [V, V] of an add-``alpha`` bigram model counted on ``tokens`` [N] (additive smoothing,
    Chen & Goodman 1999): R(b | a) = (c(a, b) + alpha) / (c(a) + alpha V). A reference that knows nothing of
    the trained model, to score true and generated text alike."""
    counts = torch.zeros(vocab, vocab, dtype=torch.float64)
    counts.index_put_((tokens[:-1], tokens[1:]), torch.ones(len(tokens) - 1, dtype=torch.float64), accumulate=True)
    return torch.log((counts + alpha) / (counts.sum(1, keepdim=True) + alpha * vocab))


def rollout_scores(model, tokens: torch.Tensor, ref: torch.Tensor, n: int, prompt: int, length: int,
                   temperature: float = 1.0, seed: int = 0) -> dict:
    """Scores of ``n`` true continuations of held-out text and of ``n`` free-running ones, per position.

    Windows x = (``prompt`` tokens, ``length`` continuation tokens) [n, prompt + length] are drawn from
    ``tokens``; the model continues each prompt with its own samples y (temperature ``temperature``).
    Per continuation position k (nats, means over the n windows): ``teacher_forced`` -log p(x_k | true x_<k),
    the training loss (Williams & Zipser 1989); ``self_scored`` -log p(y_k | own y_<k), how the model rates
    its own samples; ``ref_true`` and ``ref_free`` -log R(. | previous token) of the true and the generated
    tokens under the bigram ``ref``. ``gap_per_window`` [n]: each window's mean of ref_free - ref_true."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(tokens) - prompt - length, (n,), generator=g)
    x = tokens[starts[:, None] + torch.arange(prompt + length)]                   # [n, prompt + length]
    with torch.no_grad():
        y = model.generate(x[:, :prompt], length, temperature=temperature, generator=g)   # [n, prompt + length]
        tf = token_nll(model(x[:, :-1]), x[:, 1:])[:, prompt - 1:]                # [n, length]
        own = token_nll(model(y[:, :-1]), y[:, 1:])[:, prompt - 1:]               # [n, length]
    ref_true = -ref[x[:, prompt - 1:-1], x[:, prompt:]]                          # [n, length]
    ref_free = -ref[y[:, prompt - 1:-1], y[:, prompt:]]                          # [n, length]
    means = {name: v.double().mean(0).tolist() for name, v in
             (("teacher_forced", tf), ("self_scored", own), ("ref_true", ref_true), ("ref_free", ref_free))}
    return means | {"gap_per_window": (ref_free - ref_true).mean(1).tolist(), "first_sample": y[0].tolist()}


def binned(values: list[float], width: int) -> tuple[list[float], list[float]]:
    """Means of consecutive bins of ``width`` positions (1-based centres): a readable curve of a noisy one."""
    v = np.asarray(values)[: len(values) // width * width].reshape(-1, width)    # [L] -> [L / width, width]
    return ((np.arange(len(v)) * width + (width + 1) / 2).tolist(), v.mean(1).tolist())


ROLLOUT = Both(full=dict(n=1024, prompt=8, length=120), quick=dict(n=512, prompt=8, length=56))
BIN = 8                         # positions per point of the figure


def analyze_free_running(ctx) -> dict:
    run = ctx.runs["gpt"]
    model = run.model.eval()
    test = run.data("test").tokens
    half = len(test) // 2         # the reference counts one half of the held-out text; windows come from the other
    ref = bigram_reference(test[:half], model.net.vocab_size)
    r = ROLLOUT(ctx)
    with single_thread():
        s = rollout_scores(model.net, test[half:], ref, r["n"], r["prompt"], r["length"])
    sample, gaps = model.tokenizer.decode(s.pop("first_sample")), np.asarray(s.pop("gap_per_window"))
    labels = {"teacher_forced": "true text, true prefix (teacher-forced loss)",
              "self_scored": "own samples, own prefix", "ref_true": "true text", "ref_free": "own samples"}
    line_panels({"nats per token, scored by the trained GPT":
                 {"series": {labels[k]: binned(s[k], BIN) for k in ("teacher_forced", "self_scored")}},
                 "nats per token, scored by a held-out bigram":
                 {"series": {labels[k]: binned(s[k], BIN) for k in ("ref_true", "ref_free")}}},
                ctx.figures / "free_running.png",
                f"teacher forcing vs free running on {run.data_name} ({r['n']} windows, {r['prompt']}-token true "
                "prompts)", f"position k of the continuation (means of {BIN} positions)", integer_x=False,
                note="the bigram is counted (add-0.5) on the other half of the held-out text and knows nothing of "
                     "the model")
    mean = {k: float(np.mean(v)) for k, v in s.items()}
    return {"data": run.data_name, "rollout": r, "per_position": s, "mean_nats": mean,
            "reference_gap_nats": float(gaps.mean()),
            "reference_gap_stderr": float(gaps.std(ddof=1) / np.sqrt(len(gaps))),
            "self_vs_teacher_forced_nats": mean["self_scored"] - mean["teacher_forced"],
            "sample": sample,
            "explanation": "training only ever conditions on true prefixes (teacher forcing) and the teacher-"
                           "forced loss only ever measures them; free running, the model conditions on its own "
                           "samples, and held-out statistics rate those continuations worse than true text"}


FREE_RUNNING_GAP = 0.05        # nats per token: generated text must score at least this much worse under the bigram


def check_free_running(s: dict) -> Check:
    gap, se = s["reference_gap_nats"], s["reference_gap_stderr"]
    return Check(gap > max(FREE_RUNNING_GAP, 3 * se),
                 f"held-out bigram NLL of the model's own continuations minus true text's: {gap:+.3f} ± {se:.3f} "
                 f"nats/token (teacher-forced loss {s['mean_nats']['teacher_forced']:.3f})",
                 f"gap > {FREE_RUNNING_GAP} nats/token and > 3 standard errors")


declare(Experiment(
    name="teacher-forcing-vs-free-running", family=FAMILY,
    description="teacher-forced loss on held-out text against the model's own continuations, scored by the model "
                "and by a held-out bigram, per rollout position (Bengio et al. 2015)",
    runs=[Setting("gpt", "gpt", ANATOMY_MODEL | {"positions": "learned", "block_size": 128, "max_steps": 3000},
                  quick={"max_steps": 300, "block_size": 64})],
    data="tinyshakespeare", quick_data="synthetic-text", analyze=analyze_free_running, one_thread_quick=True,
    quick_note="300 steps on the offline synthetic corpus, 56-token rollouts; the full run trains on Shakespeare",
    claim="teacher forcing trains and scores a language model on true prefixes only; generating, it conditions on "
          "its own samples, and held-out statistics rate its continuations worse than true text, a gap the "
          "teacher-forced loss does not measure (exposure bias; Homework 2, Problem 3c; Bengio et al. 2015)",
    check=check_free_running,
    examples=({"reference_gap_nats": 0.12, "reference_gap_stderr": 0.01, "mean_nats": {"teacher_forced": 0.73}},
              {"reference_gap_nats": 0.12, "reference_gap_stderr": 0.06, "mean_nats": {"teacher_forced": 0.73}})))
