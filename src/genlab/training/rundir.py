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

from genlab.errors import GenlabError

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
        """Anything in the folder but the empty layout that a failed start may have left."""
        return self.path.is_dir() and bool(self._content())

    def _content(self, ignore: tuple[str, ...] = ()) -> list[Path]:
        empty_layout = lambda c: c.name in ("checkpoints", "figures", "samples") and c.is_dir() and not any(c.iterdir())  # noqa: E731
        return [c for c in self.path.iterdir() if c.name not in ignore and not empty_layout(c)]

    # ---------------------------------------------------------------- creating
    def prepare_new(self, overwrite: bool = False) -> None:
        """Make the folder ready for a fresh run; refuse to touch one that holds anything unless
        ``overwrite``. Checks that the folder can be written before any training starts."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise GenlabError(f"--out {p} is a file, not a folder; choose another --out")
        if self.has_content():
            if not overwrite:
                self._refuse_taken()
            if not self.is_run():
                raise GenlabError(f"{p} holds files that are not a genlab run; --overwrite only replaces "
                                  f"run folders. Choose another --out")
            shutil.rmtree(p)
        self.ensure_layout()

    def _refuse_taken(self) -> None:
        p = self.path
        what = "a genlab run" if self.is_run() else "files"
        raise GenlabError(f"{p} already holds {what}; continue it with `genlab train --resume {p}`, "
                          f"start it again with --overwrite, or choose another --out")

    def check_new(self, overwrite: bool = False) -> None:
        """The read-only part of :meth:`prepare_new`, for the other ranks under ``torchrun``: each worker
        refuses a taken folder by itself and exits at once, instead of waiting for rank 0 in the process
        group. What rank 0 may already have made (the empty layout) does not count."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise GenlabError(f"--out {p} is a file, not a folder; choose another --out")
        if overwrite or not p.is_dir():
            return
        try:
            taken = self._content(ignore=(".write-test",))
        except OSError:   # rank 0 is changing the folder right now; it decides
            return
        if taken:
            self._refuse_taken()

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
    def fresh_default(base: str | Path, name: str) -> RunDir:
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
        for key, kind in (("model", str), ("data", str), ("model_config", dict), ("data_config", dict),
                          ("train_config", dict), ("data_info", dict)):
            if not isinstance(cfg.get(key), kind) or cfg.get(key) in ("", None):
                what = "a name" if kind is str else "a JSON object"
                raise GenlabError(f"{self.config}: the {key!r} entry is missing, empty or not {what}; this file "
                                  f"was edited or damaged, so the run cannot be rebuilt from it")
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
