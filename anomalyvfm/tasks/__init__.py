"""Lightning tasks."""

from anomalyvfm.tasks.anomaly_detection import AnomalyVFM

__all__ = ["AnomalyVFM"]
