"""Loading of evaluation sets: a collate for masks of different sizes, an exact DDP sampler.

Evaluating at each mask's original resolution gives masks of different sizes in one batch:
:func:`collate_eval` pads them to a common size with ``-1`` and records every mask's true size in
``mask_size``, so the task can cut each map and mask back out.

Under DDP, torch's :class:`~torch.utils.data.DistributedSampler` (which Lightning inserts by
default) pads the index list by repeating samples until it divides evenly, and those repeats would
be counted twice by the metrics. :class:`ShardedEvalSampler` gives every rank a disjoint share
``rank, rank + world, ...`` and pads nothing; since it subclasses ``DistributedSampler``,
Lightning keeps it rather than wrapping it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler
from torch.utils.data._utils.collate import default_collate

from anomalyvfm.batch import MASK

PAD_VALUE = -1.0


def collate_eval(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Default collate, except that masks of different sizes are padded.

    Returns:
        The batch with ``mask`` (B, H_max, W_max) (``-1`` outside each mask) and ``mask_size``
        (B, 2) int64, the (height, width) of every mask before padding.
    """
    masks = [s[MASK] for s in samples]
    sizes = torch.tensor([tuple(m.shape) for m in masks], dtype=torch.int64).reshape(-1, 2)
    rest = default_collate([{k: v for k, v in s.items() if k != MASK} for s in samples])
    if all(tuple(m.shape) == tuple(masks[0].shape) for m in masks):
        rest[MASK] = torch.stack(masks)
    else:
        height, width = (int(v) for v in sizes.max(0).values)
        padded = masks[0].new_full((len(masks), height, width), PAD_VALUE)
        for i, m in enumerate(masks):
            padded[i, : m.shape[0], : m.shape[1]] = m
        rest[MASK] = padded
    rest["mask_size"] = sizes
    return rest


class ShardedEvalSampler(DistributedSampler):
    """Disjoint, unpadded, in-order shares of an evaluation set, one per rank.

    Rank ``r`` of ``w`` gets indices ``r, r + w, r + 2w, ...``: together the ranks see every
    sample exactly once (shares differ in length by at most one).

    Args:
        dataset: the evaluation set.
        num_replicas: world size; read from the process group when None.
        rank: this process's rank; read from the process group when None.
    """

    def __init__(
        self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        total = len(dataset)  # type: ignore[arg-type]
        self.num_samples = len(range(self.rank, total, self.num_replicas))
        self.total_size = total

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def distributed_world() -> tuple[int, int] | None:
    """``(world_size, rank)`` when a process group with several processes is running."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        if world > 1:
            return world, torch.distributed.get_rank()
    return None


__all__ = ["PAD_VALUE", "ShardedEvalSampler", "collate_eval", "distributed_world"]
