"""Loggers: Lightning's WandbLogger, offline unless W&B credentials are configured.

Runs of different backbones line up in one W&B table because every run carries the same
description of its model: the group is the backbone's timm architecture (pretrained tag dropped),
the tags name the adapter, its rank and the backbone family, and the summary holds the backbone
name and the number of trainable parameters. The logger learns the model from
:meth:`WandbLogger.describe_model` (called by the CLI and by
:class:`~anomalyvfm.callbacks.WandbSummary`); the model never knows the logger.
"""

from __future__ import annotations

import math
import netrc
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


def wandb_credentials_present() -> bool:
    """Whether an API key is set (WANDB_API_KEY or a netrc entry for the W&B host)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` with ``offline`` decided automatically.

    With ``offline=None`` (default) the run is offline when no API key is configured and
    ``WANDB_MODE`` is unset, so a machine without network or credentials never waits on W&B;
    ``wandb sync <run dir>`` uploads such a run later. The init timeout is bounded too.

    Args:
        save_dir: folder of the ``wandb/`` run directories (``runs``, beside the CSV logs).
        offline: force offline (True) or online (False); None decides as above.
        init_timeout: seconds ``wandb.init`` may wait for the service before failing.
        group: W&B run group; None groups runs by backbone once :meth:`describe_model` ran.
        tags: user tags, kept; :meth:`describe_model` adds the model's tags after them.
        **kwargs: passed to Lightning's ``WandbLogger`` (project, name, ...).
    """

    def __init__(
        self,
        save_dir: str = "runs",
        offline: bool | None = None,
        init_timeout: float = 60.0,
        group: str | None = None,
        tags: Sequence[str] | None = None,
        **kwargs: Any,
    ):
        if offline is None:
            offline = "WANDB_MODE" not in os.environ and not wandb_credentials_present()
        # Absolute, because W&B's service process (shared by every run of a Python process) may
        # have started in another working directory and resolves relative paths against it.
        save_dir = str(Path(save_dir).expanduser().resolve())
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        kwargs["save_dir"] = save_dir
        if not offline:
            import wandb

            kwargs.setdefault("settings", wandb.Settings(init_timeout=init_timeout))
        self._explicit_group = group
        self._user_tags = list(tags or [])
        self._pending_summary: dict[str, Any] = {}
        super().__init__(offline=offline, group=group, tags=list(self._user_tags), **kwargs)

    @property
    def experiment(self) -> Any:
        """The W&B run (created on first access); summary values learnt before it are written."""
        run = super().experiment
        # Only rank zero has a real run; `_experiment` stays None elsewhere.
        if self._pending_summary and self._experiment is not None:
            self._experiment.summary.update(self._pending_summary)
            self._pending_summary = {}
        return run

    def describe_model(
        self, hparams: Mapping[str, Any], trainable_params: int | None = None
    ) -> RunDescription:
        """Learns the model config: sets the group, adds tags and summary values.

        W&B fixes a run's group when the run starts, so the group is only set when this is
        called before (the CLI does so right after building the classes); tags and summary
        values are set at any time. An explicit ``group`` always wins.

        Args:
            hparams: the model's hyper-parameters (``backbone.name``, ``adapter.type``/``rank``).
            trainable_params: number of trainable parameters, recorded in the summary.

        Returns:
            What was derived from ``hparams``.
        """
        info = describe(hparams, trainable_params)
        tags = _unique([*self._user_tags, *info.tags])
        self._wandb_init["tags"] = tags
        if self._explicit_group is None and info.group:
            self._wandb_init["group"] = info.group
        run: Any = self._experiment
        if run is not None:
            run.tags = tuple(_unique([*(run.tags or ()), *tags]))
        self.update_summary(info.summary)
        return info

    def update_summary(self, values: Mapping[str, Any]) -> None:
        """Writes ``values`` into the run summary: the one place this project writes it (the
        model description, the test means). Kept until the run exists if it does not yet."""
        run: Any = self._experiment
        if run is not None:
            run.summary.update(dict(values))
        else:
            self._pending_summary.update(values)


class RunDescription:
    """Group, tags and summary values of a run, derived from the model's hyper-parameters.

    Attributes:
        group: the backbone's timm architecture without pretrained tag ("" when unknown).
        tags: adapter type, ``rank-<r>``, backbone family.
        summary: ``model/backbone``, ``model/backbone_family``, ``model/adapter``,
            ``model/adapter_rank``, ``model/trainable_params`` (those known).
    """

    def __init__(self, group: str, tags: list[str], summary: dict[str, Any]) -> None:
        self.group, self.tags, self.summary = group, tags, summary


# Families in the order they are looked for in a timm name (dinov3 before dinov2 before dino).
FAMILIES = ("dinov3", "dinov2", "dino", "radio", "siglip", "clip", "eva", "sam", "mae")


def backbone_family(name: str) -> str:
    """Family of a timm backbone name: ``vit_so400m_patch14_siglip_378.v2_webli`` -> siglip2."""
    arch, _, tag = name.lower().partition(".")
    for family in FAMILIES:
        if family in arch:
            # SigLIP 2 shares SigLIP's architecture names; only the pretrained tag differs.
            return "siglip2" if family == "siglip" and tag.startswith("v2") else family
    return arch.split("_")[0]


def describe(hparams: Mapping[str, Any], trainable_params: int | None = None) -> RunDescription:
    """Group, tags and summary values of a run from its model's hyper-parameters."""
    backbone = _as_dict(hparams.get("backbone"))
    adapter = _as_dict(hparams.get("adapter"))
    name = str(backbone.get("name") or "")
    summary: dict[str, Any] = {}
    tags: list[str] = []
    if name:
        summary["model/backbone"] = name
        summary["model/backbone_family"] = backbone_family(name)
    if adapter.get("type"):
        tags.append(str(adapter["type"]))
        summary["model/adapter"] = str(adapter["type"])
    if adapter.get("rank") is not None and adapter.get("type") in ("lora", "dora"):
        tags.append(f"rank-{adapter['rank']}")
        summary["model/adapter_rank"] = int(adapter["rank"])
    if name:
        tags.append(backbone_family(name))
    if trainable_params is not None:
        summary["model/trainable_params"] = int(trainable_params)
    return RunDescription(name.partition(".")[0], tags, summary)


def describe_model_to_loggers(loggers: Iterable[Any], model: Any) -> None:
    """Tells every :class:`WandbLogger` in ``loggers`` about ``model`` (its hparams, size)."""
    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not wandb_loggers:
        return
    hparams = dict(getattr(model, "hparams", {}) or {})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for logger in wandb_loggers:
        logger.describe_model(hparams, trainable)


def finite_items(values: Mapping[str, float], prefix: str) -> dict[str, float]:
    """``{prefix/metric: value}`` for the defined (non-NaN) values."""
    return {f"{prefix}/{k}": float(v) for k, v in values.items() if not math.isnan(float(v))}


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    return dict(vars(value))  # a config dataclass


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
