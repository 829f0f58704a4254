"""Checkpoints: written atomically (temp file + fsync + rename), read with ``weights_only=True``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from ..errors import GenlabError


def save_atomic(obj, path: str | Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync it, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"{path}: no checkpoint here; train first (`genlab train ...`) or check the run folder")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...
        raise GenlabError(f"{path}: cannot read checkpoint ({type(e).__name__}: {str(e)[:200]}); "
                          f"the file is corrupt or not a genlab checkpoint") from None
