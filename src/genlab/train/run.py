"""Runs: build data + model from configs, train, and load a finished run back from its folder.

``train("vae", data="digits", epochs=20, z_dim=2)`` routes each keyword to the config that owns
it (model, dataset or training); ``load_run(dir)`` rebuilds the model from ``config.json`` and the
last checkpoint, so ``eval``, ``sample`` and ``report`` never need the live process.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import __version__
from ..config import from_dict, to_dict
from ..data.registry import DataInfo, TensorData, data_config, get_spec, load_dataset
from ..errors import ConfigError, GenlabError
from ..models.base import get_model_spec
from . import checkpoint
from .config import TrainConfig
from .distributed import pick_device
from .logger import write_json_atomic
from .loop import Trainer


@dataclass
class Run:
    """A trained (or loaded) run: its folder, model, configs and data description."""
    dir: Path | None
    model: torch.nn.Module
    model_name: str
    data_name: str
    data_config: object
    train_config: TrainConfig
    data_info: DataInfo
    state: object = None

    def data(self, split: str) -> TensorData:
        return load_dataset(self.data_name, split, config=self.data_config)

    @property
    def figures(self) -> Path:
        return self.dir / "figures"


def split_overrides(model: str, data: str, options: dict) -> tuple[dict, dict, dict]:
    """Send each option to the model, dataset or training config that has a field of that name."""
    owners = {"model": get_model_spec(model).config, "data": get_spec(data).config, "train": TrainConfig}
    out: dict[str, dict] = {k: {} for k in owners}
    for key, value in options.items():
        hits = [o for o, cls in owners.items() if key in {f.name for f in dataclasses.fields(cls)}]
        if not hits:
            raise ConfigError(f"unknown option {key!r} for model {model} on {data}")
        if len(hits) > 1:
            raise ConfigError(f"option {key!r} is ambiguous ({', '.join(hits)}); pass it in "
                              f"model_options / data_options / train_options")
        out[hits[0]][key] = value
    return out["model"], out["data"], out["train"]


def prepare(model: str, data: str | None = None, model_options: dict | None = None,
            data_options: dict | None = None, train_options: dict | None = None, **options):
    """Resolve configs and load the train/val splits; returns what :func:`train` needs."""
    spec = get_model_spec(model)
    data = data or spec.default_data
    m, d, t = split_overrides(model, data, options)
    known = {f.name for f in dataclasses.fields(get_spec(data).config)}   # e.g. no pixel view for points
    d = {k: v for k, v in spec.data_defaults.items() if k in known} | (data_options or {}) | d
    m, t = (model_options or {}) | m, (train_options or {}) | t
    train_cfg = from_dict(TrainConfig, t, where="training")
    dcfg = data_config(data, d)
    return spec, data, from_dict(spec.config, m, where=f"model {model}"), dcfg, train_cfg


def train(model: str, data: str | None = None, out: str | Path | None = None, *,
          callbacks: list[Callable] = (), resume: bool = False, model_options: dict | None = None,
          data_options: dict | None = None, train_options: dict | None = None, **options) -> Run:
    """Train registered ``model`` on dataset ``data``; returns the :class:`Run`.

    Example: ``run = genlab.train("vae", "digits", epochs=20, z_dim=2); run.model.sample(16)``.
    """
    if resume:
        return resume_run(out, callbacks=callbacks)
    spec, data, mcfg, dcfg, tcfg = prepare(model, data, model_options, data_options, train_options, **options)
    train_data = load_dataset(data, "train", config=dcfg)
    val_data = load_dataset(data, "val", config=dcfg)
    torch.manual_seed(tcfg.seed)
    net = spec.cls(mcfg, train_data.info)
    run_config = {"genlab_version": __version__, "model": model, "model_config": to_dict(mcfg),
                  "data": data, "data_config": to_dict(dcfg), "train_config": to_dict(tcfg),
                  "data_info": train_data.info.to_dict(), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    trainer = Trainer(net, train_data, tcfg, out, val_data, callbacks, run_config)
    return _finish(trainer, model, data, dcfg, tcfg, train_data.info)


def resume_run(run_dir: str | Path, callbacks: list[Callable] = (), **train_overrides) -> Run:
    """Continue an interrupted run from its last checkpoint, with the same configs."""
    cfg = read_config(run_dir)
    spec = get_model_spec(cfg["model"])
    tcfg = from_dict(TrainConfig, cfg["train_config"] | train_overrides, where="training")
    dcfg = data_config(cfg["data"], cfg["data_config"])
    train_data = load_dataset(cfg["data"], "train", config=dcfg)
    val_data = load_dataset(cfg["data"], "val", config=dcfg)
    torch.manual_seed(tcfg.seed)
    net = spec.cls(from_dict(spec.config, cfg["model_config"]), train_data.info)
    trainer = Trainer(net, train_data, tcfg, run_dir, val_data, callbacks, None).resume()
    if train_overrides:
        write_json_atomic(Path(run_dir) / "config.json", cfg | {"train_config": to_dict(tcfg)})
    return _finish(trainer, cfg["model"], cfg["data"], dcfg, tcfg, train_data.info)


def _finish(trainer: Trainer, model: str, data: str, dcfg, tcfg, info: DataInfo) -> Run:
    state = trainer.fit()
    run = Run(trainer.out, trainer.model, model, data, dcfg, tcfg, info, state)
    if trainer.out and trainer.dist.is_main:
        last = state.history[-1] if state.history else {}
        write_json_atomic(trainer.out / "summary.json", {
            "model": model, "data": data, "epochs_done": state.epoch, "steps": state.global_step,
            "interrupted": state.interrupted, "last_epoch": last,
            "train_time_s": round(sum(r.get("time_s", 0) for r in state.history), 3)})
    return run


def read_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise GenlabError(f"{run_dir} is not a genlab run folder (no config.json); "
                          f"pass the --out folder of a `genlab train` run")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GenlabError(f"{path}: not valid JSON ({e})") from None


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """Rebuild a run's model from ``config.json`` and ``checkpoints/last.pt``."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    spec = get_model_spec(cfg["model"])
    info = DataInfo.from_dict(cfg["data_info"])
    net = spec.cls(from_dict(spec.config, cfg["model_config"]), info)
    ckpt = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    net.load_state_dict(ckpt["model"])
    net.to(pick_device(device)).eval()
    dcfg = data_config(cfg["data"], cfg["data_config"])
    tcfg = from_dict(TrainConfig, cfg["train_config"])
    state = {k: ckpt[k] for k in ("epoch", "global_step", "history")}
    return Run(run_dir, net, cfg["model"], cfg["data"], dcfg, tcfg, info, state)
