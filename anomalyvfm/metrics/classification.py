"""Exact binary classification metrics as torchmetrics ``Metric`` modules.

The modules keep every score and label they see (list states concatenated across processes under
DDP) and evaluate the exact functional metric once in ``compute``. That is what makes the numbers
independent of batch size, number of devices and any binning.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalyvfm.metrics.functional import (
    _check_binary,
    binary_auroc,
    binary_average_precision,
    binary_f1_max,
)

__all__ = ["BinaryAUROC", "BinaryAveragePrecision", "BinaryF1Max"]


class _ExactBinaryMetric(Metric):
    """Accumulates flattened scores and binary labels; subclasses pick the functional metric."""

    full_state_update: bool = False
    is_differentiable: bool = False
    higher_is_better: bool | None = True
    plot_lower_bound: float | None = 0.0
    plot_upper_bound: float | None = 1.0

    preds: list[Tensor]
    target: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Adds a batch of scores and labels.

        Args:
            preds: Scores of any shape; higher means more likely positive.
            target: Binary labels (bool or {0, 1}) of the same shape as ``preds``.

        Raises:
            ValueError: If the shapes differ or ``target`` is not binary.
        """
        if preds.shape != target.shape:
            raise ValueError(
                f"`preds` and `target` must have the same shape, got {tuple(preds.shape)} and "
                f"{tuple(target.shape)}."
            )
        _check_binary(target, "target")
        self.preds.append(preds.detach().reshape(-1))
        # bool labels take an eighth of the memory of int64 ones and lose nothing.
        self.target.append(target.detach().reshape(-1).to(torch.bool))

    def compute(self) -> Tensor:
        """Evaluates the metric on everything seen since the last reset.

        Returns:
            0-dim float64 tensor; NaN when nothing was seen or the metric is undefined.
        """
        if isinstance(self.preds, list) and len(self.preds) == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.device)
        return self._metric(dim_zero_cat(self.preds), dim_zero_cat(self.target))

    @abstractmethod
    def _metric(self, preds: Tensor, target: Tensor) -> Tensor:
        """The functional metric evaluated on all accumulated (1-D) data."""


class BinaryAUROC(_ExactBinaryMetric):
    """Exact, tie-aware area under the ROC curve; see :func:`binary_auroc`."""

    def _metric(self, preds: Tensor, target: Tensor) -> Tensor:
        return binary_auroc(preds, target)


class BinaryAveragePrecision(_ExactBinaryMetric):
    """Exact step-wise average precision; see :func:`binary_average_precision`."""

    def _metric(self, preds: Tensor, target: Tensor) -> Tensor:
        return binary_average_precision(preds, target)


class BinaryF1Max(_ExactBinaryMetric):
    """Maximum F1 score over all distinct thresholds; see :func:`binary_f1_max`."""

    def _metric(self, preds: Tensor, target: Tensor) -> Tensor:
        return binary_f1_max(preds, target)
