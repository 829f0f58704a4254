"""Batch sources: how a dataset hands batches to the training loop, and how it is walked in eval.

The loop is step-based. A batch source is deterministic in ``(seed, epoch, step, rank)`` so that a
resumed run sees exactly the batches an unbroken one would have:

* ``steps_in(epoch) -> int`` -- the number of steps that make pass ``epoch`` (for endless streams a
  nominal pass over the data). It may differ from epoch to epoch (length-bucketed batches under a
  token budget), so the loop asks for each epoch's own length; it is the same on every rank;
* ``get(epoch, step) -> tuple[Tensor, ...]`` -- this rank's batch ``step`` of epoch ``epoch``
  (``0 <= step < steps_in(epoch)``).

Three sources cover the families: :class:`PermutationBatches` (a fresh permutation of in-memory
examples each epoch: images, points, rays), :class:`WindowBatches` (random windows of one token
stream, as nanoGPT's ``get_batch``) and :class:`BucketedBatches` (pairs of sequences of similar
length, padded, as translation wants).

Every dataset object (``TensorData``, ``TokenStream``, ``PairData``) offers
``train_batches(batch_size, seed, dist, **hints) -> BatchSource`` and
``eval_batches(batch_size, **hints) -> Iterator[tuple[Tensor, ...]]`` (each example once, in order).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from genlab.errors import ConfigError


class Shard(Protocol):
    rank: int
    world_size: int


@runtime_checkable
class BatchSource(Protocol):
    def steps_in(self, epoch: int) -> int: ...

    def get(self, epoch: int, step: int) -> tuple[torch.Tensor, ...]: ...


def _generator(*key: int) -> torch.Generator:
    seed = 0
    for k in key:
        seed = (seed * 1_000_003 + int(k)) % (2 ** 62)
    return torch.Generator().manual_seed(seed)


class PermutationBatches:
    """Epoch ``e`` is a permutation seeded by (seed, e), sharded across ranks and cut into batches.

    ``transform(batch, generator)`` (optional) is applied to each batch with a generator seeded by
    (seed, epoch, step, rank), e.g. dynamic binarization.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, seed: int, dist: Shard,
                 transform: Callable | None = None):
        self.tensors, self.batch_size, self.seed, self.dist = tuple(tensors), batch_size, seed, dist
        self.transform = transform
        n = len(self.tensors[0])
        self.per_rank = math.ceil(n / dist.world_size)
        self.steps_per_epoch = max(1, math.ceil(self.per_rank / batch_size))   # the same every epoch
        self._epoch, self._index = None, None

    def steps_in(self, epoch: int) -> int:
        return self.steps_per_epoch

    def _epoch_index(self, epoch: int) -> torch.Tensor:
        if self._epoch != epoch:
            n = len(self.tensors[0])
            perm = torch.randperm(n, generator=_generator(self.seed, epoch))
            if self.dist.world_size > 1:   # pad by wrapping so every rank has the same number of steps
                perm = torch.cat([perm, perm[: self.per_rank * self.dist.world_size - n]])
                perm = perm[self.dist.rank::self.dist.world_size]
            self._epoch, self._index = epoch, perm
        return self._index

    def get(self, epoch: int, step: int) -> tuple[torch.Tensor, ...]:
        idx = self._epoch_index(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        batch = tuple(t[idx] for t in self.tensors)
        if self.transform is not None:
            seed = (self.seed * 1_000_003 + epoch * 10_007 + step) * 64 + self.dist.rank
            batch = self.transform(batch, torch.Generator().manual_seed(seed))
        return batch


class WindowBatches:
    """Random windows of a 1-D token stream: ``x = tokens[i:i+T]``, ``y = tokens[i+1:i+T+1]``.

    Each step draws ``batch_size`` start positions uniformly (seeded by (seed, epoch, step, rank)).
    A nominal epoch is ``len(tokens) // (batch_size * T * world_size)`` steps (at least 1).
    """

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, seed: int, dist: Shard):
        if len(tokens) < block_size + 2:
            raise ConfigError(f"the token stream has {len(tokens)} tokens, fewer than the context "
                              f"{block_size} + 2; use a shorter --block-size")
        self.tokens, self.block_size, self.batch_size, self.seed, self.dist = tokens, block_size, batch_size, seed, dist
        self.steps_per_epoch = max(1, len(tokens) // (batch_size * block_size * dist.world_size))   # every epoch

    def steps_in(self, epoch: int) -> int:
        return self.steps_per_epoch

    def get(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = _generator(self.seed, epoch, step, self.dist.rank)
        start = torch.randint(len(self.tokens) - self.block_size - 1, (self.batch_size,), generator=g)
        offsets = torch.arange(self.block_size + 1)
        windows = self.tokens[start[:, None] + offsets]     # [B, T+1]
        return windows[:, :-1], windows[:, 1:]               # [B, T] inputs, [B, T] targets


def pad_batch(seqs: Sequence[torch.Tensor | Sequence[int]], pad_id: int) -> torch.Tensor:
    """A LongTensor [len(seqs), max length] of ``seqs`` (tensors or lists of token ids) right-padded
    with ``pad_id``; at least one column, so a batch of empty sequences is all padding."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max(width, 1)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


class BucketedBatches:
    """Pairs (source, target) of similar lengths, padded: each batch holds at most ``max_tokens``
    tokens (source + target, after padding) or ``batch_size`` pairs, whichever is reached first.

    Pairs are sorted by length inside chunks of ``100 * batch_size`` shuffled pairs (seeded by (seed,
    epoch)), cut into batches, and the batches shuffled, so padding stays small and order stays random.
    Batches are ``(src [B, S], tgt [B, T])`` padded with ``pad_id``. Under a token budget the number
    of batches depends on how the shuffle groups the lengths, so it changes from epoch to epoch:
    ``steps_in(epoch)`` gives each epoch's own.
    """

    def __init__(self, src: Sequence[torch.Tensor], tgt: Sequence[torch.Tensor], batch_size: int, seed: int,
                 dist: Shard, pad_id: int = 0, max_tokens: int | None = None):
        self.src, self.tgt, self.batch_size, self.seed, self.dist = src, tgt, batch_size, seed, dist
        self.pad_id, self.max_tokens = pad_id, max_tokens
        self._epoch, self._batches = None, None
        self._steps: dict[int, int] = {}   # epoch -> its number of batches (per rank)

    def steps_in(self, epoch: int) -> int:
        if epoch not in self._steps:
            self._steps[epoch] = len(self._plan(epoch))
        return self._steps[epoch]

    def _plan(self, epoch: int) -> list[list[int]]:
        if self._epoch == epoch:
            return self._batches
        g = _generator(self.seed, epoch)
        order = torch.randperm(len(self.src), generator=g).tolist()
        chunk = 100 * self.batch_size
        batches: list[list[int]] = []
        for c in range(0, len(order), chunk):
            part = sorted(order[c:c + chunk], key=lambda i: (len(self.src[i]), len(self.tgt[i])))
            cur: list[int] = []
            longest = 0
            for i in part:
                size = len(self.src[i]) + len(self.tgt[i])
                if cur and (len(cur) >= self.batch_size or
                            (self.max_tokens and max(longest, size) * (len(cur) + 1) > self.max_tokens)):
                    batches.append(cur)
                    cur, longest = [], 0
                cur.append(i)
                longest = max(longest, size)
            if cur:
                batches.append(cur)
        perm = torch.randperm(len(batches), generator=g).tolist()
        batches = [batches[j] for j in perm]
        w = self.dist.world_size
        per_rank = math.ceil(len(batches) / w)
        batches = (batches * 2)[:per_rank * w][self.dist.rank::w]
        self._epoch, self._batches = epoch, batches
        return batches

    def get(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self._plan(epoch)[step]
        return (pad_batch([self.src[i] for i in idx], self.pad_id),
                pad_batch([self.tgt[i] for i in idx], self.pad_id))
