"""The command line: a LightningCLI installed as ``anomalyvfm`` and ``lightning``.

``anomalyvfm fit --config experiments/configs/anomalyvfm_radio.yaml`` trains; ``test``,
``validate`` and ``predict`` take ``--ckpt_path``. YAML names classes by their short names
(``class_path: AnomalyVFM``) because this module imports every package that defines them.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

import anomalyvfm.callbacks  # noqa: F401

# Imported so that short class names in YAML resolve.
import anomalyvfm.data  # noqa: F401
import anomalyvfm.tasks  # noqa: F401
import data_synthesis  # noqa: F401
from anomalyvfm.callbacks import WandbSummary
from anomalyvfm.loggers import WandbLogger, describe_model_to_loggers


class SaveConfigToRun(SaveConfigCallback):
    """Saves ``config.yaml`` in the run folder and the resolved config in the W&B run.

    Lightning's default writes to ``trainer.log_dir`` and refuses to overwrite; with W&B first
    in the logger list that folder is shared between runs. Here the file goes to the first
    logger's own version folder, overwriting is allowed, and W&B gets the config as its run
    config (so runs line up in tables and sweeps) instead of a clashing file.
    """

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.parser.dump(self.config, skip_none=False, format="yaml")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import yaml

                logger.experiment.config.update(
                    _flatten(yaml.safe_load(config)), allow_val_change=True
                )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class AnomalyVFMCLI(LightningCLI):
    """LightningCLI with omegaconf interpolation, linked image size and default loggers."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # W&B fixes a run's group when the run starts, which Lightning does before any callback
        # runs; so the loggers learn the model here (group = backbone, tags, summary).
        describe_model_to_loggers(self.trainer.loggers, self.model)


TRAINER_DEFAULTS: dict[str, Any] = {
    "default_root_dir": "runs",
    "logger": [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs"}},
        {"class_path": "anomalyvfm.loggers.WandbLogger", "init_args": {"project": "anomalyvfm"}},
    ],
    # Persistent: added to every run, whatever callbacks the config lists.
    "callbacks": [WandbSummary()],
}


def main(args: list[str] | None = None, run: bool = True) -> AnomalyVFMCLI:
    """Entry point of the ``anomalyvfm`` and ``lightning`` commands."""
    return AnomalyVFMCLI(
        model_class=LightningModule,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_callback=SaveConfigToRun,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=TRAINER_DEFAULTS,
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def console() -> int:
    """Console entry point (``anomalyvfm``, ``lightning``): exit status 0 after a successful run;
    an error raises, which Python turns into a non-zero status."""
    main()
    return 0


if __name__ == "__main__":
    raise SystemExit(console())
