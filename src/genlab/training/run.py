"""Runs: build data + model from configs, train, and load a finished run back from its folder.

``train("vae", data="digits", epochs=20, z_dim=2)`` routes each keyword to the config that owns
it (model, dataset or training); ``load_run(dir)`` rebuilds the model from ``config.json`` and the
last checkpoint, so ``eval``, ``sample`` and ``report`` never need the live process. The run folder
itself is owned by :class:`~genlab.training.rundir.RunDir`.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab import __version__
from genlab.config import from_dict, to_dict
from genlab.data.registry import DataInfo, data_config, get_spec, load_dataset
from genlab.errors import ConfigError, GenlabError
from genlab.model import check_model_size, get_model_spec
from genlab.training import checkpoint
from genlab.training.config import TrainConfig
from genlab.training.distributed import pick_device
from genlab.training.loop import Trainer
from genlab.training.rundir import RunDir


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

    def data(self, split: str, data_dir: str | None = None):
        """A split of the run's dataset (``data_dir`` replaces the folder the run was trained from)."""
        cfg = self.data_config
        if any(f.name == "data_dir" for f in dataclasses.fields(cfg)):
            stored = cfg.data_dir
            if data_dir:
                cfg = dataclasses.replace(cfg, data_dir=data_dir)
            elif stored and not Path(stored).expanduser().is_dir() and os.environ.get("GENLAB_DATA"):
                cfg = dataclasses.replace(cfg, data_dir=None)   # the data moved: $GENLAB_DATA says where to
        return load_dataset(self.data_name, split, config=cfg)

    @property
    def folder(self) -> RunDir:
        return RunDir(self.dir)

    @property
    def figures(self) -> Path:
        return self.folder.figures

    @property
    def spec(self):
        return get_model_spec(self.model_name)


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
    """Resolve and validate every config; returns (spec, data name, model, data and train configs)."""
    spec = get_model_spec(model)
    data = data or spec.default_data
    m, d, t = split_overrides(model, data, options)
    known = {f.name for f in dataclasses.fields(get_spec(data).config)}   # e.g. no pixel view for points
    d = {k: v for k, v in spec.data_defaults.items() if k in known} | (data_options or {}) | d
    m, t = (model_options or {}) | m, spec.train_defaults | (train_options or {}) | t
    train_cfg = from_dict(TrainConfig, t, where="training")
    dcfg = data_config(data, d)
    return spec, data, from_dict(spec.config, m, where=f"model {model}"), dcfg, train_cfg


def _rank() -> int:
    import os
    return int(os.environ.get("RANK", "0"))


def _load_splits(data: str, dcfg, check_test: bool = True):
    """The train and val splits; the test split is read too so a bad file stops the run before the
    first step rather than after training."""
    train_data = load_dataset(data, "train", config=dcfg)
    val_data = load_dataset(data, "val", config=dcfg)
    if check_test:
        load_dataset(data, "test", config=dcfg)
    return train_data, val_data


def _build(spec, mcfg, info: DataInfo):
    check_model_size(spec, mcfg, info)   # a model that cannot fit is refused before it is allocated
    try:
        return spec.cls(mcfg, info)
    except (ValueError, RuntimeError) as e:   # a config that builds no valid network
        raise ConfigError(f"model {spec.name}: these settings do not build a network ({e})") from None


def _rebuild(spec, folder: RunDir, model_config: dict, info: DataInfo):
    """A saved run's network from its config.json: whatever stops the rebuild (a damaged value that the
    model's constructor trips over) is one line naming the file."""
    mcfg = from_dict(spec.config, model_config, where=f"{folder.config}")
    try:
        return _build(spec, mcfg, info)
    except GenlabError as e:
        raise GenlabError(f"{folder.config}: {e}") from None
    except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError, RuntimeError) as e:
        raise GenlabError(f"{folder.config}: the saved {spec.name} model cannot be rebuilt ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]}); this file was edited or damaged, so restore it "
                          f"from a copy or train the run again") from None


