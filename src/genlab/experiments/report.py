"""Experiments across families: the likelihood table (every likelihood family on the same data, in the
same units) and ``all`` (every experiment of the catalog, one after the other, then one report).

likelihood-table: 8-bit MNIST, test split (``--quick``: scikit-learn's 8x8 digits, 17 grey levels). Each
row gives the negative log-likelihood of the *discrete* test images in bits per dimension,

    bpd = NLL_nats / (D ln 2),   D = pixels per image                   (van den Oord et al. 2016, PixelRNN)

with the estimate named: the VAE's importance-weighted bound (Burda et al. 2016, Eq. 8; an upper bound
on -log P(x) with its discretized-Gaussian decoder), the flow's exact density of uniformly dequantized
pixels, which bounds the discrete NLL from above (Theis, van den Oord & Bethge 2016, Eq. 3-4), the
diffusion model's variational bound (Ho et al. 2020, Eq. 5, with a discrete decoder), and the PixelCNN's
exact discrete likelihood (van den Oord et al. 2016, Eq. 1). The uniform distribution scores log2 256 = 8.
Published references are given only where they were measured on the same data in the same units.
"""
from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from genlab import catalog
from genlab.errors import GenlabError
from genlab.experiments.common import Both
from genlab.experiments.registry import Check, Context, Experiment, Setting, declare, run_experiment


# ------------------------------------------------------------------ likelihood-table
@dataclass
class Row:
    """One model of the table: how it is trained (full / quick), evaluated, and what it estimates."""
    name: str
    model: str
    estimate: str                   # the bound or exact likelihood that ``bpd`` is
    options: dict                   # full run on MNIST
    quick: dict                     # overrides for --quick on digits
    eval_options: dict
    quick_eval_options: dict
    reference: str                  # a published number on the same data and units, or why there is none
    short: str = ""                 # the estimate in a few words, for figure labels


# The full rows are sized for a laptop: the whole table took 36 minutes on one CPU core (training times are
# in the table). Published numbers come from far larger models trained for days. The quick rows (digits) are
# the quickstart's: step budgets at which each family's samples are recognisable digits (VAE 40 epochs of 20
# steps, flow 30, DDPM 600 steps, PixelCNN 10 epochs of 64 channels; measured 5, 7, 22 and 9 CPU-seconds of
# training on one thread; 3 DDPM epochs gave noise).
ROWS = [
    Row("vae", "vae", "IWAE bound (k importance samples), discretized-Gaussian decoder: upper bound",
        {"view": "continuous", "z_dim": 32, "hidden": (512, 512), "epochs": 20, "batch_size": 128, "lr": 1e-3},
        {"epochs": 40, "z_dim": 8, "hidden": (256, 256), "batch_size": 64, "lr": 2e-3},
        {"iwae_k": 250}, {"iwae_k": 100},
        "none for this data (VAE/IWAE results are reported in nats on binarized MNIST)", "IWAE bound"),
    Row("flows", "realnvp", "exact flow density of dequantized pixels: upper bound on the discrete NLL",
        {"view": "continuous", "channels": 16, "couplings": 8, "epochs": 2, "batch_size": 64, "lr": 1e-3},
        {"channels": 16, "couplings": 4, "epochs": 30},
        {}, {},
        "RealNVP 1.06, Glow 1.05 bits/dim on dequantized 8-bit MNIST (as tabulated by Grathwohl et al. 2019, "
        "FFJORD, Table 2)", "exact (dequantized)"),
    Row("diffusion", "ddpm", "variational bound (DDPM, Ho et al. 2020, Eq. 5)",
        {"view": "continuous", "epochs": 8, "batch_size": 32, "lr": 2e-3, "ema": 0.995},
        {"epochs": 30, "mults": (1, 2), "batch_size": 64, "lr": 2e-3, "ema": 0.99},
        {"vlb_samples": 10}, {}, "none for this data", "variational bound"),
    Row("pixelcnn", "pixelcnn",
        "exact discrete likelihood (PixelCNN, an L-way softmax per pixel, L = 256 on MNIST)",
        {"view": "continuous", "channels": 64, "layers": 5, "epochs": 1, "batch_size": 64, "lr": 1e-3},
        {"channels": 64, "layers": 3, "epochs": 10, "lr": 3e-3},
        {}, {},
        "none for this data (PixelCNN on MNIST is reported as 81.3 nats NLL on binarized MNIST)", "exact"),
]


def available_rows(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """(rows whose model this version has, rows left out)."""
    have = [r for r in rows if r.model in catalog.MODELS]
    return have, [r for r in rows if r.model not in catalog.MODELS]


def table_settings(rows: list[Row], quick: bool) -> list[Setting]:
    return [Setting(r.name, r.model, dict(r.options), quick=dict(r.quick))
            for r in available_rows(rows)[0]]


def table_row(run, row: Row, quick: bool) -> dict:
    """Evaluate ``run`` on the test split; bpd from the model's NLL in nats: NLL / (D ln 2)."""
    from genlab.eval.evaluate import evaluate
    from genlab.maths.densities import grey_levels
    record = evaluate(run, options=row.quick_eval_options if quick else row.eval_options, extras=False)
    if run.dir is not None:
        run.folder.write_eval(record)                        # what `genlab eval` would write, for the report
    metrics, dims = record["metrics"], math.prod(run.data_info.shape)
    if metrics.get("nll_nats") is not None:
        nll = float(metrics["nll_nats"])
        bpd = nll / (dims * math.log(2))
        own = metrics.get("bpd")
        agrees = own is None or math.isclose(own, bpd, rel_tol=1e-4, abs_tol=1e-6)
    elif metrics.get("bpd") is not None:                    # a model that reports bits/dim only
        bpd = float(metrics["bpd"])
        nll, agrees = bpd * dims * math.log(2), True
    else:
        raise GenlabError(f"{run.model_name} reports neither nll_nats nor bpd; it cannot enter the likelihood table")
    summary = run.folder.read_summary() if run.dir else {}
    options = record["options"]
    estimate = row.estimate + (f", k={options['iwae_k']}" if options.get("iwae_k") else "")
    return {"row": row.name, "model": run.model_name, "data": run.data_name,
            "grey_levels": grey_levels(run.data_info), "bpd": round(bpd, 4),
            "nll_nats": round(nll, 3), "estimate": estimate,
            "parameters": sum(p.numel() for p in run.model.parameters()),
            "train_time_s": summary.get("train_time_s"), "steps": summary.get("steps"),
            "test_examples": record["examples"], "reference": row.reference,
            **({} if agrees else {"warning": f"the model's own bpd ({own:.4f}) disagrees with nll / (D ln 2)"})}


TABLE_DATA = Both(full="mnist", quick="digits")     # what the table names when no row could be measured
GREY_LEVELS = Both(full=256, quick=17)


def analyze_table(ctx: Context, rows: list[Row] = ROWS) -> dict:
    table = []
    for r in rows:
        if r.name in ctx.runs:
            table.append(table_row(ctx.runs[r.name], r, ctx.quick))
        else:
            table.append({"row": r.name, "model": r.model, "bpd": None, "estimate": r.estimate,
                          "reference": r.reference, "note": f"not available: model {r.model!r} is not in this version"})
    measured = [t for t in table if t.get("bpd") is not None]
    check_same_levels(measured)
    data = measured[0]["data"] if measured else TABLE_DATA(ctx)
    levels = measured[0]["grey_levels"] if measured else GREY_LEVELS(ctx)
    summary = {"data": data, "split": "test", "grey_levels": levels, "units": "bits/dim of the discrete test images",
               "uniform_bpd": round(math.log2(levels), 4), "table": table}
    if measured:
        best = min(measured, key=lambda t: t["bpd"])
        summary |= {"best": best["row"], "bpd": best["bpd"]}
    write_table(ctx.out, summary)
    figure = write_samples_figure(ctx, rows, table)
    if figure is not None:
        summary["samples_figure"] = figure.relative_to(ctx.out).as_posix()
    return summary


SAMPLES_PER_ROW = 16
SAMPLES_NOTE = ("same seed for every row; a latent-variable model shows its decoder's mean E[x|z] of each prior "
                "draw, the others draws of their density (a flow's include its dequantization noise)")


def write_samples_figure(ctx: Context, rows: list[Row], table: list[dict], seed: int = 0) -> Path | None:
    """``figures/samples_side_by_side.png``: one row of ``SAMPLES_PER_ROW`` samples per family that can
    sample (the declared ``Samples`` ability), each labelled with its bits/dim and estimate, above a row of
    real test images; None when no row can sample."""
    import torch

    from genlab.abilities import Samples, can
    from genlab.viz.figures import labelled_grid
    from genlab.viz.report import test_images, to_unit
    by_row = {t["row"]: t for t in table}
    images, labels, run = [], [], None
    for r in rows:
        run_r = ctx.runs.get(r.name)
        if run_r is None or not can(run_r.model, Samples) or run_r.data_info.kind != "image":
            continue
        run = run_r
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            x = run.model.sample(SAMPLES_PER_ROW)
        images.append(to_unit(run, x).float().cpu().clamp(0, 1))
        labels.append(f"{r.name} ({run.model_name})\n{by_row[r.name]['bpd']:.2f} bits/dim, {r.short}")
    if run is None:
        return None
    real, _ = test_images(run, SAMPLES_PER_ROW)
    images.append(to_unit(run, real).float().cpu())
    labels.append("test images\n(real data)")
    from genlab.maths.densities import grey_levels
    return labelled_grid(torch.cat(images), ctx.figures / "samples_side_by_side.png", nrow=SAMPLES_PER_ROW,
                         row_labels=labels, cell_px=48, note=SAMPLES_NOTE,
                         title=f"Samples of each family trained on {run.data_name} ({grey_levels(run.data_info)} "
                               f"grey levels), bits/dim of the test split (lower is better)")


def check_table(s: dict) -> Check:
    rows = [t for t in s["table"] if t.get("bpd") is not None]
    return Check(bool(rows) and all(t["bpd"] < s["uniform_bpd"] for t in rows),
                 ", ".join(f"{t['row']} {t['bpd']}" for t in rows) + " bits/dim",
                 f"every row below uniform ({s['uniform_bpd']})")


def check_same_levels(rows: list[dict]) -> None:
    """Refuse a table whose rows are bits/dim on data of different numbers of grey levels: log2 K bits/dim
    is the uniform distribution on K levels, so such rows do not compare."""
    levels = {t["grey_levels"] for t in rows}
    if len(levels) > 1:
        each = ", ".join(f"{t['row']} {t['grey_levels']}" for t in rows)
        raise GenlabError(f"the likelihood table's rows are on data of different grey levels ({each}); "
                          "bits/dim compare only on the same levels: give every row the same data and view")


def write_table(out: Path, summary: dict) -> None:
    """``table.md`` (the table as text) and ``figures/likelihood_table.png`` (bars, uniform line)."""
    lines = [f"Negative log-likelihood on {summary['data']} (test split, {summary['grey_levels']} grey levels) "
             f"in bits/dim; uniform = {summary['uniform_bpd']}",
             "", "| family | model | bits/dim | estimate | parameters | training time (s) | published reference |",
             "|---|---|---|---|---|---|---|"]
    for t in summary["table"]:
        bpd = f"{t['bpd']:.3f}" if t.get("bpd") is not None else t.get("note", "–")
        lines.append(f"| {t['row']} | {t['model']} | {bpd} | {t['estimate']} | {t.get('parameters', '–')} | "
                     f"{t.get('train_time_s', '–')} | {t['reference']} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    measured = [t for t in summary["table"] if t.get("bpd") is not None]
    if not measured:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=110)
    ax.bar([f"{t['row']}\n({t['model']})" for t in measured], [t["bpd"] for t in measured], color="C0")
    for i, t in enumerate(measured):
        ax.text(i, t["bpd"], f"{t['bpd']:.3f}", ha="center", va="bottom", fontsize=9)
    ax.axhline(summary["uniform_bpd"], ls="--", color="C3", label=f"uniform ({summary['uniform_bpd']:.2f})")
    ax.set(ylabel="bits/dim (lower is better)", title=f"{summary['data']}, test split")
    ax.legend(fontsize=8)
    fig.tight_layout()
    (out / "figures").mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "figures" / "likelihood_table.png")
    plt.close(fig)


