"""The one training loop, checkpoints, runs, DDP."""
from .config import TrainConfig
from .loop import Trainer, evaluate_model
from .run import Run, load_run, resume_run, train

__all__ = ["Run", "TrainConfig", "Trainer", "evaluate_model", "load_run", "resume_run", "train"]