def train(model: str, data: str | None = None, out: str | Path | None = None, *,
          callbacks: list[Callable] = (), step_hooks: list[Callable] = (), resume: bool = False,
          overwrite: bool = False, model_options: dict | None = None, data_options: dict | None = None,
          train_options: dict | None = None, **options) -> Run:
    """Train registered ``model`` on dataset ``data`` into the folder ``out``; returns the :class:`Run`.

    ``out`` must be new or empty unless ``overwrite`` (clears it) or ``resume`` (continues it).
    Figures and test metrics are the caller's (``genlab.api.train`` adds them, as ``genlab train`` does).
    """
    if resume:
        return resume_run(out, callbacks=callbacks, step_hooks=step_hooks, **(train_options or {}))
    spec, data, mcfg, dcfg, tcfg = prepare(model, data, model_options, data_options, train_options, **options)
    pick_device(tcfg.device)   # an unavailable --device stops here, before the folder is touched
    folder = RunDir(out) if out else None
    if folder is not None:   # read-only: a taken folder is refused before the data is read
        folder.check_new(overwrite)
    train_data, val_data = _load_splits(data, dcfg)
    torch.manual_seed(tcfg.seed)
    net = _build(spec, mcfg, train_data.info)
    if folder is not None and _rank() == 0:   # only now, with data and model good; rank 0 alone owns the folder
        folder.prepare_new(overwrite)
    trainer = Trainer(net, train_data, tcfg, out, val_data, callbacks, step_hooks=step_hooks)
    if folder is not None and trainer.dist.is_main:
        folder.write_config({"genlab_version": __version__, "model": model, "model_config": to_dict(mcfg),
                             "data": data, "data_config": to_dict(dcfg), "train_config": to_dict(tcfg),
                             "data_info": train_data.info.to_dict(),
                             "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    return _finish(trainer, model, data, dcfg, tcfg, train_data.info)


def resume_run(run_dir: str | Path, callbacks: list[Callable] = (), step_hooks: list[Callable] = (),
               **train_overrides) -> Run:
    """Continue an interrupted (or extend a finished) run from its last checkpoint, with the same
    configs; ``train_overrides`` may change training settings (e.g. more epochs, a lower lr). The
    config file is rewritten only once the resumed run has finished its first checkpoint interval
    without diverging."""
    folder = RunDir(run_dir)
    cfg = folder.read_config()
    spec = get_model_spec(cfg["model"])
    tcfg = from_dict(TrainConfig, cfg["train_config"] | train_overrides, where="training")
    dcfg = data_config(cfg["data"], cfg["data_config"])
    train_data, val_data = _load_splits(cfg["data"], dcfg)
    torch.manual_seed(tcfg.seed)
    net = _rebuild(spec, folder, cfg["model_config"], train_data.info)
    trainer = Trainer(net, train_data, tcfg, run_dir, val_data, callbacks, step_hooks=step_hooks)
    trainer.resume()
    s = trainer.state
    if (tcfg.max_steps is not None and s.global_step >= tcfg.max_steps) or (
            tcfg.max_steps is None and s.epoch >= tcfg.epochs):
        goal = f"step {s.global_step} of {tcfg.max_steps}" if tcfg.max_steps else f"epoch {s.epoch} of {tcfg.epochs}"
        print(f"{run_dir} is already at {goal}: nothing to do (raise --epochs or --max-steps to train on)")
        s.idle = True
        return Run(folder.path, trainer.eval_model, cfg["model"], cfg["data"], dcfg, tcfg, train_data.info, s)
    run = _finish(trainer, cfg["model"], cfg["data"], dcfg, tcfg, train_data.info)
    if train_overrides and trainer.dist.is_main:   # accepted: the run trained on with them
        folder.write_config(cfg | {"train_config": to_dict(tcfg)})
    return run


def _finish(trainer: Trainer, model: str, data: str, dcfg, tcfg, info: DataInfo) -> Run:
    folder = RunDir(trainer.out) if trainer.out else None
    start = time.perf_counter()
    try:
        state = trainer.fit()
    except GenlabError as e:
        if folder is not None and trainer.dist.is_main:
            try:
                _write_summary(folder, trainer, model, data, "failed", str(e), time.perf_counter() - start)
            except GenlabError:   # e.g. the disk is full: the first error is the one to show
                pass
        raise
    run = Run(trainer.out, trainer.eval_model, model, data, dcfg, tcfg, info, state)
    if folder is not None and trainer.dist.is_main:
        _write_summary(folder, trainer, model, data, "interrupted" if state.interrupted else "finished", None,
                       time.perf_counter() - start)
    return run


def _write_summary(folder: RunDir, trainer: Trainer, model: str, data: str, status: str, message, seconds):
    s = trainer.state
    previous = folder.read_summary() if folder.summary.exists() else {}
    total = previous.get("train_time_s", 0.0) + seconds if trainer.state.global_step else seconds
    last = s.history[-1] if s.history else {}
    folder.write_summary({
        "model": model, "data": data, "status": status, "message": message, "epochs_done": s.epoch,
        "steps": s.global_step, "interrupted": s.interrupted, "last_epoch": last,
        "train_time_s": round(total, 3)})


def read_config(run_dir: str | Path) -> dict:
    return RunDir(run_dir).read_config()


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """Rebuild a run's model from ``config.json`` and ``checkpoints/last.pt`` (EMA weights when the run
    kept them)."""
    folder = RunDir(run_dir)
    cfg = folder.read_config()
    spec = get_model_spec(cfg["model"])
    try:
        info = DataInfo.from_dict(cfg["data_info"])
    except ConfigError as e:
        raise GenlabError(f"{folder.config}: the data_info entry is damaged ({e}); this file was edited or "
                          f"damaged, so the run cannot be rebuilt from it") from None
    net = _rebuild(spec, folder, cfg["model_config"], info)
    ckpt = checkpoint.load(folder.checkpoint, need=("model",))
    ema = ckpt.get("ema")
    weights = ema["model"] if isinstance(ema, dict) and isinstance(ema.get("model"), dict) else ckpt["model"]
    checkpoint.load_weights(net, weights, folder.checkpoint, folder.config)
    net.to(pick_device(device)).eval()
    dcfg = data_config(cfg["data"], cfg["data_config"])
    tcfg = from_dict(TrainConfig, cfg["train_config"], where=f"{folder.config}")
    state = {k: ckpt.get(k, [] if k == "history" else 0) for k in ("epoch", "global_step", "history")}
    if not (all(type(state[k]) is int and state[k] >= 0 for k in ("epoch", "global_step"))
            and isinstance(state["history"], list)):
        raise GenlabError(f"{folder.checkpoint}: the checkpoint's step counters are damaged (epoch "
                          f"{state['epoch']!r}, global_step {state['global_step']!r}); restore it from a copy, "
                          f"or train again into a new folder")
    return Run(folder.path, net, cfg["model"], cfg["data"], dcfg, tcfg, info, state)
