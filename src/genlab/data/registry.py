"""Datasets: ``register_dataset`` declares one (listed in ``genlab.catalog``), ``load_dataset`` builds a split.

A loader returns a dataset object with ``info`` (:class:`DataInfo`), ``train_batches`` and
``eval_batches`` (see ``genlab.data.batches``): :class:`TensorData` for in-memory examples (images,
points, rays), :class:`TokenStream` for a corpus, :class:`PairData` for sequence pairs.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from genlab import catalog
from genlab.config import from_dict
from genlab.data.batches import BucketedBatches, PermutationBatches, WindowBatches, pad_batch
from genlab.errors import ConfigError

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
    def from_dict(cls, d: dict) -> DataInfo:
        """The inverse of :meth:`to_dict`, checking each field (a saved run's config.json may be damaged):
        a ConfigError names the first field that is missing, unknown or of the wrong type."""
        if not isinstance(d, dict):
            raise ConfigError(f"data_info is {_shown(d)}, expected a JSON object")
        names = [f.name for f in dataclasses.fields(cls)]
        if unknown := sorted(set(d) - set(names), key=str):
            raise ConfigError(f"data_info has unknown field {_shown(unknown[0])}")
        if missing := [k for k in ("kind", "shape") if k not in d]:
            raise ConfigError(f"data_info lacks the field {missing[0]!r}")
        count = lambda v: type(v) is int and v >= 1  # noqa: E731
        checks = {"kind": (lambda v: isinstance(v, str) and v != "", "a name"),
                  "shape": (lambda v: isinstance(v, list | tuple) and all(map(count, v)),
                            "a list of positive whole numbers"),
                  "view": (lambda v: isinstance(v, str), "a name"),
                  "levels": (lambda v: v is None or count(v), "null or a positive whole number"),
                  "num_classes": (lambda v: v is None or count(v), "null or a positive whole number"),
                  "extras": (lambda v: isinstance(v, dict), "a JSON object")}
        for key, value in d.items():
            ok, expected = checks[key]
            if not ok(value):
                raise ConfigError(f"data_info field {key!r} is {_shown(value)}, expected {expected}")
        return cls(**(d | {"shape": tuple(d["shape"])}))


def _shown(value: Any, most: int = 60) -> str:
    """A short one-line rendering of a JSON value for an error message."""
    text = "null" if value is None else repr(value)
    return text if len(text) <= most else text[:most] + "..."


@dataclass
class TensorData:
    """Examples held in memory as tensors sharing their first dimension (images, points, rays).

    ``batch_transform(batch, generator)`` (optional) is applied to every training batch, e.g.
    dynamic binarization, which draws fresh Bernoulli pixels each time an image is seen;
    ``eval_transform`` likewise to evaluation batches (e.g. a fixed-seed binarization).
    """
    tensors: tuple[torch.Tensor, ...]
    info: DataInfo
    batch_transform: Callable | None = None
    eval_transform: Callable | None = None

    def __post_init__(self):
        n = {len(t) for t in self.tensors}
        if len(n) != 1:
            raise ValueError(f"tensors disagree on the number of examples: {sorted(n)}")

    def __len__(self) -> int:
        return len(self.tensors[0])

    def subset(self, index) -> TensorData:
        return TensorData(tuple(t[index] for t in self.tensors), self.info, self.batch_transform,
                          self.eval_transform)

    def train_batches(self, batch_size: int, seed: int, dist, **hints) -> PermutationBatches:
        return PermutationBatches(self.tensors, batch_size, seed, dist, self.batch_transform)

    def eval_batch_count(self, batch_size: int, **hints) -> int:
        """How many batches ``eval_batches`` yields (for progress bars)."""
        return math.ceil(len(self) / batch_size)

    def eval_batches(self, batch_size: int, **hints) -> Iterator[tuple[torch.Tensor, ...]]:
        for i, start in enumerate(range(0, len(self), batch_size)):
            batch = tuple(t[start:start + batch_size] for t in self.tensors)
            if self.eval_transform is not None:
                batch = self.eval_transform(batch, torch.Generator().manual_seed(1_000_003 + i))
            yield batch


@dataclass
class TokenStream:
    """One long stream of token ids (a language model's corpus split).

    Training draws random windows of ``block_size + 1`` tokens (the model's ``batch_hints()`` gives
    ``block_size``); evaluation walks consecutive windows so each token is predicted once, with up to
    ``block_size`` tokens of context. ``tokenizer`` (optional) turns ids back into text.
    """
    tokens: torch.Tensor
    info: DataInfo
    tokenizer: Any = None

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, index: slice) -> TokenStream:
        return TokenStream(self.tokens[index], self.info, self.tokenizer)

    def train_batches(self, batch_size: int, seed: int, dist, block_size: int = 64, **hints) -> WindowBatches:
        return WindowBatches(self.tokens, block_size, batch_size, seed, dist)

    def eval_batch_count(self, batch_size: int, block_size: int = 64, **hints) -> int:
        return math.ceil((len(self.tokens) - 1) // block_size / batch_size)

    def eval_batches(self, batch_size: int, block_size: int = 64, **hints):
        n = (len(self.tokens) - 1) // block_size                  # whole windows
        starts = torch.arange(n) * block_size
        offsets = torch.arange(block_size + 1)
        for i in range(0, n, batch_size):
            windows = self.tokens[starts[i:i + batch_size, None] + offsets]     # [B, T+1]
            yield windows[:, :-1], windows[:, 1:]


@dataclass
class PairData:
    """Pairs of token-id sequences (source, target), e.g. sentence pairs for translation.

    Training batches are length-bucketed and padded with ``pad_id``; evaluation batches keep the
    order of the pairs. ``extras`` holds what a family needs beside the ids (tokenizers, raw text).
    """
    src: list
    tgt: list
    info: DataInfo
    pad_id: int = 0
    max_tokens: int | None = None
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.src)

    def subset(self, index: slice) -> PairData:
        return PairData(self.src[index], self.tgt[index], self.info, self.pad_id, self.max_tokens, self.extras)

    def train_batches(self, batch_size: int, seed: int, dist, **hints) -> BucketedBatches:
        return BucketedBatches(self.src, self.tgt, batch_size, seed, dist, self.pad_id,
                               hints.get("max_tokens", self.max_tokens))

    def eval_batch_count(self, batch_size: int, **hints) -> int:
        return math.ceil(len(self.src) / batch_size)

    def eval_batches(self, batch_size: int, **hints):
        for i in range(0, len(self.src), batch_size):
            yield (pad_batch(self.src[i:i + batch_size], self.pad_id),
                   pad_batch(self.tgt[i:i + batch_size], self.pad_id))


Dataset = TensorData | TokenStream | PairData


@dataclass
class DatasetSpec:
    name: str
    config: type
    loader: Callable[[Any, str], TensorData]
    description: str
    group: str
    details: Callable[[Any], dict] | None = None   # extra lines for `genlab data info`
    kind: str = ""                                  # the DataInfo.kind its splits have: what models it fits


DATA_KINDS = ("image", "points", "text", "pairs", "rays")


def register_dataset(name: str, config: type, description: str, group: str,
                     details: Callable[[Any], dict] | None = None, *, kind: str):
    """Decorator declaring ``loader(cfg, split) -> dataset`` as ``name`` (list it in
    ``genlab.catalog.DATASETS``). ``kind`` is the ``DataInfo.kind`` of its splits (one of
    ``DATA_KINDS``): a model trains on the datasets whose kind it declares (``register_model(...,
    data_kinds=...)``), so a misfit is refused before anything is loaded or written."""
    if kind not in DATA_KINDS:
        raise TypeError(f"dataset {name}: kind= is one of {', '.join(DATA_KINDS)}, got {kind!r}")

    def deco(loader):
        catalog.register("dataset", name, DatasetSpec(name, config, loader, description, group, details, kind))
        return loader
    return deco


def get_spec(name: str) -> DatasetSpec:
    return catalog.get("dataset", name)


def data_config(name: str, overrides: dict | None = None):
    """The validated config of dataset ``name`` with ``overrides`` applied."""
    return from_dict(get_spec(name).config, overrides, where=f"dataset {name}")


def load_dataset(name: str, split: str = "train", config=None, **overrides):
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
    return sorted(catalog.load_all("dataset").values(), key=lambda s: (s.group, s.name))
