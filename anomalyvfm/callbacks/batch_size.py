"""A fixed effective batch size on any number of devices and nodes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info


@runtime_checkable
class MicroBatched(Protocol):
    """A datamodule with a per-device micro-batch (``AnomalyDataModule``'s ``batch_size``)."""

    batch_size: int


class EffectiveBatchSize(pl.Callback):
    """Sets ``trainer.accumulate_grad_batches`` so that one optimizer step sees ``total`` samples.

    At fit start the accumulation becomes ``total / (world_size * micro_batch)``, where
    ``world_size`` is devices x nodes and ``micro_batch`` the datamodule's ``batch_size`` (per
    device). The reference recipe, micro-batch 8 x 4 accumulation on one GPU, is ``total=32``: on
    4 GPUs it accumulates 1 step, on 2 nodes of 2 GPUs too, on 2 GPUs 2 steps. The learning rate
    is deliberately not scaled: since the effective batch does not change, neither does the
    optimisation. A configured ``trainer.accumulate_grad_batches`` is overridden.

    Args:
        total: effective batch size (samples per optimizer step, all ranks together).
    """

    def __init__(self, total: int = 32) -> None:
        if total < 1:
            raise ValueError(f"EffectiveBatchSize total must be positive, got {total}")
        self.total = total
        self.accumulation: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # None without one
        micro = datamodule.batch_size if isinstance(datamodule, MicroBatched) else None
        if not isinstance(micro, int) or micro < 1:
            raise ValueError(
                "EffectiveBatchSize needs a datamodule with an integer data.batch_size "
                f"(the per-device micro-batch), got {micro!r}"
            )
        per_step = trainer.world_size * micro
        if self.total % per_step:
            raise ValueError(
                f"EffectiveBatchSize total={self.total} is not a multiple of world size "
                f"{trainer.world_size} (devices x nodes) x data.batch_size {micro} = {per_step}; "
                "change data.batch_size or the total"
            )
        self.accumulation = self.total // per_step
        trainer.accumulate_grad_batches = self.accumulation
        rank_zero_info(
            f"Effective batch {self.total} = {trainer.world_size} ranks x micro-batch {micro} "
            f"x {self.accumulation} accumulation steps (lr unscaled)"
        )
