"""How ``genlab sample`` writes what a model drew, by the kind of data (the data declares its kind in
``DataInfo.kind``): image grids, point clouds. Families whose samples are something else (text,
translations, renders) name their own writer in their model spec (``sample="figures:sample_text"``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.errors import GenlabError
from genlab.viz.figures import save_image_grid


def _images(run, x: torch.Tensor, out: Path | None) -> Path:
    out = out or run.folder.samples / f"samples_{len(x)}.png"
    levels = run.data_info.levels
    if run.data_info.view == "quantized" and levels and x.max() > 1:
        x = x / (levels - 1)
    return save_image_grid(x, out, nrow=int(max(1, round(len(x) ** 0.5))))


def _points(run, x: torch.Tensor, out: Path | None) -> Path:
    out = Path(out or run.folder.samples / f"samples_{len(x)}.csv").with_suffix(".csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(out, x.reshape(len(x), -1).cpu().numpy(), delimiter=",")
    return out


WRITERS = {"image": _images, "points": _points}


def write_samples(run, x: torch.Tensor, out: Path | None = None) -> Path:
    writer = WRITERS.get(run.data_info.kind)
    if writer is None:
        raise GenlabError(f"genlab cannot write samples of {run.data_info.kind!r} data; the model's family "
                          f"declares no sample writer")
    return writer(run, x, out)
