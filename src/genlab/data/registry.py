"""One registry of datasets: ``register_dataset`` adds one, ``load_dataset`` builds a split.

A dataset loader returns a :class:`TensorData`: a tuple of tensors whose first dimension indexes
examples (e.g. ``(images, labels)`` or ``(points,)``), plus :class:`DataInfo` describing them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..config import from_dict
from ..errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass
class DataInfo:
    """What a model needs to know about its data to build itself."""
    kind: str                        # "image", "points", "text", "rays", ...
    shape: tuple[int, ...]           # shape of one example, e.g. (1, 28, 28)
    view: str = "continuous"         # images: continuous | binarized | dynamic | quantized
    levels: int | None = None        # quantized images: number of levels K
    num_classes: int | None = None   # labels, when present
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataInfo":
        d = dict(d)
        d["shape"] = tuple(d["shape"])
        return cls(**d)


@dataclass
class TensorData:
    """Examples held in memory as tensors sharing their first dimension.

    ``batch_transform(batch, generator)`` (optional) is applied to every training batch, e.g.
    dynamic binarization, which draws fresh Bernoulli pixels each time an image is seen.
    """
    tensors: tuple[torch.Tensor, ...]
    info: DataInfo
    batch_transform: Callable | None = None

    def __post_init__(self):
        n = {len(t) for t in self.tensors}
        if len(n) != 1:
            raise ValueError(f"tensors disagree on the number of examples: {sorted(n)}")

    def __len__(self) -> int:
        return len(self.tensors[0])

    def subset(self, index) -> "TensorData":
        return TensorData(tuple(t[index] for t in self.tensors), self.info, self.batch_transform)


@dataclass
class DatasetSpec:
    name: str
    config: type
    loader: Callable[[Any, str], TensorData]
    description: str
    group: str
    details: Callable[[Any], dict] | None = None   # extra lines for `genlab data info`


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, config: type, description: str, group: str,
                     details: Callable[[Any], dict] | None = None):
    """Decorator: register ``loader(cfg, split) -> TensorData`` under ``name``."""
    def deco(loader):
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} registered twice")
        DATASETS[name] = DatasetSpec(name, config, loader, description, group, details)
        return loader
    return deco


def get_spec(name: str) -> DatasetSpec:
    _load_builtin()
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; `genlab data list` shows the {len(DATASETS)} "
                          f"available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def data_config(name: str, overrides: dict | None = None):
    """The validated config of dataset ``name`` with ``overrides`` applied."""
    return from_dict(get_spec(name).config, overrides, where=f"dataset {name}")


def load_dataset(name: str, split: str = "train", config=None, **overrides) -> TensorData:
    """Load one split of a registered dataset, e.g. ``load_dataset("mnist", "test", view="binarized")``."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    spec = get_spec(name)
    if config is None:
        config = data_config(name, overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    return spec.loader(config, split)


def list_datasets() -> list[DatasetSpec]:
    _load_builtin()
    return sorted(DATASETS.values(), key=lambda s: (s.group, s.name))


def _load_builtin() -> None:
    from . import BUILTIN_MODULES  # noqa: F401  (importing registers them)
