"""AnomalyVFM: zero-shot anomaly detection with adapted vision foundation models.

Heavy optional dependencies (wandb, diffusers) are imported where they are used, so importing
this package stays fast; so is :class:`~anomalyvfm.deploy.Detector`, imported on first use
(``from anomalyvfm import Detector``).
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("Detector", "Prediction"):
        from anomalyvfm import deploy

        return getattr(deploy, name)
    raise AttributeError(f"module 'anomalyvfm' has no attribute {name!r}")
