"""The one clock of every benchmark: ``--clock cpu|wall``, a ``Timer`` on it, and the environment line.

Each benchmark adds the option with ``add_clock_option``, times with ``Timer(args.clock)`` and prints
``report_env("start")`` before it measures and ``report_env("end")`` after: the clock, torch's thread count,
the load average (``os.getloadavg``: 1, 5 and 15 minutes) and the peak resident memory of the process so far
(``getrusage(RUSAGE_SELF).ru_maxrss``). The benchmarks run as scripts (``python benchmarks/bench_x.py``),
so this file is imported as the top-level module ``_clock``.
"""
from __future__ import annotations

import os
import resource
import sys
import time

import torch

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
CLOCK_HELP = ("cpu (default): this process's CPU time (time.process_time), which other jobs on a loaded machine "
              "do not inflate; with several torch threads it is the SUM over the threads, so cpu figures compare "
              "only at equal --threads (1 thread: CPU seconds = busy seconds). wall: elapsed real time "
              "(time.perf_counter), what a user waits, inflated by a loaded machine")


def add_clock_option(parser, default: str = "cpu") -> None:
    parser.add_argument("--clock", choices=tuple(CLOCKS), default=default, help=CLOCK_HELP)


class Timer:
    """Seconds on one clock. ``with timer: ...`` appends the block's seconds to ``timer.laps``;
    ``timer.now()`` reads the clock for code that pauses and resumes it by hand."""

    def __init__(self, clock: str):
        self.clock, self.now, self.laps = clock, CLOCKS[clock], []

    def __enter__(self) -> Timer:
        self._start = self.now()
        return self

    def __exit__(self, *exc) -> None:
        self.laps.append(self.now() - self._start)

    @property
    def last(self) -> float:
        return self.laps[-1]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def env(when: str, clock: str) -> dict:
    return {"when": when, "clock": clock, "threads": torch.get_num_threads(),
            "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()], "peak_rss_mb": round(peak_rss_mb(), 1)}


def report_env(when: str, clock: str) -> dict:
    """Print the environment line (to stderr, so that stdout stays the benchmark's own output) and return it."""
    e = env(when, clock)
    load = " ".join(f"{v:.2f}" for v in e["loadavg_1_5_15"])
    print(f"[env {when}] clock={clock} threads={e['threads']} load average {load} peak RSS {e['peak_rss_mb']:.0f} MB"
          f" | {' '.join(sys.argv)}", file=sys.stderr, flush=True)
    return e
