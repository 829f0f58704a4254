"""What ``genlab sample`` writes for a diffusion run: PNG grids of images drawn with any sampler, prompt
and guidance scale (and, with a negative prompt, the grid without it and both side by side)."""
from __future__ import annotations

from pathlib import Path

import torch

from genlab.families.diffusion.model import DDPM, DDPMSampleConfig
from genlab.progress import progress
from genlab.viz.figures import labelled_grid


def sample_images(run, cfg: DDPMSampleConfig, n: int, out: Path | None, seed: int) -> list[str]:
    """``genlab sample RUN [--sampler S --steps N --prompt P --negative-prompt Q --guidance W]``: an image
    grid titled with the sampler, steps, seed, guidance and prompt; with a negative prompt, also the grid
    without it from the same seed, and both side by side."""
    model: DDPM = run.model.eval()
    device = next(model.parameters()).device
    labels = negative = None
    if cfg.prompt or cfg.negative_prompt:
        if cfg.prompt:
            labels = torch.full((n,), model.prompt_label(cfg.prompt), dtype=torch.long, device=device)
        else:
            labels = torch.arange(n, device=device) % max(model.num_classes, 1)
        if cfg.negative_prompt:
            negative = torch.full((n,), model.prompt_label(cfg.negative_prompt), dtype=torch.long, device=device)
    sampler = cfg.sampler or model.config.sampler
    steps = cfg.steps or model.config.sample_steps
    guidance = cfg.guidance   # None: the model's
    title = f"{run.model_name} samples: {sampler}, {steps} steps, seed {seed}"
    if model.num_classes:
        title += f", guidance {model.config.guidance if guidance is None else guidance:g}"
        title += f", prompt \"{cfg.prompt}\"" if cfg.prompt else ", one class per image"
    noise = torch.randn((n, *model.data_info.shape), generator=torch.Generator().manual_seed(seed))
    draw = dict(sampler=sampler, steps=steps, labels=labels, guidance=guidance, eta=cfg.eta, noise=noise)
    passes = 2 if negative is not None else 1
    bar = progress(desc=f"sampling ({sampler})", total=steps * passes, unit="step")
    draw["callback"] = lambda i, x: bar.update(1)
    images = model.sample(n, generator=torch.Generator().manual_seed(seed + 1), negative=negative, **draw)
    stem = f"{sampler}_{steps}" + (f"_{cfg.prompt}" if cfg.prompt else "") + \
        (f"_not_{cfg.negative_prompt}" if cfg.negative_prompt else "")
    stem = stem.replace(" ", "-").replace("/", "-")
    path = out if out is not None else run.folder.samples / f"{stem}.png"
    lines = [str(labelled_grid(images, path, title=title + (f", not \"{cfg.negative_prompt}\"" if negative is not None
                                                          else "")))]
    if negative is not None:
        plain = model.sample(n, generator=torch.Generator().manual_seed(seed + 1), **draw)
        plain_path = path.with_name(path.stem + "_without.png")
        lines.append(str(labelled_grid(plain, plain_path, title=title)))
        k = min(n, 8)
        pair = torch.cat([plain[:k], images[:k]])                     # row 1 without, row 2 with the negative prompt
        lines.append(str(labelled_grid(pair, path.with_name(path.stem + "_side_by_side.png"), nrow=k, title=title,
                                       row_labels=["without", f"not \"{cfg.negative_prompt}\""])))
    bar.close()
    return lines
