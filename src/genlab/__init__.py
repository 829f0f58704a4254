"""genlab: deep generative models -- implemented, trained, evaluated and shown.

    import genlab
    run = genlab.train("vae", "digits", out="runs/nb", epochs=20, z_dim=2)   # trains, writes eval.json + figures
    images = run.model.sample(64)                                            # [64, 1, 8, 8] in [0, 1]
    genlab.evaluate(run)["metrics"]                                          # {"nll_nats": ..., "bpd": ...}

``import genlab`` is light: the API (and torch behind it) loads on first use of one of its names.
"""
from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__", "evaluate", "load_run", "sample", "train", "write_report"]
_API = {"evaluate", "load_run", "sample", "train", "write_report"}


def __getattr__(name: str):
    """``genlab.train`` and the other API functions, imported from ``genlab.api`` on first use (PEP 562)."""
    if name in _API:
        from genlab import api
        return getattr(api, name)
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
