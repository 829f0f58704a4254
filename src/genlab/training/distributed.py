"""PyTorch's own distributed engine: DDP under ``torchrun`` (gloo on CPU, NCCL on GPU).

The same command runs single-process: without ``WORLD_SIZE`` in the environment nothing here
starts a process group.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from genlab.errors import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if device.type == "cuda":
        torch.cuda.set_device(device)   # this rank's GPU, also for collectives of Python objects
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda (this process's local rank), then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps ({_available()})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine ({_available()})")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {name}: MPS is not available on this machine ({_available()})")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: genlab runs on cpu, cuda or mps ({_available()})")
    return device


def _available() -> str:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append(f"cuda (x{torch.cuda.device_count()})")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return "available here: " + ", ".join(found)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _collective_device() -> torch.device:
    """NCCL reduces GPU tensors only (this rank's GPU, set in :func:`setup`); gloo CPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_gather(obj, info: DistInfo) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_max(value: int, info: DistInfo) -> int:
    """The largest of every rank's ``value``."""
    if not info.enabled:
        return value
    t = torch.tensor([int(value)], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_true(flag: bool, info: DistInfo) -> bool:
    """True only if ``flag`` holds on every rank (so all ranks stop together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([0 if flag else 1], device=_collective_device())
    dist.all_reduce(t)
    return int(t.item()) == 0
