"""Exact evaluation metrics: image-level AUROC/AP/F1-max and pixel-level AUPRO."""

from anomalyvfm.metrics.aupro import AUPRO
from anomalyvfm.metrics.classification import BinaryAUROC, BinaryAveragePrecision, BinaryF1Max
from anomalyvfm.metrics.functional import (
    aupro,
    binary_auroc,
    binary_average_precision,
    binary_f1_max,
)

__all__ = [
    "AUPRO",
    "BinaryAUROC",
    "BinaryAveragePrecision",
    "BinaryF1Max",
    "aupro",
    "binary_auroc",
    "binary_average_precision",
    "binary_f1_max",
]
