"""The one object that owns a run folder: its layout, what may be written into it, and when.

    RUN/config.json          every config as used (written once the settings are accepted)
    RUN/metrics.jsonl        every logged row;  RUN/metrics.csv: one row per epoch
    RUN/checkpoints/last.pt  written atomically
    RUN/figures/  RUN/samples/
    RUN/summary.json         status (finished / interrupted / failed + message), steps, time
    RUN/eval.json            the schema of :func:`eval_record`

A run folder that holds anything is never trained into again unless the user says so: ``resume``
continues it, ``overwrite`` clears it first.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from ..errors import GenlabError

EVAL_SCHEMA = 1


def _finite(obj):
    """JSON-safe copy: non-finite floats become None (strict JSON has no NaN or Infinity)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:   # numpy / torch scalars
        return _finite(obj.item())
    return obj


def dumps(obj, indent: int | None = 2) -> str:
    """Strict JSON (non-finite numbers written as null)."""
    return json.dumps(_finite(obj), indent=indent, default=str, allow_nan=False)


def write_json_atomic(path: str | Path, obj) -> None:
    """Write strict JSON to a temp file and rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(dumps(obj) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise GenlabError(f"cannot write {path}: {e.strerror or e}; free some space or choose another --out") from None


def read_json(path: str | Path, what: str = "file") -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise GenlabError(f"{path}: no {what} here") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GenlabError(f"{path}: not valid JSON ({e}); restore it or train again into a new folder") from None
    if not isinstance(data, dict):
        raise GenlabError(f"{path}: expected a JSON object")
    return data


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ---------------------------------------------------------------- layout
    config = property(lambda self: self.path / "config.json")
    metrics_jsonl = property(lambda self: self.path / "metrics.jsonl")
    metrics_csv = property(lambda self: self.path / "metrics.csv")
    checkpoints = property(lambda self: self.path / "checkpoints")
    checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    figures = property(lambda self: self.path / "figures")
    samples = property(lambda self: self.path / "samples")
    summary = property(lambda self: self.path / "summary.json")
    eval_json = property(lambda self: self.path / "eval.json")

    def __str__(self) -> str:
        return str(self.path)

    def is_run(self) -> bool:
        return self.config.exists()

    def has_content(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    # ---------------------------------------------------------------- creating
    def prepare_new(self, overwrite: bool = False) -> None:
        """Make the folder ready for a fresh run; refuse to touch one that holds anything unless
        ``overwrite``. Checks that the folder can be written before any training starts."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise GenlabError(f"--out {p} is a file, not a folder; choose another --out")
        if self.has_content():
            if not overwrite:
                what = "a genlab run" if self.is_run() else "files"
                raise GenlabError(f"{p} already holds {what}; continue it with `genlab train --resume {p}`, "
                                  f"start it again with --overwrite, or choose another --out")
            if not self.is_run():
                raise GenlabError(f"{p} holds files that are not a genlab run; --overwrite only replaces "
                                  f"run folders. Choose another --out")
            shutil.rmtree(p)
        self.ensure_layout()

    def ensure_layout(self) -> None:
        try:
            for sub in ("checkpoints", "figures", "samples"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise GenlabError(f"cannot write to {self.path}: {e.strerror or e}; choose another --out") from None

    @staticmethod
    def fresh_default(base: str | Path, name: str) -> "RunDir":
        """``base/name``, or ``base/name-2``, ``-3``, ... : a default folder never collides with a run."""
        base = Path(base)
        candidate, i = base / name, 2
        while candidate.exists():
            candidate, i = base / f"{name}-{i}", i + 1
        return RunDir(candidate)

    # ---------------------------------------------------------------- reading
    def read_config(self) -> dict:
        if not self.config.exists():
            raise GenlabError(f"{self.path} is not a genlab run folder (no config.json); "
                              f"pass the --out folder of a `genlab train` run")
        cfg = read_json(self.config, "config")
        for key in ("model", "data", "model_config", "data_config", "train_config", "data_info"):
            if not isinstance(cfg.get(key), (str, dict)) or cfg.get(key) in ("", None):
                raise GenlabError(f"{self.config}: the {key!r} entry is missing or empty; this file was "
                                  f"edited or damaged, so the run cannot be rebuilt from it")
        return cfg

    def write_config(self, cfg: dict) -> None:
        write_json_atomic(self.config, cfg)

    def read_summary(self) -> dict:
        return read_json(self.summary, "summary") if self.summary.exists() else {}

    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.summary, summary)

    def write_eval(self, record: dict) -> None:
        write_json_atomic(self.eval_json, record)

    def read_eval(self) -> dict:
        return read_json(self.eval_json, "eval.json") if self.eval_json.exists() else {}


def eval_record(model: str, data: str, split: str, examples: int, seed: int, options: dict, metrics: dict,
                seconds: float) -> dict:
    """The one schema of ``eval.json`` and of ``genlab eval --json``."""
    return {"schema": EVAL_SCHEMA, "model": model, "data": data, "split": split, "examples": examples,
            "seed": seed, "options": options, "metrics": metrics, "eval_time_s": round(seconds, 3)}