declare(Experiment(
    "likelihood-table", "report",
    "every likelihood family on 8-bit MNIST (quick: digits, 17 levels) in bits/dim, estimate named, "
    "with parameters, training time and published references",
    analyze=analyze_table, runs=lambda quick: table_settings(ROWS, quick), data="mnist", quick_data="digits",
    one_thread_quick=True,
    claim="every likelihood family scores the same discrete test images in bits/dim, bpd = nll log2(e) / D, below "
          "the uniform distribution's log2 L (UvA Practical 3, Section 1.6)",
    check=check_table,
    quick_cannot="600 steps leave the diffusion bound only just below uniform on the 17-level digits (measured "
                 "3.93 of 4.09 bits/dim); a shorter run lands above it: "
                 "`genlab experiment run likelihood-table --data-dir DIR`",
    examples=({"uniform_bpd": 8.0, "table": [{"row": "vae", "bpd": 1.54}, {"row": "pixelcnn", "bpd": 1.16}]},
              {"uniform_bpd": 4.09, "table": [{"row": "vae", "bpd": 2.0}, {"row": "diffusion", "bpd": 5.96}]}),
    quick_note="digits are 8x8 with 17 grey levels: the numbers compare the families with each other and with "
               "the uniform log2 17 = 4.09 bits/dim, not with the published MNIST references. The diffusion "
               "bound needs far longer training than a quick run gives: 600 steps leave it only just below "
               "uniform (measured 3.93 bits/dim on the 17 levels) while its samples are already digits"))


