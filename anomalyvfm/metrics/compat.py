"""Compatibility modes: the two approximate metrics published zero-shot numbers were made with.

``exact`` metrics (:mod:`anomalyvfm.metrics.functional`, :mod:`anomalyvfm.metrics.aupimo`) take
every distinct score as a threshold. Published numbers mostly do not, so to reproduce and compare
them two common approximations are re-implemented from their descriptions:

* ``reference_binned`` (:mod:`anomalyvfm.metrics.reference_binned`): the AnomalyVFM reference
  evaluation, ADEval's 200-bin histograms for pixel AUROC, AP and AUPRO. Image AUROC/AP/F1-max
  and pixel F1-max are exact there (scikit-learn), so they are exact in this mode too. The
  reference evaluates 96x96 maps after a 5x5 mean filter: a protocol choice made before the
  metrics, not part of them.
* ``threshold_loop`` (:mod:`anomalyvfm.metrics.threshold_loop`): the 200-threshold AUPRO loop of
  APRIL-GAN / AnomalyCLIP (``cal_pro_score``). Their other metrics are scikit-learn's, i.e. exact.

All functions take tensors and return a 0-dim float64 tensor on the maps' device, NaN where the
value is undefined (where the original code would crash or divide by zero).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

from torch import Tensor

from anomalyvfm.metric_names import ALL_METRIC_NAMES
from anomalyvfm.metrics.reference_binned import (
    binned_aupro,
    binned_auroc,
    binned_average_precision,
)
from anomalyvfm.metrics.registry import metric_function
from anomalyvfm.metrics.threshold_loop import threshold_loop_aupro

__all__ = [
    "METRIC_MODES",
    "MetricMode",
    "binned_aupro",
    "binned_auroc",
    "binned_average_precision",
    "metric_functions",
    "threshold_loop_aupro",
]

MetricMode = Literal["exact", "reference_binned", "threshold_loop"]
METRIC_MODES: tuple[MetricMode, ...] = ("exact", "reference_binned", "threshold_loop")
MetricFunction = Callable[[Any, Any], Tensor]


def metric_functions(
    mode: MetricMode = "exact",
    fpr_limit: float = 0.3,
    *,
    num_bins: int = 200,
    num_thresholds: int = 200,
    fpr_bounds: tuple[float, float] = (1e-5, 1e-4),
) -> dict[str, MetricFunction]:
    """The metric functions of one mode, by the names of the evaluation tables.

    Image functions take ``(scores (N,), labels (N,))``; pixel functions take
    ``(maps, masks)``, each ``(N, H, W)`` or a sequence of ``(H_i, W_i)`` tensors. In every mode
    ``pixel_AUPIMO`` is the exact :func:`anomalyvfm.metrics.aupimo.aupimo`.

    Args:
        mode: ``exact``; ``reference_binned`` (pixel AUROC, AP and AUPRO binned as the AnomalyVFM
            reference does, the rest exact as there); ``threshold_loop`` (AUPRO by the
            200-threshold loop, the rest exact as in those repositories).
        fpr_limit: AUPRO integration limit.
        num_bins: histogram bins of ``reference_binned``.
        num_thresholds: threshold steps of ``threshold_loop``.
        fpr_bounds: AUPIMO's shared-FPR range.

    Returns:
        ``{name: function}`` for every metric of the registry
        (:data:`anomalyvfm.metric_names.ALL_METRIC_NAMES`), in its order.

    Raises:
        ValueError: for an unknown mode.
    """
    if mode not in METRIC_MODES:
        raise ValueError(f"unknown metric mode {mode!r}; choose from {list(METRIC_MODES)}.")
    functions: dict[str, MetricFunction] = {
        # Exact metrics through the package's torchmetrics classes (one implementation each).
        name: metric_function(name)
        for name in ALL_METRIC_NAMES
        if name not in ("pixel_AUPRO", "pixel_AUPIMO")
    }
    functions["pixel_AUPRO"] = metric_function("pixel_AUPRO", fpr_limit=fpr_limit)
    functions["pixel_AUPIMO"] = metric_function("pixel_AUPIMO", fpr_bounds=fpr_bounds)
    if mode == "reference_binned":
        functions["pixel_AUROC"] = partial(binned_auroc, num_bins=num_bins)
        functions["pixel_AP"] = partial(binned_average_precision, num_bins=num_bins)
        functions["pixel_AUPRO"] = partial(binned_aupro, fpr_limit=fpr_limit, num_bins=num_bins)
    elif mode == "threshold_loop":
        functions["pixel_AUPRO"] = partial(
            threshold_loop_aupro, fpr_limit=fpr_limit, num_thresholds=num_thresholds
        )
    return functions
