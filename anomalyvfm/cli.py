"""The command line: a LightningCLI installed as ``anomalyvfm`` and ``lightning``.

``anomalyvfm fit --config experiments/configs/anomalyvfm_radio.yaml`` trains; ``test``,
``validate`` and ``predict`` take ``--ckpt_path``. ``predict --input <images>`` and ``calibrate``
run a trained detector on image files (:mod:`anomalyvfm.deploy.cli`) instead of LightningCLI.
YAML names classes by their short names (``class_path: AnomalyVFM``) because this module imports
every package that defines them.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

import anomalyvfm.callbacks  # noqa: F401

# Imported so that short class names in YAML resolve.
import anomalyvfm.data  # noqa: F401
import anomalyvfm.tasks  # noqa: F401
import data_synthesis  # noqa: F401
from anomalyvfm.callbacks import WandbSummary
from anomalyvfm.checkpoint_options import (
    flatten_dotted,
    merge_checkpoint_options,
    read_checkpoint,
)
from anomalyvfm.deploy import cli as deploy_cli
from anomalyvfm.errors import (
    condense_parse_error,
    debug_requested,
    hint,
    notice,
    run_console,
    take_debug_flag,
)
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
                    flatten_dotted(yaml.safe_load(config)), allow_val_change=True
                )


class AnomalyVFMArgumentParser(LightningArgumentParser):
    """Lightning's parser with parse errors in a line or two instead of the usage text and
    jsonargparse's union-type explanation (``ANOMALYVFM_DEBUG=1`` restores the full message)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug_requested():
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {condense_parse_error(message)}\n{hint(prog)}\n")
        self.exit(2)


