"""Exact AUPRO as a torchmetrics ``Metric`` module."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalyvfm.metrics.functional import _check_binary, aupro

__all__ = ["AUPRO"]


class AUPRO(Metric):
    """Exact normalised area under the per-region-overlap curve up to an FPR limit.

    Stores all anomaly maps and masks (list states concatenated across processes under DDP) and
    evaluates :func:`anomalyvfm.metrics.functional.aupro` once in ``compute``, so regions and the
    global threshold sweep are exactly those of the whole evaluation set.

    Args:
        fpr_limit: Upper integration limit of the false positive rate, in (0, 1].
        **kwargs: Forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: If ``fpr_limit`` is outside (0, 1].
    """

    full_state_update: bool = False
    is_differentiable: bool = False
    higher_is_better: bool | None = True
    plot_lower_bound: float | None = 0.0
    plot_upper_bound: float | None = 1.0

    maps: list[Tensor]
    masks: list[Tensor]

    def __init__(self, fpr_limit: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"`fpr_limit` must lie in (0, 1], got {fpr_limit}.")
        self.fpr_limit = fpr_limit
        self.add_state("maps", default=[], dist_reduce_fx="cat")
        self.add_state("masks", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Adds a batch of anomaly maps and ground-truth masks.

        Args:
            preds: Anomaly maps of shape (N, H, W); higher means more anomalous.
            target: Binary masks (bool or {0, 1}) of shape (N, H, W).

        Raises:
            ValueError: If the shapes differ, are not (N, H, W), do not match the spatial size of
                earlier batches, or ``target`` is not binary.
        """
        if preds.ndim != 3:
            raise ValueError(
                f"`preds` must be anomaly maps of shape (N, H, W), got {tuple(preds.shape)}."
            )
        if preds.shape != target.shape:
            raise ValueError(
                f"`preds` and `target` must have the same shape, got {tuple(preds.shape)} and "
                f"{tuple(target.shape)}."
            )
        # Checked here rather than in compute so the error points at the offending batch.
        if self.maps and self.maps[0].shape[1:] != preds.shape[1:]:
            raise ValueError(
                f"All maps must share one spatial size: got {tuple(preds.shape[1:])} after "
                f"{tuple(self.maps[0].shape[1:])}."
            )
        _check_binary(target, "target")
        self.maps.append(preds.detach())
        self.masks.append(target.detach().to(torch.bool))

    def compute(self) -> Tensor:
        """Evaluates AUPRO on all maps seen since the last reset.

        Returns:
            0-dim float64 tensor; NaN when nothing was seen or the masks hold no region or no
            normal pixel.
        """
        if isinstance(self.maps, list) and len(self.maps) == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.device)
        return aupro(dim_zero_cat(self.maps), dim_zero_cat(self.masks), self.fpr_limit)
