"""A contact sheet of the training data, saved and logged to W&B when training starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from anomalyvfm.data.datamodules.anomaly import AnomalyDataModule
from data_synthesis.preview import contact_sheet


@runtime_checkable
class Previewable(Protocol):
    """A training dataset that can show its i-th sample as (normal, anomalous, mask)."""

    def preview_triple(self, index: int) -> Any: ...


class TrainingPreview(pl.Callback):
    """At the start of ``fit``: a sheet of normal | anomalous | mask outline rows.

    The rows come from ``trainer.datamodule.train_dataset.preview_triple(i)`` for
    ``i < num_samples`` (the online, on-disk and mixed training sets all provide it). The PNG is
    written to ``path`` (default ``<trainer.log_dir>/training_preview.png``) and logged as
    ``train/preview`` by every W&B logger of the trainer; the model never sees it. A datamodule
    without such a training set gets a warning, not an error.

    Args:
        num_samples: rows of the sheet.
        path: PNG file to write; None for the run folder.
        tile_size: side of each tile in pixels.
    """

    def __init__(self, num_samples: int = 8, path: str | None = None, tile_size: int = 256):
        if num_samples < 1:
            raise ValueError(f"TrainingPreview.num_samples must be positive, got {num_samples}")
        self.num_samples = num_samples
        self.path = None if path is None else Path(path)
        self.tile_size = tile_size
        self.written: Path | None = None

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # None without one
        dataset = datamodule.train_dataset if isinstance(datamodule, AnomalyDataModule) else None
        if not isinstance(dataset, Previewable):
            rank_zero_warn(
                "TrainingPreview: the datamodule has no train_dataset with preview_triple(); "
                "no preview written"
            )
            return
        triples = [dataset.preview_triple(i) for i in range(self.num_samples)]
        sheet = contact_sheet(triples, size=self.tile_size)
        path = self.path or Path(trainer.log_dir or trainer.default_root_dir) / (
            "training_preview.png"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path)
        self.written = path
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key="train/preview",
                    images=[sheet],
                    caption=["normal | anomalous | mask outline"],
                )
