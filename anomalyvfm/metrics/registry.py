"""The torchmetrics class behind each metric name of the registry (:mod:`anomalyvfm.metric_names`).

The evaluator computes the exact metrics of each category through these classes (the same ones
the package exports for use on their own), so a metric has one implementation whether it is
used alone or in an evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor
from torchmetrics import Metric

from anomalyvfm.metric_names import ALL_METRIC_NAMES
from anomalyvfm.metrics.aupimo import AUPIMO
from anomalyvfm.metrics.aupro import AUPRO
from anomalyvfm.metrics.classification import (
    ImageAUROC,
    ImageAveragePrecision,
    ImageF1Max,
    PixelAUROC,
    PixelAveragePrecision,
    PixelF1Max,
)

METRIC_CLASSES: dict[str, type[Metric]] = {
    "image_AUROC": ImageAUROC,
    "image_F1max": ImageF1Max,
    "image_AP": ImageAveragePrecision,
    "pixel_AUROC": PixelAUROC,
    "pixel_F1max": PixelF1Max,
    "pixel_AP": PixelAveragePrecision,
    "pixel_AUPRO": AUPRO,
    "pixel_AUPIMO": AUPIMO,
}
assert tuple(METRIC_CLASSES) == ALL_METRIC_NAMES, "the registry and its classes disagree"


def metric_function(name: str, **options: Any) -> Callable[[Any, Any], Tensor]:
    """``(preds, target) -> value`` computed by a fresh, unsynchronised instance of the class
    behind ``name`` (``options`` go to its constructor, e.g. ``fpr_limit`` for AUPRO)."""
    cls = METRIC_CLASSES[name]

    def compute(preds: Any, target: Any) -> Tensor:
        # The caller holds the whole set already (the evaluator gathers its states across
        # processes first): no second gathering, which would count other ranks' images twice.
        metric = cls(sync_on_compute=False, **options)
        metric.update(preds, target)
        return metric.compute()

    compute.__name__ = f"{cls.__name__}_compute"
    return compute
