"""Progress of long work, one way for every phase (training, evaluation, the FID classifier, sampling,
rendering): a tqdm bar with the time left when stderr is a terminal, plain periodic lines on stderr when
it is not (a log file, a pipe, a batch job), as nanoGPT prints its ``iter`` lines:

    step 500/5000 · loss 1.92 · 3.1 k tok/s · eta 4 m

Progress goes to stderr, never stdout, so results printed on stdout (``genlab eval --json``) stay clean.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable

from tqdm.auto import tqdm

LINES_PER_PHASE = 20      # plain lines of a phase of known length (one per 5 %)


def on_terminal() -> bool:
    """Whether stderr is a terminal (then a bar is drawn; otherwise plain lines are printed)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):   # a closed or replaced stream
        return False


def progress(iterable: Iterable | None = None, desc: str = "", total: int | None = None, enabled: bool = True,
             initial: int = 0, unit: str = "it", every: int | None = None):
    """Wrap ``iterable`` (or count ``update(n)`` calls) with a progress display: nothing when not
    ``enabled``; a tqdm bar on a terminal; else :class:`Lines` every ``every`` items (default: about
    ``LINES_PER_PHASE`` lines over ``total``). The result iterates, ``update``s, ``set_postfix``es and
    ``close``s alike in all three cases."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if on_terminal():
        return tqdm(iterable, desc=desc, total=total, initial=initial, unit=unit, leave=False, mininterval=0.5)
    return Lines(iterable, desc, total, initial, unit, every)


class Lines:
    """Progress as plain lines, ``desc n/total · postfix · rate unit/s · eta``, printed every ``every``
    items and by ``close`` (at the end of an iteration). The rate is of ``work`` (e.g. tokens; items
    unless given) since the last line; the time left is (total - n) times the mean seconds per item so far."""

    def __init__(self, iterable: Iterable | None, desc: str, total: int | None, initial: int = 0,
                 unit: str = "it", every: int | None = None, stream=None):
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.every = every or (max(1, math.ceil(total / LINES_PER_PHASE)) if total else 1)
        self.n = self._start = self._printed = initial
        self.postfix: dict = {}
        self.stream = stream
        self._t0 = self._t_last = time.perf_counter()
        self._work = 0.0

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:    # also when the loop stops early
            self.close()

    def update(self, n: int = 1, work: float | None = None) -> None:
        self.n += n
        self._work += n if work is None else work
        if self.n - self._printed >= self.every:
            self.write()

    def set_postfix(self, values: dict | None = None, refresh: bool = True, **kwargs) -> None:
        self.postfix = dict(values or {}) | kwargs

    def line(self) -> str:
        now = time.perf_counter()
        parts = [f"{self.desc} {self.n}/{self.total}" if self.total else f"{self.desc} {self.n}"]
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        if now > self._t_last and self._work:
            parts.append(f"{human(self._work / (now - self._t_last))} {self.unit}/s")
        done = self.n - self._start
        if self.total and done and self.n < self.total:
            parts.append(f"eta {duration((self.total - self.n) * (now - self._t0) / done)}")
        elif self.total and self.n >= self.total:
            parts.append(f"done in {duration(now - self._t0)}")
        return " · ".join(parts)

    def write(self) -> None:
        if self.n == self._printed and self.n != self._start:
            return
        print(self.line(), file=self.stream or sys.stderr, flush=True)
        self._printed, self._t_last, self._work = self.n, time.perf_counter(), 0.0

    def close(self) -> None:
        if self.n != self._printed:
            self.write()


def human(x: float) -> str:
    """3 significant digits with a k / M / G prefix: 3140 -> '3.14 k'."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}"
    return f"{x:.3g}"


def duration(seconds: float) -> str:
    """A short duration: '12 s', '4 m', '1.5 h'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} m"
    return f"{seconds / 3600:.1f} h"