class AnomalyVFMCLI(LightningCLI):
    """LightningCLI with omegaconf interpolation, linked image size and default loggers.

    On top of Lightning's: ``--ckpt_path`` merges the checkpoint's model options with the given
    ones by :func:`merge_checkpoint_options` (evaluation settings given at test time apply;
    contradicting architecture options are refused); the default loggers write under
    ``trainer.default_root_dir``; an optional option set to ``null`` on the command line is
    None; ``--ckpt_path last`` without a checkpoint, and evaluating without one, say so.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
        _apply_null_options(self.config, argv)

    def _parse_ckpt_path(self) -> None:
        """Merges the checkpoint's model options into the config (see
        :func:`merge_checkpoint_options`) instead of Lightning's replacing every one of them."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        cfg = self.config[subcommand]
        ckpt_path = cfg.get("ckpt_path")
        if not ckpt_path or ckpt_path in ("last", "best", "hpc"):
            return
        path = Path(ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"--ckpt_path {ckpt_path}: no such file (give a checkpoint written by fit, e.g. "
                "<run folder>/checkpoints/last.ckpt)"
            )
        hparams = dict(read_checkpoint(path).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if hparams and cfg.get("model") is not None:
            merge_checkpoint_options(cfg, hparams, str(path))

    def before_instantiate_classes(self) -> None:
        _loggers_follow_root_dir(_run_config(self.config))

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # W&B fixes a run's group when the run starts, which Lightning does before any callback
        # runs; so the loggers learn the model here (group = backbone, tags, summary).
        describe_model_to_loggers(self.trainer.loggers, self.model)

    def before_fit(self) -> None:
        if self.config["fit"].get("ckpt_path") != "last":
            return
        folders = set()
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                if callback._find_last_checkpoints(self.trainer):
                    return
                folders.add(str(callback._ModelCheckpoint__resolve_ckpt_dir(self.trainer)))  # type: ignore[attr-defined]
        where = ", ".join(sorted(folders)) or "no ModelCheckpoint callback is configured"
        notice(
            f"{program_name()} fit: --ckpt_path last: no last checkpoint in {where}; "
            "training starts from scratch"
        )
        # Lightning's own warning says the same at length.
        warnings.filterwarnings("ignore", message=r".*ckpt_path=.last.\) is set, but there is no")

    def _warn_without_checkpoint(self, subcommand: str) -> None:
        if self.config[subcommand].get("ckpt_path") is None:
            notice(
                f"{program_name()} {subcommand}: no --ckpt_path given: evaluating the untrained "
                "adapters, decoder and head (pass --ckpt_path <run>/checkpoints/last.ckpt)"
            )

    def before_test(self) -> None:
        self._warn_without_checkpoint("test")

    def before_validate(self) -> None:
        self._warn_without_checkpoint("validate")

    def before_predict(self) -> None:
        self._warn_without_checkpoint("predict")


SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULT_ROOT_DIR = "runs"
DEFAULT_LOGGERS: list[dict[str, Any]] = [
    {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": DEFAULT_ROOT_DIR},
    },
    {"class_path": "anomalyvfm.loggers.WandbLogger", "init_args": {"project": "anomalyvfm"}},
]
TRAINER_DEFAULTS: dict[str, Any] = {
    "default_root_dir": DEFAULT_ROOT_DIR,
    "logger": DEFAULT_LOGGERS,
    # Persistent: added to every run, whatever callbacks the config lists.
    "callbacks": [WandbSummary()],
}


def _run_config(config: Any) -> Any:
    """The options of the subcommand being run (the whole config when built without one)."""
    subcommand = config.get("subcommand")
    return config[subcommand] if subcommand else config


def _loggers_follow_root_dir(cfg: Any) -> None:
    """The default loggers (CSV and W&B under ``runs``) write under ``trainer.default_root_dir``
    when that was changed; loggers given in a config or on the command line keep their own."""
    trainer = cfg.get("trainer")
    root = trainer.get("default_root_dir") if trainer is not None else None
    if root is None or str(root) == DEFAULT_ROOT_DIR or not isinstance(trainer.logger, list):
        return
    defaults = {d["class_path"] for d in DEFAULT_LOGGERS}
    for logger in trainer.logger:
        init = logger.get("init_args") if hasattr(logger, "get") else None
        if init is None or logger.get("class_path") not in defaults:
            continue
        if init.get("save_dir", DEFAULT_ROOT_DIR) in (None, DEFAULT_ROOT_DIR):
            init["save_dir"] = str(root)


_NULLS = ("null", "None", "~")


def _apply_null_options(config: Any, argv: list[str]) -> None:
    """``--a.b.c=null`` on the command line means None.

    jsonargparse turns ``null`` for an option nested in a class's dataclass argument (such as
    ``--model.init_args.backbone.checkpoint_path=null``) into the string ``"None"``; such values
    are set back to None here. Only options given as null whose parsed value is that string are
    touched.
    """
    keys = []
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        if value in _NULLS:
            keys.append(key)
    if not keys:
        return
    cfg = _run_config(config)
    for key in keys:
        parts = key.split(".")
        if len(parts) > 1 and parts[0] in ("model", "data") and parts[1] != "init_args":
            parts.insert(1, "init_args")
        dotted = ".".join(parts)
        try:
            if cfg[dotted] == "None":
                cfg[dotted] = None
        except (KeyError, TypeError):
            continue


def program_name() -> str:
    """How the user called the command: ``anomalyvfm``, ``lightning`` or ``python -m
    anomalyvfm``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "anomalyvfm"
    return "python -m anomalyvfm" if name in ("__main__.py", "-c", "") else name


def main(args: list[str] | None = None, run: bool = True) -> AnomalyVFMCLI:
    """Builds the CLI (and runs its subcommand when ``run``); errors propagate as exceptions."""
    return AnomalyVFMCLI(
        model_class=LightningModule,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_class=AnomalyVFMArgumentParser,
        parser_kwargs={"parser_mode": "omegaconf", "prog": program_name()},
        save_config_callback=SaveConfigToRun,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=TRAINER_DEFAULTS,
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def console(argv: list[str] | None = None) -> int:
    """Console entry point (``anomalyvfm``, ``lightning``, ``python -m anomalyvfm``).

    Exit status 0 after a successful run. A user error (a bad option, file or dataset, reported
    by this project's code or by Lightning) prints one short message and exits 1; other errors
    keep their traceback. ``--debug`` (anywhere in the arguments) or ``ANOMALYVFM_DEBUG=1``
    shows every traceback.
    """
    if argv is None:
        # Lightning's DDP launcher starts the other ranks with this process's sys.argv, so the
        # arguments stay there (without --debug, which travels as the environment variable).
        sys.argv = sys.argv[:1] + take_debug_flag(sys.argv[1:])
        args, words = None, sys.argv[1:]
    else:
        args = words = take_debug_flag(argv)
    if deploy_cli.handles(words):
        # A detector on image files (`predict --input`, `calibrate`), without LightningCLI.
        return run_console(
            f"{program_name()} {words[0]}", lambda: deploy_cli.main(list(words), program_name())
        )
    prog = program_name() + next((f" {a}" for a in words if a in SUBCOMMANDS), "")
    return run_console(prog, lambda: main(args))


if __name__ == "__main__":
    raise SystemExit(console())
