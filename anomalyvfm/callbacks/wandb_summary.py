"""Headline numbers in the W&B run summary, so runs of different backbones line up in one table.

W&B keeps the last logged value of every metric in the summary anyway; this callback makes the
columns that matter for comparing runs explicit and complete: the model's description (backbone,
family, adapter, rank, trainable parameters, see :func:`anomalyvfm.loggers.describe`) and, after
``test``, every dataset's mean and the overall mean (``test/<dataset>/<metric>``,
``test/mean/<metric>``), undefined (NaN) values left out.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

from anomalyvfm.loggers import WandbLogger, describe_model_to_loggers, finite_items
from anomalyvfm.results import report_of


class WandbSummary(pl.Callback):
    """Writes the model description and the test means into each W&B logger's run summary.

    Stateless, so one instance may serve several trainers (the CLI adds it to every run).
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # The run exists by now, so its group is fixed; tags and summary are still set here
        # for runs not started by the CLI (which described the model before the run began).
        describe_model_to_loggers(trainer.loggers, pl_module)

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The test means (``test/<dataset>/<metric>``, ``test/mean/<metric>``) into the run
        summary (through :meth:`WandbLogger.update_summary`) and the protocol into the run
        config: the only code that writes either after a test."""
        report = report_of(pl_module)
        if report is None or not report.results:
            return
        values: dict[str, float] = {}
        for dataset, means in report.dataset_means.items():
            values.update(finite_items(means, f"test/{dataset}"))
        values.update(finite_items(report.overall_mean, "test/mean"))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.update_summary(values)
                logger.experiment.config.update(
                    {"eval_protocol": report.protocol.as_dict()}, allow_val_change=True
                )
