"""Evaluation metrics: exact image- and pixel-level metrics, AUPRO, AUPIMO, compatibility modes.

Modules (torchmetrics, ``update(preds, target)`` / ``compute()``, DDP-synchronised):
``ImageAUROC``, ``ImageAveragePrecision``, ``ImageF1Max`` (scores ``(N,)``); ``PixelAUROC``,
``PixelAveragePrecision``, ``PixelF1Max``, ``AUPRO``, ``AUPIMO`` (maps ``(N, H, W)``).
Functional forms live in :mod:`anomalyvfm.metrics.functional` and
:mod:`anomalyvfm.metrics.aupimo`; the approximations published numbers were made with in
:mod:`anomalyvfm.metrics.compat`.
"""

from anomalyvfm.metrics.aupimo import AUPIMO, aupimo, per_image_aupimo
from anomalyvfm.metrics.aupro import AUPRO
from anomalyvfm.metrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryF1Max,
    ImageAUROC,
    ImageAveragePrecision,
    ImageF1Max,
    PixelAUROC,
    PixelAveragePrecision,
    PixelF1Max,
)
from anomalyvfm.metrics.compat import (
    MetricMode,
    binned_aupro,
    binned_auroc,
    binned_average_precision,
    metric_functions,
    threshold_loop_aupro,
)
from anomalyvfm.metrics.functional import (
    aupro,
    binary_auroc,
    binary_average_precision,
    binary_f1_max,
)

__all__ = [
    "AUPIMO",
    "AUPRO",
    "BinaryAUROC",
    "BinaryAveragePrecision",
    "BinaryF1Max",
    "ImageAUROC",
    "ImageAveragePrecision",
    "ImageF1Max",
    "MetricMode",
    "PixelAUROC",
    "PixelAveragePrecision",
    "PixelF1Max",
    "aupimo",
    "aupro",
    "binary_auroc",
    "binary_average_precision",
    "binary_f1_max",
    "binned_aupro",
    "binned_auroc",
    "binned_average_precision",
    "metric_functions",
    "per_image_aupimo",
    "threshold_loop_aupro",
]