# ------------------------------------------------------------------ all
SKIP = {"all"}


def run_all(out: Path, quick: bool, data_dir: str | None, only: list[str] | None = None) -> dict:
    """Run every experiment of the catalog (or ``only`` these) into ``out/<name>``; a failure is recorded
    with its message and the next one runs. Prints and returns the summary table; writes the HTML report."""
    names = [n for n in catalog.names("experiment") if n not in SKIP]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise GenlabError(f"unknown experiment(s) {', '.join(unknown)}; `genlab experiment list` lists them")
        names = [n for n in names if n in only]
    rows = []
    for name in names:
        start = time.perf_counter()
        try:
            summary = run_experiment(name, out / name, quick, data_dir)
            row = {"name": name, "status": "ran", **key_number(summary),
                   **{k: summary[k] for k in ("verdict", "measured", "expected", "quick_cannot") if k in summary}}
        except KeyboardInterrupt:
            raise
        except Exception as e:   # noqa: BLE001 -- one failure must not stop the others; it is recorded
            message = str(e) if isinstance(e, GenlabError) else \
                f"{type(e).__name__}: {e} ({traceback.extract_tb(e.__traceback__)[-1].filename.rsplit('/', 1)[-1]}:" \
                f"{traceback.extract_tb(e.__traceback__)[-1].lineno})"
            row = {"name": name, "status": CRASHED, "message": message}
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(f"[{len(rows)}/{len(names)}] {name}: {outcome(row)} in {row['seconds']} s", flush=True)
    text = summary_table(rows)
    print(text)
    (out / "summary.txt").write_text(text + "\n")
    report = None
    if any((out / r["name"]).is_dir() for r in rows):
        from genlab.report import write_html_report
        report = str(write_html_report(out))
    crashed = [r["name"] for r in rows if r["status"] == CRASHED]
    if crashed:   # a crash must say so in its exit status (2), after writing everything; a verdict does not
        raise GenlabError(f"{len(crashed)} of {len(rows)} experiments crashed ({', '.join(crashed)}); "
                          f"their messages are in {out / 'summary.txt'}" + (f" and {report}" if report else ""))
    return {"experiments": rows, "verdicts": verdict_counts(rows), "crashed": 0, "report": report}


