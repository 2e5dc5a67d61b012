"""Exact AUPRO as a torchmetrics ``Metric`` module."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalyvfm.metrics._inputs import Maps, as_image_list
from anomalyvfm.metrics.functional import aupro

__all__ = ["AUPRO"]


class AUPRO(Metric):
    """Exact normalised area under the per-region-overlap curve up to an FPR limit.

    Stores all anomaly maps and masks (list states concatenated across processes under DDP) and
    evaluates :func:`anomalyvfm.metrics.functional.aupro` once in ``compute``, so regions and the
    global threshold sweep are exactly those of the whole evaluation set. Maps may be a batch
    ``(N, H, W)`` or images of different sizes (the evaluator's ``original`` resolution).

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
    sizes: list[Tensor]

    def __init__(self, fpr_limit: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 < fpr_limit <= 1.0:
            raise ValueError(f"`fpr_limit` must lie in (0, 1], got {fpr_limit}.")
        self.fpr_limit = fpr_limit
        # Flattened maps and masks with each image's (H, W): images of any size can be mixed.
        for name in ("maps", "masks", "sizes"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: Maps, target: Maps) -> None:
        """Adds a batch of anomaly maps and ground-truth masks.

        Args:
            preds: Anomaly maps of shape (N, H, W), or a sequence of (H_i, W_i) maps (images at
                their own sizes); higher means more anomalous.
            target: Binary masks (bool or {0, 1}) shaped like ``preds``.

        Raises:
            ValueError: If a map and its mask differ in shape, a batch tensor is not (N, H, W),
                or ``target`` is not binary.
        """
        if isinstance(preds, Tensor):
            if preds.ndim != 3:
                raise ValueError(
                    f"`preds` must be anomaly maps of shape (N, H, W), got {tuple(preds.shape)}."
                )
            if isinstance(target, Tensor) and preds.shape != target.shape:
                raise ValueError(
                    f"`preds` and `target` must have the same shape, got {tuple(preds.shape)} "
                    f"and {tuple(target.shape)}."
                )
        # Validated per batch, so the error points at the offending one (masks must be binary).
        images, gts = as_image_list(preds, target)
        if not images:
            return
        self.maps.append(torch.cat([m.detach().reshape(-1) for m in images]))
        self.masks.append(torch.cat([k.detach().reshape(-1).to(torch.bool) for k in gts]))
        shapes = [tuple(m.shape) for m in images]
        self.sizes.append(torch.tensor(shapes, dtype=torch.long, device=images[0].device))

    def compute(self) -> Tensor:
        """Evaluates AUPRO on all maps seen since the last reset.

        Returns:
            0-dim float64 tensor; NaN when nothing was seen or the masks hold no region or no
            normal pixel.
        """
        if isinstance(self.maps, list) and len(self.maps) == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.device)
        sizes = dim_zero_cat(self.sizes).reshape(-1, 2)
        shapes = [tuple(s) for s in sizes.tolist()]
        counts = [h * w for h, w in shapes]
        flat_maps, flat_masks = dim_zero_cat(self.maps), dim_zero_cat(self.masks)
        if len(set(shapes)) == 1:  # one size: the (N, H, W) form
            return aupro(
                flat_maps.view(-1, *shapes[0]), flat_masks.view(-1, *shapes[0]), self.fpr_limit
            )
        maps = [m.view(s) for m, s in zip(torch.split(flat_maps, counts), shapes)]
        masks = [k.view(s) for k, s in zip(torch.split(flat_masks, counts), shapes)]
        return aupro(maps, masks, self.fpr_limit)
