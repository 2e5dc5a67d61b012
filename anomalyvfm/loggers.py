"""Loggers: Lightning's WandbLogger, offline unless W&B credentials are configured."""

from __future__ import annotations

import netrc
import os
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
        **kwargs: passed to Lightning's ``WandbLogger`` (project, name, group, tags, ...).
    """

    def __init__(
        self,
        save_dir: str = "runs",
        offline: bool | None = None,
        init_timeout: float = 60.0,
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
        super().__init__(offline=offline, **kwargs)
