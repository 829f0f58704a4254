"""genlab: deep generative models -- implemented, trained, evaluated and shown.

    import genlab
    run = genlab.train("vae", "digits", out="runs/nb", epochs=20, z_dim=2)   # trains, writes eval.json + figures
    images = run.model.sample(64)                                            # [64, 1, 8, 8] in [0, 1]
    genlab.evaluate(run)["metrics"]                                          # {"nll_nats": ..., "bpd": ...}
"""
__version__ = "0.2.0"

from genlab.api import evaluate, load_run, sample, train, write_report  # noqa: E402  (binds genlab.train to the function)

__all__ = ["__version__", "evaluate", "load_run", "sample", "train", "write_report"]
