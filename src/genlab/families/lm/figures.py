"""Figures of language models: attention maps (each block and head) over a piece of test text, and
log-log cost curves with fitted slopes (the rnn-vs-transformer experiment); the text of ``genlab sample``."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from genlab.abilities import HasAttentionMaps
from genlab.families.lm.model import TextSampleConfig
from genlab.viz.figures import pyplot, save_figure
from genlab.viz.report import register_figures


def attention_grid(maps: torch.Tensor, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """One heat map per (block, head) of weights [L, nh, T, T]; rows are queries, columns keys."""
    plt = pyplot()
    L, H, T, _ = maps.shape
    fig, axes = plt.subplots(L, H, figsize=(2.6 * H, 2.6 * L), dpi=110, squeeze=False)
    ticks = ["␣" if c == " " else repr(c)[1:-1] for c in labels]
    for i in range(L):
        for j in range(H):
            ax = axes[i][j]
            ax.imshow(maps[i, j].cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"block {i + 1}, head {j + 1}", fontsize=8)
            ax.set_xticks(range(T), ticks, fontsize=5, rotation=90)
            ax.set_yticks(range(T), ticks, fontsize=5)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def loglog_costs(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, title: str,
                 ylabel: str, fit_from: int = 0) -> dict[str, float]:
    """Measured costs against sequence length on log-log axes, each with the power law y = a n^b fitted to
    its points from index ``fit_from`` on (drawn over that range); returns the exponents b."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    slopes = {}
    for k, (name, (x, y)) in enumerate(series.items()):
        x, y = np.asarray(x, float), np.asarray(y, float)
        b, a = np.polyfit(np.log(x[fit_from:]), np.log(y[fit_from:]), 1)
        slopes[name] = float(b)
        ax.plot(x, y, "o", ms=4, color=f"C{k}", label=f"{name} (slope {b:.2f})")
        ax.plot(x[fit_from:], np.exp(a) * x[fit_from:] ** b, "-", color=f"C{k}", alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(title=title, xlabel="sequence length n (tokens)", ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return slopes


@register_figures(needs=(HasAttentionMaps,), kinds=("text",))
def attention_maps(run, out: Path) -> list[Path]:
    """The attention maps of a transformer run over the first 32 tokens of its test split."""
    model = run.model
    data = run.data("test")
    T = min(32, model.config.block_size, len(data.tokens))
    idx = data.tokens[:T][None].to(next(model.parameters()).device)
    maps = model.attention_maps(idx)
    labels = [model.tokenizer.decode([int(t)]) for t in idx[0]]
    return [attention_grid(maps, labels, Path(out) / "attention_maps.png",
                           f"{run.model_name} on {run.data_name}: attention weights (query rows, key columns)")]


def sample_text(run, cfg: TextSampleConfig, n: int, out: Path | None, seed: int) -> list[str]:
    """``genlab sample``: the prompt and ``n`` generated tokens; also written to ``out`` when given."""
    model = run.model.eval()
    text = model.generate_text(cfg.prompt, n, cfg.temperature, cfg.top_k, cfg.top_p, seed)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return [text]
