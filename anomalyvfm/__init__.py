"""AnomalyVFM: zero-shot anomaly detection with adapted vision foundation models.

Heavy optional dependencies (wandb, diffusers) are imported where they are used, so importing
this package stays fast.
"""

__version__ = "0.1.0"
