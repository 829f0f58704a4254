"""Experiments: one command reproduces one classic result, writing figures and ``summary.json``."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError


@dataclass
class Experiment:
    name: str
    fn: Callable[..., dict]
    description: str
    family: str


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str, description: str, family: str):
    """Decorator for ``fn(out: Path, quick: bool, data_dir: str | None) -> dict`` (the summary)."""
    def deco(fn):
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} registered twice")
        EXPERIMENTS[name] = Experiment(name, fn, description, family)
        return fn
    return deco


def list_experiments() -> list[Experiment]:
    from . import BUILTIN_MODULES  # noqa: F401
    return sorted(EXPERIMENTS.values(), key=lambda e: (e.family, e.name))


def run_experiment(name: str, out: str | Path | None = None, quick: bool = False,
                   data_dir: str | None = None) -> dict:
    """Run experiment ``name`` into ``out`` (default ``runs/experiments/NAME``); returns its summary."""
    from . import BUILTIN_MODULES  # noqa: F401
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; `genlab experiment list` shows: "
                          f"{', '.join(sorted(EXPERIMENTS))}")
    out = Path(out or Path("runs") / "experiments" / name)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = EXPERIMENTS[name].fn(out=out, quick=quick, data_dir=data_dir)
    summary = {"experiment": name, "quick": quick, **summary,
               "wall_time_s": round(time.perf_counter() - start, 2)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary
