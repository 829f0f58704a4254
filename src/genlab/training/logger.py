"""A run's files: ``config.json``, ``metrics.jsonl`` (every row), ``metrics.csv`` (one row per epoch),
TensorBoard events (``tensorboard/``) when the ``tensorboard`` extra is installed, and the progress: an
epoch bar on a terminal, plain ``step`` lines off it (``genlab.progress``)."""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from genlab.errors import GenlabError
from genlab.progress import Lines, on_terminal, progress
from genlab.training.rundir import RunDir, dumps, write_json_atomic  # noqa: F401  (write_json_atomic re-exported)


class MetricsLogger:
    def __init__(self, out: Path | None, run_config: dict | None = None):
        self.out = out
        self._tb = None      # the SummaryWriter, opened at the first row (a resume with nothing to do writes none)
        self._tb_tried = False
        if out is None:
            return
        RunDir(out).ensure_layout()

    def _tensorboard(self):
        """``torch.utils.tensorboard.SummaryWriter`` into ``out/tensorboard``; None without the extra."""
        if not self._tb_tried:
            self._tb_tried = True
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:  # the tensorboard extra is not installed
                self._tb = None
        return self._tb

    @property
    def jsonl(self) -> Path:
        return self.out / "metrics.jsonl"

    def log(self, row: dict) -> None:
        if self.out is None:
            return
        with open(self.jsonl, "a") as f:
            f.write(dumps(row, indent=None) + "\n")
        if (tb := self._tensorboard()) is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    tb.add_scalar(f"{row.get('split', 'train')}/{k}", v, row.get("step", 0))

    def epoch_row(self, row: dict) -> None:
        """Rewrite ``metrics.csv`` from the epoch rows in ``metrics.jsonl`` (columns may grow)."""
        if self.out is None:
            return
        rows = [r for r in read_jsonl(self.jsonl) if r.get("split") == "epoch"]
        columns = list(dict.fromkeys(k for r in rows for k in r if k != "split"))
        tmp = self.out / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, "") for k in columns})
        os.replace(tmp, self.out / "metrics.csv")

    def truncate_after(self, step: int) -> None:
        """On resume: drop rows logged after the checkpoint, so the files match an unbroken run."""
        if self.out is None or not self.jsonl.exists():
            return
        keep = [r for r in read_jsonl(self.jsonl) if r.get("step", 0) <= step and r.get("split") != "note"]
        tmp = self.jsonl.with_suffix(".tmp")
        tmp.write_text("".join(dumps(r, indent=None) + "\n" for r in keep))
        os.replace(tmp, self.jsonl)

    def note(self, message: str) -> None:
        print(message, file=sys.stderr)

    def progress(self, total: int, label: str, initial: int, enabled: bool):
        """The epoch's bar, on a terminal only (off it the run's :meth:`step_lines` report instead)."""
        return progress(desc=label, total=total, initial=initial, enabled=enabled and on_terminal())

    def step_lines(self, total_steps: int, done: int, kind: str, enabled: bool) -> Lines | None:
        """Off a terminal, the run's plain lines ``step 500/5000 · loss 1.92 · 3.1 k tok/s · eta 4 m``,
        written when the loop writes a metrics row (every ``log_every`` steps and at each epoch's end);
        None on a terminal (the bar shows it) or when progress is off."""
        if not enabled or on_terminal():
            return None
        return Lines(None, "step", total_steps, initial=done, unit=UNITS.get(kind, "ex"), every=2**62)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


UNITS = {"text": "tok", "image": "img", "points": "pts", "rays": "rays", "pairs": "pairs"}   # by DataInfo.kind


def batch_work(batches: list, kind: str) -> int:
    """What a step consumed, in ``UNITS[kind]``: tokens of text windows, else examples (images, rays...)."""
    return sum(b[0].numel() if kind == "text" else len(b[0]) for b in batches)


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file. A last line cut short (a run killed or a disk filled mid-write) is
    dropped, as resume drops it from the file; a damaged line elsewhere stops with one clear line."""
    if not Path(path).exists():
        return []
    lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    rows = []
    for i, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                break
            raise GenlabError(f"{path}: line {i} is not valid JSON (was the file edited?); fix or delete "
                              f"that line") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows
