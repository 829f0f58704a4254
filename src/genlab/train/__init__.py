"""The one training loop, checkpoints, runs, DDP."""
from genlab.train.config import TrainConfig
from genlab.train.loop import Trainer, evaluate_model
from genlab.train.run import Run, load_run, resume_run, train

__all__ = ["Run", "TrainConfig", "Trainer", "evaluate_model", "load_run", "resume_run", "train"]
