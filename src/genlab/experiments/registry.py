"""Experiments as declarations: the runs to train (model, data, settings, quick overrides) and an
analysis that turns the trained runs into figures and ``summary.json``.

    declare(Experiment(
        name="vae-sgvb-vs-analytic", family="vae", description="...",
        runs=[Setting("sgvb", "vae", {"objective": "sgvb", "epochs": 30}, quick={"epochs": 5}),
              Setting("analytic", "vae", {"objective": "analytic", "epochs": 30}, quick={"epochs": 5})],
        analyze=compare_objectives))

``genlab experiment run NAME [--quick]`` trains each setting into ``OUT/<setting name>`` (data: the
setting's own, else the experiment's -- MNIST for full runs, the bundled digits for quick ones),
then calls ``analyze(ctx)``; ``ctx.runs`` maps setting names to trained runs. An experiment without
runs is an analysis alone (e.g. a numerical check). The module declaring it is listed in
``genlab.catalog.EXPERIMENTS``.

An experiment may take options: a config dataclass ``options`` whose fields are the flags of
``genlab experiment run NAME`` (``--help`` lists them) and the ``options`` keywords of ``run_experiment``.
The analysis reads them as ``ctx.options``; a callable ``runs`` then receives them too,
``runs(quick, options) -> list[Setting]`` (e.g. no training when an option names pretrained weights).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genlab import catalog
from genlab.config import from_dict
from genlab.errors import ConfigError
from genlab.train.rundir import write_json_atomic


@dataclass
class Setting:
    """One training run of an experiment."""
    name: str                      # its sub-folder and key in ctx.runs
    model: str
    options: dict = field(default_factory=dict)    # model, data and training options (full run)
    quick: dict = field(default_factory=dict)      # overrides applied with --quick
    data: str | None = None        # None: the experiment's data
    quick_data: str | None = None  # None: the experiment's quick data (or ``data`` when set)
    report: bool = False           # write eval.json + figures into the run folder


@dataclass
class Context:
    out: Path
    quick: bool
    data_dir: str | None
    runs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Setting] = field(default_factory=dict)
    options: Any = None            # the experiment's options (an instance of Experiment.options), if it has any

    @property
    def figures(self) -> Path:
        return self.out / "figures"


@dataclass
class Experiment:
    name: str
    family: str
    description: str
    analyze: Callable[[Context], dict]
    runs: list[Setting] | Callable[[bool], list[Setting]] = field(default_factory=list)
    data: str = "mnist"            # full runs
    quick_data: str = "digits"     # --quick runs
    callbacks: Callable[[Context, Setting], list] | None = None   # e.g. snapshot grids during training
    one_thread_quick: bool = False  # tiny networks: one intra-op thread (measured faster on 2 busy cores)
    quick_note: str = ""           # what --quick can and cannot show
    options: type | None = None    # a config dataclass: the experiment's own flags (see the module docstring)

    def make_options(self, values: dict | None = None) -> Any:
        """The experiment's options from ``values`` (field name -> value; unset fields keep their defaults)."""
        if self.options is None:
            if values:
                raise ConfigError(f"experiment {self.name} takes no options (got {', '.join(sorted(values))})")
            return None
        return from_dict(self.options, values, where=f"experiment {self.name}")

    def settings(self, quick: bool, options: Any = None) -> list[Setting]:
        if not callable(self.runs):
            return list(self.runs)
        if self.options is None:
            return list(self.runs(quick))
        return list(self.runs(quick, self.make_options() if options is None else options))


def declare(exp: Experiment) -> Experiment:
    """Declare an experiment (list its name in ``genlab.catalog.EXPERIMENTS``)."""
    return catalog.register("experiment", exp.name, exp)


def register_experiment(name: str, description: str, family: str, **kw):
    """Declare an analysis-only experiment from a function ``fn(out, quick, data_dir) -> summary``."""
    def deco(fn):
        declare(Experiment(name, family, description, lambda ctx: fn(ctx.out, ctx.quick, ctx.data_dir), **kw))
        return fn
    return deco


def list_experiments() -> list[Experiment]:
    return sorted(catalog.load_all("experiment").values(), key=lambda e: (e.family, e.name))


def train_setting(exp: Experiment, ctx: Context, s: Setting):
    """Train one declared setting into ``ctx.out / s.name`` (replacing an earlier run of it)."""
    from genlab.api import train
    data = (s.quick_data or s.data or exp.quick_data) if ctx.quick else (s.data or exp.data)
    options = dict(s.options) | (dict(s.quick) if ctx.quick else {})
    from genlab.data.registry import get_spec
    if ctx.data_dir and "data_dir" in {f.name for f in dataclasses.fields(get_spec(data).config)}:
        options.setdefault("data_dir", ctx.data_dir)
    options.setdefault("progress", not ctx.quick)
    callbacks = exp.callbacks(ctx, s) if exp.callbacks else []
    return train(s.model, data, ctx.out / s.name, overwrite=True, report=s.report, callbacks=callbacks, **options)


def run_experiment(name: str, out: str | Path | None = None, quick: bool = False,
                   data_dir: str | None = None, options: dict | None = None) -> dict:
    """Run experiment ``name`` into ``out`` (default ``runs/experiments/NAME``); returns its summary.
    ``options``: values of the experiment's own options (``Experiment.options``), by field name."""
    exp = catalog.get("experiment", name)
    opts = exp.make_options(options)
    out = Path(out or Path("runs") / "experiments" / name)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    ctx = Context(out, quick, data_dir, options=opts)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    if quick and exp.one_thread_quick:
        torch.set_num_threads(1)
    try:
        for s in exp.settings(quick, opts):
            ctx.settings[s.name] = s
            ctx.runs[s.name] = train_setting(exp, ctx, s)
        summary = exp.analyze(ctx) or {}
    finally:
        torch.set_num_threads(threads)
    summary = {"experiment": name, "family": exp.family, "quick": quick, **summary,
               **({"quick_note": exp.quick_note} if quick and exp.quick_note else {}),
               "wall_time_s": round(time.perf_counter() - start, 2)}
    write_json_atomic(out / "summary.json", summary)
    return summary