CRASHED = "crashed"


def outcome(row: dict) -> str:
    """What one row of ``all`` says: its verdict, "crashed", or "no claim" (an experiment without a check)."""
    return CRASHED if row["status"] == CRASHED else row.get("verdict", "no claim")


def verdict_counts(rows: list[dict]) -> dict:
    counts: dict = {}
    for r in rows:
        counts[outcome(r)] = counts.get(outcome(r), 0) + 1
    return counts


METRIC_WORDS = ("bpd", "nll", "fid", "elbo", "bleu", "error", "score", "acc", "mse", "loss", "kl", "perplexity",
                "psnr", "ssim", "speedup", "gap")
NOT_RESULTS = {"wall_time_s", "quick", "uniform_bpd", "grey_levels", "model", "train", "data", "epochs_shown"}


def key_number(summary: dict) -> dict:
    """The one number that says most about an experiment's summary: a well-known metric (KEY_METRICS
    order), else a number whose name says it is a metric, else the first number; top-level numbers before
    nested ones (dotted names); settings (``model``, ``train``, ...) are not results."""
    from genlab.report.html import KEY_METRICS
    leaves = sorted(_numbers(summary), key=lambda leaf: leaf[0].count("."))     # top-level numbers first
    for key in KEY_METRICS:
        for path, value in leaves:
            if path.rsplit(".", 1)[-1] == key:
                return {"key": path, "value": value}
    for path, value in leaves:
        if any(word in path.rsplit(".", 1)[-1] for word in METRIC_WORDS):
            return {"key": path, "value": value}
    return {"key": leaves[0][0], "value": leaves[0][1]} if leaves else {}


def _numbers(obj, prefix: str = ""):
    """(dotted name, number) of every finite number in a summary, in order, lists of rows by index."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        if str(key) in NOT_RESULTS:
            continue
        path = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            yield from _numbers(value, path + ".")
        elif _is_number(value):
            yield path, value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summary_table(rows: list[dict]) -> str:
    """An aligned text table: name, seconds, key number, verdict; under each row what was measured
    against what the claim expects (a crash: its message; cannot show in quick mode: the reason)."""
    lines = [f"{'experiment':<28} {'seconds':>8}  {'key number':<30} verdict"]
    for r in rows:
        key = f"{r['key']}={r['value']:.4g}" if "key" in r else ""
        lines.append(f"{r['name']:<28} {r['seconds']:>8.1f}  {key:<30} {outcome(r)}")
        if r["status"] == CRASHED:
            lines.append(f"    {r['message']}")
        elif "verdict" in r:
            lines.append(f"    measured: {r['measured']}; expected: {r['expected']}")
            if "quick_cannot" in r:
                lines.append(f"    quick: {r['quick_cannot']}")
    counts = ", ".join(f"{n} {word}" for word, n in verdict_counts(rows).items())
    lines.append(f"{len(rows)} experiments: {counts}; {sum(r['seconds'] for r in rows):.0f} s in all")
    return "\n".join(lines)


def all_ran(summary: dict) -> Check:
    rows = summary["experiments"]
    judged = [r for r in rows if "verdict" in r]
    return Check(summary["crashed"] == 0 and len(judged) == len(rows),
                 f"{len(rows)} experiments, {summary['crashed']} crashed, {len(judged)} with a verdict",
                 "none crashed and each states a verdict")


declare(Experiment(
    "all", "report", "every experiment of the catalog in turn (each in its own folder), a summary table "
    "(name, seconds, key number, verdict) and the HTML report of all of them; --quick is the smoke test",
    analyze=lambda ctx: run_all(ctx.out, ctx.quick, ctx.data_dir),
    claim="every experiment of the catalog runs to its end and states whether its claim is shown",
    check=all_ran,
    examples=({"crashed": 0, "experiments": [{"name": "a", "verdict": "shown"}]},
              {"crashed": 0, "experiments": [{"name": "a", "verdict": "shown"}, {"name": "b"}]})))
