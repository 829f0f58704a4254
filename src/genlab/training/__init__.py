"""The one training loop, checkpoints, runs, DDP."""
from genlab.training.config import TrainConfig
from genlab.training.loop import Trainer, evaluate_model
from genlab.training.run import Run, load_run, resume_run, train

__all__ = ["Run", "TrainConfig", "Trainer", "evaluate_model", "load_run", "resume_run", "train"]
