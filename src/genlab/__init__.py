"""genlab: deep generative models -- implemented, trained, evaluated and shown.

    import genlab
    run = genlab.train("vae", "digits", epochs=20, z_dim=2)   # trains, returns a Run
    images = run.model.sample(64)                             # [64, 1, 8, 8] in [0, 1]
    genlab.evaluate(run)                                      # {"nll_nats": ..., "bpd": ...}
"""
__version__ = "0.1.0"

from .train import load_run, train  # noqa: E402
from .eval import evaluate  # noqa: E402

__all__ = ["__version__", "evaluate", "load_run", "train"]
