"""The Python API, the same code path as the ``genlab`` command: a trained run gets the same folder
(checkpoint, metrics, ``eval.json``, figures) from ``genlab.train(...)`` as from ``genlab train``.

    import genlab
    run = genlab.train("vae", "digits", out="runs/nb", epochs=20, z_dim=2)
    genlab.evaluate(run, iwae_k=1000)["metrics"]
    genlab.sample(run, 16)        # the paths or text written
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from genlab.abilities import Samples, can
from genlab.config import from_dict
from genlab.errors import ConfigError, GenlabError
from genlab.eval.evaluate import evaluate
from genlab.model import check_data_fits, get_model_spec
from genlab.training.run import Run, load_run
from genlab.training.run import train as train_run
from genlab.viz import make_figures
from genlab.viz.samples import write_samples


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train(model: str, data: str | None = None, out: str | Path | None = None, *, report: bool = True,
          overwrite: bool = False, resume: bool = False, callbacks: list[Callable] = (),
          step_hooks: list[Callable] = (), eval_options: dict | None = None, extras: bool | set = True,
          model_options: dict | None = None, data_options: dict | None = None,
          train_options: dict | None = None, **options) -> Run:
    """Train ``model`` on ``data`` into ``out``; then (``report``) write ``eval.json`` on the test split
    and every figure that applies. Keywords go to the config that owns them (model, data, training).
    A dataset the model does not fit is refused before anything is loaded or written."""
    if not resume:
        check_data_fits(model, data or get_model_spec(model).default_data)
    run = train_run(model, data, out, callbacks=callbacks, step_hooks=step_hooks, resume=resume,
                    overwrite=overwrite, model_options=model_options, data_options=data_options,
                    train_options=train_options, **options)
    if report and run.dir is not None and is_main_process() and not getattr(run.state, "interrupted", False):
        write_report(run, eval_options=eval_options, extras=extras)
    return run


def write_report(run: Run, eval_options: dict | None = None, extras: bool | set = True,
                 progress: bool = True) -> tuple[dict, list[Path]]:
    """Evaluate on the test split into ``eval.json`` and draw the run's figures."""
    record = evaluate(run, options=eval_options, extras=extras, progress=progress)
    run.folder.write_eval(record)
    return record, make_figures(run)


MAX_SAMPLES = 4096          # draws of one `genlab sample` (images, points): a 64 x 64 grid
MAX_SAMPLE_TOKENS = 100_000  # tokens of one text sample


def check_sample_size(run: Run, n: int) -> None:
    """Refuse ``-n`` beyond one command's bound (checked before anything is drawn): ``MAX_SAMPLE_TOKENS``
    for text models, else ``MAX_SAMPLES`` draws, and their tensor at most a quarter of the memory."""
    import math

    from genlab.model import memory_limit
    if run.data_info.kind == "text":
        if n > MAX_SAMPLE_TOKENS:
            raise ConfigError(f"-n {n} tokens is more than one sample command writes (at most "
                              f"{MAX_SAMPLE_TOKENS:,}); draw several with different --seed values")
        return
    nbytes = n * math.prod(run.data_info.shape) * 4
    if n > MAX_SAMPLES or nbytes > memory_limit() // 4:
        raise ConfigError(f"-n {n} is more than one sample command draws (at most {MAX_SAMPLES:,} samples, "
                          f"their tensor at most a quarter of the memory); draw several with different --seed "
                          f"values")


def sample(run: Run | str | Path, n: int = 64, seed: int = 0, out: str | Path | None = None,
           device: str = "cpu", options: dict | None = None, **sample_options) -> list[str]:
    """Draw from a run as its family declares (image grid, points, text, renders); returns the lines
    to show (paths written, or generated text)."""
    if n <= 0:
        raise ConfigError(f"-n must be a positive number of samples, got {n}")
    if not isinstance(run, Run):
        run = load_run(run, device)
    check_sample_size(run, n)
    spec = run.spec
    cfg = from_dict(spec.sample_config, (options or {}) | sample_options, where=f"sample options of {run.model_name}")
    if out:
        out = Path(out)
        if out.is_dir():
            raise ConfigError(f"--out {out} is a folder; name a file in it, e.g. {out / 'samples.png'}")
        if not out.parent.is_dir():
            raise ConfigError(f"--out {out}: the folder {out.parent} does not exist; create it or choose "
                              f"another --out")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        writer = spec.sample_writer()
        if writer is not None:
            return list(writer(run, cfg, n, out or None, seed))
        if not can(run.model, Samples):
            raise GenlabError(f"model {run.model_name} cannot sample (it has no generative prior); "
                              f"try `genlab report {run.dir}` for its figures")
        x = run.model.sample(n)
        try:
            return [str(write_samples(run, x, out or None))]
        except OSError as e:
            raise GenlabError(f"cannot write {e.filename or out}: {e.strerror or e}; choose another --out") from None
        except ValueError as e:   # e.g. an image file name whose extension no writer knows
            if not out:
                raise
            raise ConfigError(f"cannot write {out}: {e}; name a .png file") from None


__all__ = ["evaluate", "load_run", "sample", "train", "write_report"]
