"""Per-category evaluation of one dataset: image AUROC, pixel AUROC and exact AUPRO."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalyvfm.metrics.functional import aupro, binary_auroc

METRIC_NAMES = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")


class AnomalyEvaluator(Metric):
    """Collects scores, maps and masks of one dataset; computes metrics per category.

    States are concatenated across processes under DDP (``dist_reduce_fx="cat"``). Maps are
    stored at the resolution they arrive in (the datamodule's ``eval_mask_size``).

    Args:
        categories: the dataset's categories, in a fixed order shared by every process.
        pixel_labels: whether masks are meaningful (else pixel metrics are NaN / not logged).
        fpr_limit: AUPRO integration limit (0.3).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    scores: list[Tensor]
    labels: list[Tensor]
    category_ids: list[Tensor]
    maps: list[Tensor]
    masks: list[Tensor]

    def __init__(self, categories: list[str], pixel_labels: bool = True, fpr_limit: float = 0.3):
        super().__init__()
        self.categories = list(categories)
        self.pixel_labels = pixel_labels
        self.fpr_limit = fpr_limit
        for name in ("scores", "labels", "category_ids", "maps", "masks"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self, scores: Tensor, labels: Tensor, categories: list[str], maps: Tensor, masks: Tensor
    ) -> None:
        """Adds a batch: image scores (B,), labels (B,), category names, maps/masks (B, H, W)."""
        if maps.shape != masks.shape:
            raise ValueError(
                f"anomaly maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ"
            )
        try:
            ids = [self.categories.index(c) for c in categories]
        except ValueError as err:
            raise ValueError(f"unknown category in batch: {err}") from err
        self.scores.append(scores.detach().float())
        self.labels.append(labels.detach().long())
        self.category_ids.append(torch.tensor(ids, device=scores.device))
        self.maps.append(maps.detach().float())
        self.masks.append(masks.detach() > 0.5)

    def compute(self) -> dict[str, dict[str, float]]:
        """``{category: {metric: value}}``; NaN where a metric is undefined."""
        if not self.scores:
            return {}
        scores, labels = dim_zero_cat(self.scores), dim_zero_cat(self.labels)
        ids = dim_zero_cat(self.category_ids)
        maps, masks = dim_zero_cat(self.maps), dim_zero_cat(self.masks)
        out: dict[str, dict[str, float]] = {}
        for i, category in enumerate(self.categories):
            sel = ids == i
            if not bool(sel.any()):
                continue
            res = {"image_AUROC": float(binary_auroc(scores[sel], labels[sel]))}
            if self.pixel_labels:
                res["pixel_AUROC"] = float(binary_auroc(maps[sel], masks[sel]))
                res["pixel_AUPRO"] = float(aupro(maps[sel], masks[sel], self.fpr_limit))
            out[category] = res
        return out


def mean_over(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over categories (or datasets), ignoring NaN entries."""
    means: dict[str, float] = {}
    for name in METRIC_NAMES:
        vals = [r[name] for r in results.values() if name in r and not math.isnan(r[name])]
        if vals:
            means[name] = sum(vals) / len(vals)
    return means
