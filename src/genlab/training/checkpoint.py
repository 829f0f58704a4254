"""Checkpoints: written atomically (temp file + fsync + rename), read with ``weights_only=True``."""
from __future__ import annotations

import errno
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import torch

from genlab.errors import GenlabError


class CheckpointWriteError(GenlabError, OSError):
    """The checkpoint could not be written (full disk, quota, permissions); the previous one is kept."""


def save_atomic(obj, path: str | Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync it, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:   # full disk, quota, read-only or vanished folder
        reason = _write_failure(e)
        if reason is None:
            raise
        if path.exists():
            kept = (f"the previous checkpoint {path} is kept. Free some space (or fix the folder's "
                    f"permissions), then continue with `genlab train --resume {_run_folder(path)}`")
        else:
            kept = ("no checkpoint had been written yet. Free some space (or fix the folder's permissions), "
                    "then run the same command again with --overwrite")
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {reason}; {kept}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _write_failure(e: BaseException) -> str | None:
    """Why a checkpoint write failed, or None if ``e`` is no write failure. Torch's zip writer turns a
    failed write (a full disk) into a ``RuntimeError`` ("PytorchStreamWriter failed writing file ...",
    "unexpected pos ..."), raised while the ``OSError`` is handled."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, OSError):
            return cause.strerror or str(cause)
        cause = cause.__cause__ or cause.__context__
    text = str(e)
    if isinstance(e, RuntimeError) and any(k in text for k in ("PytorchStreamWriter", "write", "unexpected pos")):
        return "the write failed (is the disk full?)"
    return None


def _run_folder(path: Path) -> Path:
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def load(path: str | Path, map_location="cpu", need: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``, always).

    A file that is damaged or was not written by genlab gets one message that says so and what to
    do; torch's own text is never repeated (it suggests the unsafe ``weights_only=False``). ``need``:
    entries that must be there (e.g. ``("model",)`` for a run's checkpoint).
    """
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"{path}: no checkpoint here; train first (`genlab train ...`) or check the run folder")
    if path.is_dir():
        raise GenlabError(f"{path} is a folder, not a checkpoint file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # torch warns about pickle protocols before refusing
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:   # a pickle that needs code to load: never run it
        raise GenlabError(f"{path}: cannot read checkpoint: not a genlab checkpoint (it holds Python objects "
                          f"that only load by running code, which genlab never does); use the checkpoint "
                          f"of a `genlab train` run") from None
    except Exception as e:  # truncated or damaged zip, not a torch file at all, unreadable, ...
        if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EIO):
            raise GenlabError(f"{path}: cannot read checkpoint ({e.strerror}); check the file's permissions "
                              f"and disk") from None
        raise GenlabError(f"{path}: cannot read checkpoint: the file is damaged or not a genlab checkpoint "
                          f"(truncated or overwritten?); restore it from a copy, or train again into a "
                          f"new folder") from None
    if not isinstance(ckpt, dict) or any(not isinstance(ckpt.get(k), dict) for k in need):
        raise GenlabError(f"{path}: cannot read checkpoint: not a genlab checkpoint (no model weights in "
                          f"it); use the checkpoint of a `genlab train` run")
    return ckpt


def load_weights(module: torch.nn.Module, weights: dict, path: str | Path, config: str | Path) -> None:
    """``module.load_state_dict(weights)``, with one clear line when they do not fit (an edited config)."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        first = lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
        first = first[:160] + ("..." if len(first) > 160 else "")
        raise GenlabError(f"{path} does not match the model that {config} describes ({first}); was config.json "
                          f"edited? Restore its model settings, or train again into a new folder") from None
