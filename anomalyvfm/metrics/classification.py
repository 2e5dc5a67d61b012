"""Exact binary classification metrics as torchmetrics ``Metric`` modules.

The modules keep every score and label they see (list states concatenated across processes under
DDP) and evaluate the exact functional metric once in ``compute``. That is what makes the numbers
independent of batch size, number of devices and any binning.

``Binary*`` accept any shape; ``Image*`` take one score and label per image (shape ``(N,)``);
``Pixel*`` take anomaly maps and masks, ``(N, H, W)`` or lists of ``(H_i, W_i)`` tensors, and
pool all pixels.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalyvfm.metrics._inputs import Maps, as_image_list, check_binary, flatten
from anomalyvfm.metrics.functional import (
    binary_auroc,
    binary_average_precision,
    binary_f1_max,
)

__all__ = [
    "BinaryAUROC",
    "BinaryAveragePrecision",
    "BinaryF1Max",
    "ImageAUROC",
    "ImageAveragePrecision",
    "ImageF1Max",
    "PixelAUROC",
    "PixelAveragePrecision",
    "PixelF1Max",
]


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
        check_binary(target, "target")
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


class _ImageMixin(_ExactBinaryMetric):
    """Image level: one score and one label per image."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Adds a batch of image scores and labels.

        Args:
            preds: Image scores of shape ``(N,)`` (a 0-dim tensor counts as one image).
            target: Binary image labels (1 = anomalous) of the same shape.

        Raises:
            ValueError: If the shapes differ or are not 1-D, or ``target`` is not binary.
        """
        if preds.ndim > 1:
            raise ValueError(
                f"`preds` must be image scores of shape (N,), got {tuple(preds.shape)}; use the "
                "Pixel* metrics for anomaly maps."
            )
        super().update(preds, target)


class _PixelMixin(_ExactBinaryMetric):
    """Pixel level: anomaly maps and masks, all pixels pooled."""

    def update(self, preds: Maps, target: Maps) -> None:
        """Adds a batch of anomaly maps and ground-truth masks.

        Args:
            preds: Anomaly maps, ``(N, H, W)`` or a sequence of ``(H_i, W_i)`` tensors.
            target: Binary masks of the same structure and shapes.

        Raises:
            ValueError: If the maps are not (N, H, W) / (H, W), shapes differ, or the masks are
                not binary.
        """
        scores, labels = flatten(*as_image_list(preds, target))
        if scores.numel():
            self.preds.append(scores)
            self.target.append(labels)


class ImageAUROC(_ImageMixin, BinaryAUROC):
    """Exact image-level AUROC over ``(N,)`` scores; see :func:`binary_auroc`."""


class ImageAveragePrecision(_ImageMixin, BinaryAveragePrecision):
    """Exact image-level average precision over ``(N,)`` scores."""


class ImageF1Max(_ImageMixin, BinaryF1Max):
    """Image-level F1 maximised over all distinct thresholds."""


class PixelAUROC(_PixelMixin, BinaryAUROC):
    """Exact pixel-level AUROC over all pixels of ``(N, H, W)`` maps."""


class PixelAveragePrecision(_PixelMixin, BinaryAveragePrecision):
    """Exact pixel-level average precision over all pixels of ``(N, H, W)`` maps."""


class PixelF1Max(_PixelMixin, BinaryF1Max):
    """Pixel-level F1 maximised over all distinct thresholds, all pixels pooled."""
