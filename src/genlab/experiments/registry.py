"""Experiments as declarations: the runs to train (model, data, settings, quick overrides) and an
analysis that reads the trained runs and turns them into figures and ``summary.json``.

    declare(Experiment(
        name="vae-sgvb-vs-analytic", family="vae", description="...",
        runs=[Setting("sgvb", "vae", {"objective": "sgvb", "epochs": 30}, quick={"epochs": 5}),
              Setting("analytic", "vae", {"objective": "analytic", "epochs": 30}, quick={"epochs": 5})],
        analyze=compare_objectives))

``genlab experiment run NAME [--quick]`` trains each setting into ``OUT/<setting name>`` (data: the
setting's own, else the experiment's -- MNIST for full runs, the bundled digits for quick ones),
then calls ``analyze(ctx)``; ``ctx.runs`` maps setting names to trained runs. The analysis only reads
and draws: no experiment trains by hand. An experiment without runs is an analysis alone (e.g. a
numerical check). The module declaring it is listed in ``genlab.catalog.EXPERIMENTS``.

What a run needs beyond its options is declared on its ``Setting`` and done by the runner:

* ``callbacks(ctx, setting) -> [fn(trainer, event)]``: e.g. snapshot grids at declared epochs
  (``common.snapshot_callbacks``);
* ``step_hooks(ctx, setting) -> [fn(trainer)]``: after every optimizer step, e.g. per-layer gradient
  norms, or a training budget (steps, or minutes in full runs) with held-out measurements
  (``common.training_budget``);
* ``may_diverge``: a run whose loss stops being finite is recorded in ``ctx.diverged`` (its folder
  keeps what it logged) instead of ending the experiment.

Values that differ between full and ``--quick`` runs are declared, never branched on inline: a
setting's ``quick`` overrides, and ``common.Both(full=..., quick=...)`` for anything else.

Every experiment states its ``claim`` (one sentence: the point it makes, naming the paper or course
item it reproduces) and a ``check(summary) -> Check`` computed from its own summary: whether the claim
holds, what was measured and what the claim expects. The runner writes ``claim``, ``verdict`` (``shown``,
``not shown``, or for a ``--quick`` run of an experiment that declares ``quick_cannot`` -- why the quick
run cannot show it and the command that does -- ``cannot show in quick mode``), ``measured`` and
``expected`` into ``summary.json``. ``examples`` holds two small summaries, one the claim holds for and
one it does not, so that a test sees each check's verdict flip.

An experiment may take options: a config dataclass ``options`` whose fields are the flags of
``genlab experiment run NAME`` (``--help`` lists them) and the ``options`` keywords of ``run_experiment``.
The analysis reads them as ``ctx.options``; a callable ``runs`` then receives them too,
``runs(quick, options) -> list[Setting]`` (e.g. no training when an option names pretrained weights).

Output folders follow ``genlab train``'s rule: a folder that holds anything is refused, unless it is
this experiment's own earlier output (its ``experiment.json`` names it) and ``overwrite`` is given,
which clears it first; the default folder ``runs/experiments/NAME`` is numbered (``NAME-2``, ...) when taken.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genlab import catalog
from genlab.config import from_dict
from genlab.errors import ConfigError, GenlabError, TrainingDiverged
from genlab.training.rundir import RunDir, read_json, write_json_atomic

MARKER = "experiment.json"       # names the experiment that owns a folder (written before anything else)
DEFAULT_ROOT = Path("runs") / "experiments"


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
    callbacks: Callable[[Context, Setting], list] | None = None    # -> [fn(trainer, event)], e.g. snapshot grids
    step_hooks: Callable[[Context, Setting], list] | None = None   # -> [fn(trainer)] after every optimizer step
    may_diverge: bool = False      # a diverged run goes to ctx.diverged instead of failing the experiment


@dataclass
class Context:
    out: Path
    quick: bool
    data_dir: str | None
    runs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Setting] = field(default_factory=dict)
    options: Any = None            # the experiment's options (an instance of Experiment.options), if it has any
    diverged: dict[str, str] = field(default_factory=dict)   # setting name -> message (``Setting.may_diverge``)
    experiment: Experiment | None = None

    @property
    def figures(self) -> Path:
        return self.out / "figures"

    def folder(self, setting: str) -> Path:
        """The run folder of setting ``setting`` (also for a diverged run, which is not in ``runs``)."""
        return self.out / setting

    def plan(self, s: Setting) -> tuple[str, dict]:
        """(dataset, options) that setting ``s`` trains with: the quick overrides applied, the data folder
        passed on to datasets that read one."""
        from genlab.data.registry import get_spec
        exp = self.experiment
        default, quick_default = (exp.data, exp.quick_data) if exp else ("mnist", "digits")
        data = (s.quick_data or s.data or quick_default) if self.quick else (s.data or default)
        options = dict(s.options) | (dict(s.quick) if self.quick else {})
        if self.data_dir and "data_dir" in {f.name for f in dataclasses.fields(get_spec(data).config)}:
            options.setdefault("data_dir", self.data_dir)
        options.setdefault("progress", not self.quick)
        return data, options


SHOWN, NOT_SHOWN, CANNOT_SHOW = "shown", "not shown", "cannot show in quick mode"


@dataclass(frozen=True)
class Check:
    """What an experiment's check found: whether its claim ``holds``, the value ``measured`` and the value
    the claim ``expects`` (both as short text, e.g. "FID 12.3, real floor 5.1" and "FID < 3x the floor")."""
    holds: bool
    measured: str
    expected: str

    def __post_init__(self):
        object.__setattr__(self, "holds", bool(self.holds))     # e.g. a numpy bool from a comparison


@dataclass
class Experiment:
    name: str
    family: str
    description: str
    analyze: Callable[[Context], dict]
    runs: list[Setting] | Callable[..., list[Setting]] = field(default_factory=list)   # or a Both of lists
    data: str = "mnist"            # full runs
    quick_data: str = "digits"     # --quick runs
    one_thread_quick: bool = False  # tiny networks: one intra-op thread (measured faster on 2 busy cores)
    one_thread: bool = False       # one intra-op thread for full runs too (timed comparisons)
    quick_note: str = ""           # what --quick can and cannot show
    options: type | None = None    # a config dataclass: the experiment's own flags (see the module docstring)
    claim: str = ""                # the point it makes, one sentence, naming the paper or course item
    check: Callable[[dict], Check] | None = None   # summary -> Check: does the claim hold on these results?
    quick_cannot: str = ""         # why --quick cannot show the claim, and the command that shows it
    examples: tuple[dict, ...] = ()   # (a summary the claim holds for, one it does not): the check's own test

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
    """Declare an experiment (list its name in ``genlab.catalog.EXPERIMENTS``). Its ``family`` is the folder
    that lists it (``catalog.family_of``; the core's cross-family experiments say "report")."""
    listed = catalog.family_of("experiment", exp.name)
    if listed is not None and exp.family != listed:
        raise ValueError(f"experiment {exp.name!r}: family={exp.family!r}, but families/{listed}/ lists it")
    return catalog.register("experiment", exp.name, exp)


def verdict(exp: Experiment, summary: dict) -> dict:
    """The entries the runner adds to ``summary`` (which holds ``quick``): the claim, the verdict of the
    experiment's check on it, what was measured and what was expected. A claim that does not hold in a
    quick run of an experiment declaring ``quick_cannot`` is "cannot show in quick mode", with the reason."""
    if exp.check is None:
        return {}
    result = exp.check(summary)
    if result.holds:
        word = SHOWN
    elif summary.get("quick") and exp.quick_cannot:
        word = CANNOT_SHOW
    else:
        word = NOT_SHOWN
    return {"claim": exp.claim, "verdict": word, "measured": result.measured, "expected": result.expected,
            **({"quick_cannot": exp.quick_cannot} if word == CANNOT_SHOW else {})}


def list_experiments() -> list[Experiment]:
    return sorted(catalog.load_all("experiment").values(), key=lambda e: (e.family, e.name))


def train_setting(exp: Experiment, ctx: Context, s: Setting):
    """Train one declared setting into ``ctx.folder(s.name)`` (a new folder inside the experiment's own);
    a diverged ``may_diverge`` setting is recorded in ``ctx.diverged`` and returns None."""
    from genlab.api import train
    data, options = ctx.plan(s)
    callbacks = s.callbacks(ctx, s) if s.callbacks else []
    step_hooks = s.step_hooks(ctx, s) if s.step_hooks else []
    try:
        return train(s.model, data, ctx.folder(s.name), report=s.report, callbacks=callbacks,
                     step_hooks=step_hooks, **options)
    except TrainingDiverged as e:
        if not s.may_diverge:
            raise
        ctx.diverged[s.name] = str(e)
        return None


def owner(folder: Path) -> str | None:
    """The experiment whose output ``folder`` is (its marker, or the summary an older version wrote), if any."""
    for path in (folder / MARKER, folder / "summary.json"):
        if path.is_file() and not (folder / "config.json").exists():   # a training run is no experiment's
            try:
                name = read_json(path).get("experiment")
            except GenlabError:
                return None
            return name if isinstance(name, str) else None
    return None


def _unused(folder: Path, name: str) -> bool:
    """Nothing in ``folder``, or only what a start of experiment ``name`` that wrote nothing else left
    (its marker and an empty ``figures/``)."""
    left = {p.name: p for p in folder.iterdir()}
    if left and owner(folder) != name:
        return False
    figures = left.pop("figures", None)
    left.pop(MARKER, None)
    return not left and (figures is None or (figures.is_dir() and not any(figures.iterdir())))


def prepare_output(name: str, out: str | Path | None, overwrite: bool = False) -> Path:
    """The experiment's output folder, ready to write: a new or empty folder, or (``overwrite``) its own
    earlier output, cleared. A folder holding anything else is refused before anything is written."""
    if out is None:
        out = RunDir.fresh_default(DEFAULT_ROOT, name).path
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenlabError(f"--out {out} is a file, not a folder; choose another --out")
    if out.is_dir() and not _unused(out, name):
        own = owner(out) == name
        if not (own and overwrite):
            if own:
                raise GenlabError(f"--out {out} already holds an earlier output of {name}; replace it with "
                                  f"--overwrite, or choose another --out (without --out every run gets a new "
                                  f"numbered folder under {DEFAULT_ROOT})")
            what = "a genlab training run" if (out / "config.json").exists() else (
                f"the output of experiment {owner(out)}" if owner(out) else "files that are not this experiment's")
            raise GenlabError(f"--out {out} already holds {what}; an experiment writes only into a new or empty "
                              f"folder (--overwrite replaces only its own earlier output): choose another --out, "
                              f"or omit it for a new numbered folder under {DEFAULT_ROOT}")
        shutil.rmtree(out)
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenlabError(f"cannot write to {out}: {e.strerror or e}; choose another --out") from None
    write_json_atomic(out / MARKER, {"experiment": name})
    return out


def run_experiment(name: str, out: str | Path | None = None, quick: bool = False,
                   data_dir: str | None = None, options: dict | None = None, overwrite: bool = False) -> dict:
    """Run experiment ``name`` into ``out`` (default ``runs/experiments/NAME``, numbered when taken);
    returns its summary. ``out`` must be new or empty, or this experiment's own output with ``overwrite``.
    ``options``: values of the experiment's own options (``Experiment.options``), by field name."""
    exp = catalog.get("experiment", name)
    opts = exp.make_options(options)
    settings = exp.settings(quick, opts)
    out = prepare_output(name, out, overwrite)
    ctx = Context(out, quick, data_dir, options=opts, experiment=exp)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    if exp.one_thread or (quick and exp.one_thread_quick):
        torch.set_num_threads(1)
    try:
        for s in settings:
            ctx.settings[s.name] = s
            run = train_setting(exp, ctx, s)
            if run is not None:
                ctx.runs[s.name] = run
        summary = exp.analyze(ctx) or {}
    finally:
        torch.set_num_threads(threads)
    summary = {"experiment": name, "family": exp.family, "quick": quick, **summary,
               **({"quick_note": exp.quick_note} if quick and exp.quick_note else {}),
               "wall_time_s": round(time.perf_counter() - start, 2)}
    summary |= verdict(exp, summary)
    write_json_atomic(out / "summary.json", summary)
    return summary
