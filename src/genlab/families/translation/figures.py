"""Figures of a translation run: per-layer gradient norms (Xiong et al. 2020).

* ``grad_norms_vs_step.png`` -- the gradient 2-norm of every encoder layer (left) and decoder layer
  (right) against the optimizer step, one line per layer, log scale.
* ``grad_norms_vs_layer.png`` -- the same norms against the layer index (encoder then decoder) at a
  few chosen steps (first, early, middle, last): Xiong et al. 2020 (Theorem 1, Fig. 3) predict that
  at initialization post-norm gradients grow towards the last layers while pre-norm ones stay flat.

The norms are the ``{"split": "grad"}`` rows the translator's step hook writes to ``metrics.jsonl``.
``sample_translation`` is what ``genlab sample RUN --text ...`` prints.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genlab.errors import GenlabError
from genlab.families.translation.model import TranslatorSampleConfig, example_sentence
from genlab.training.logger import read_jsonl
from genlab.viz.figures import pyplot, save_figure
from genlab.viz.report import register_figures


def read_grad_norms(jsonl: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(steps [S], norms [S, L], layer names) from the ``grad`` rows of a ``metrics.jsonl``."""
    rows = [r for r in read_jsonl(Path(jsonl)) if r.get("split") == "grad"]
    if not rows:
        return np.zeros(0), np.zeros((0, 0)), []
    steps = np.array([r["step"] for r in rows])
    norms = np.array([r["grad_norm"] for r in rows], dtype=float)
    return steps, norms, list(rows[-1]["layers"])


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` steps (same length; the first points average what exists)."""
    if window <= 1 or len(y) < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_norms_vs_step(ax_enc, ax_dec, steps, norms, names, window: int = 1, title: str = "") -> None:
    """One line per layer on the encoder and decoder axes (colour darkens with depth)."""
    plt = pyplot()
    for ax, prefix in ((ax_enc, "enc"), (ax_dec, "dec")):
        cols = [i for i, n in enumerate(names) if n.startswith(prefix)]
        cmap = plt.get_cmap("viridis")
        for j, i in enumerate(cols):
            ax.plot(steps, smooth(norms[:, i], window), lw=1.0, color=cmap(j / max(1, len(cols) - 1)),
                    label=f"layer {j + 1}")
        ax.set_yscale("log")
        ax.set(xlabel="step", ylabel="gradient 2-norm", title=f"{title}{'encoder' if prefix == 'enc' else 'decoder'}")
        ax.grid(alpha=0.3)
        if len(cols) <= 12:
            ax.legend(fontsize=6, ncol=2)


def chosen_steps(steps: np.ndarray, k: int = 4) -> list[int]:
    """Indices of the first step, then roughly 5%, 50% and 100% of training."""
    n = len(steps)
    picks = [0, max(1, n // 20), n // 2, n - 1][:k]
    return sorted(set(min(max(p, 0), n - 1) for p in picks))


def plot_norms_vs_layer(ax, steps, norms, names, picks: Sequence[int], title: str = "", label: str = "") -> None:
    """Norm against layer index at the steps ``picks`` (indices into ``steps``); ``label`` prefixes the legend."""
    x = np.arange(len(names))
    for i in picks:
        ax.plot(x, norms[i], marker="o", ms=3, label=f"{label}step {int(steps[i])}")
    n_enc = sum(n.startswith("enc") for n in names)
    ax.axvline(n_enc - 0.5, color="0.6", ls=":", label="_nolegend_")
    ax.set_xticks(x, names, rotation=90 if len(names) > 12 else 0, fontsize=7)
    ax.set_yscale("log")
    ax.set(xlabel="layer (encoder, then decoder)", ylabel="gradient 2-norm", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


@register_figures(kinds=("pairs",))
def grad_norm_figures(run, out: Path) -> list[Path]:
    """Per-layer gradient norms of a translation run against step and against layer index."""
    if run.dir is None:
        return []
    steps, norms, names = read_grad_norms(run.folder.metrics_jsonl)
    if len(steps) == 0:
        return []
    plt = pyplot()
    cfg = run.model.cfg
    label = f"{cfg.norm}-norm, {cfg.layers} layers: "
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    plot_norms_vs_step(a, b, steps, norms, names, window=max(1, len(steps) // 100), title=label)
    paths = [save_figure(fig, Path(out) / "grad_norms_vs_step.png",
                   note="gradient norm of each layer's parameters at every optimizer step "
                        "(moving average over 1% of the steps)")]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    plot_norms_vs_layer(ax, steps, norms, names, chosen_steps(steps), title=f"{label}norm by layer")
    paths.append(save_figure(fig, Path(out) / "grad_norms_vs_layer.png"))
    return paths


def sample_translation(run, cfg: TranslatorSampleConfig, n: int, out=None, seed: int = 0) -> list[str]:
    """``genlab sample RUN --text "..."``: the translation of the sentence (beam search), as one line."""
    if not cfg.text or not cfg.text.strip():
        raise GenlabError(f'give the sentence to translate with --text, e.g. --text "{example_sentence(run)}"')
    return run.model.translate([cfg.text], beam=cfg.beam, alpha=cfg.length_penalty)
