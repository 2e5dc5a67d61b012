"""Per-category evaluation of one dataset: image and pixel metrics under one protocol.

Metrics are computed per category, averaged over a dataset's categories, then over datasets
(:func:`mean_over`), as in the method's protocol. Maps may differ in size between images (the
``original`` evaluation resolution): they are stored flattened with each image's size, so regions
are always labelled within their own image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalyvfm.metric_names import (
    ALL_METRIC_NAMES,
    IMAGE_METRICS,
    METRIC_NAMES,
    PIXEL_METRICS,
)
from anomalyvfm.metrics.compat import MetricMode, metric_functions

__all__ = [
    "ALL_METRIC_NAMES",
    "IMAGE_METRICS",
    "METRIC_NAMES",
    "PIXEL_METRICS",
    "AnomalyEvaluator",
    "mean_over",
]

# The registry's names as a type, so that configs are checked when they are parsed
# (tests/test_metrics check that it lists exactly ALL_METRIC_NAMES, in order).
MetricName = Literal[
    "image_AUROC",
    "image_F1max",
    "image_AP",
    "pixel_AUROC",
    "pixel_F1max",
    "pixel_AP",
    "pixel_AUPRO",
    "pixel_AUPIMO",
]
Maps = Tensor | Sequence[Tensor]


class AnomalyEvaluator(Metric):
    """Collects scores, maps and masks of one dataset; computes metrics per category.

    States are concatenated across processes under DDP (``dist_reduce_fx="cat"``), so the result
    is that of the whole set whatever the number of devices. Maps are kept at the resolution they
    arrive in; with ``compute_on_cpu=True`` (a torchmetrics option) they are moved to host memory
    after every batch, which keeps large evaluations off the GPU.

    Args:
        categories: the dataset's categories, in a fixed order shared by every process.
        pixel_labels: whether masks are meaningful (else no map is stored and no pixel metric
            computed).
        image_labels: whether image labels are meaningful (else no image metric is computed:
            sets where every image is anomalous).
        fpr_limit: AUPRO integration limit (0.3).
        metric_mode: ``exact`` (every distinct score a threshold), ``reference_binned`` (the
            AnomalyVFM reference's 200-bin approximation) or ``threshold_loop`` (the 200-threshold
            AUPRO loop of most zero-shot papers); see :mod:`anomalyvfm.metrics.compat`.
        metrics: metric names to compute; the seven of the method's tables when None
            (``pixel_AUPIMO`` is opt-in).
        compute_on_cpu: move the stored states to the CPU after each update.

    Besides the metrics, it counts the defective images whose mask is empty (no anomalous pixel:
    often a mask encoding the reader did not expect); :attr:`num_empty_masks` holds the count of
    the whole set after :meth:`compute`.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    scores: list[Tensor]
    labels: list[Tensor]
    category_ids: list[Tensor]
    sizes: list[Tensor]
    indices: list[Tensor]
    maps: list[Tensor]
    masks: list[Tensor]
    empty_masks: Tensor

    def __init__(
        self,
        categories: list[str],
        pixel_labels: bool = True,
        image_labels: bool = True,
        fpr_limit: float = 0.3,
        metric_mode: MetricMode = "exact",
        metrics: Sequence[MetricName] | None = None,
        compute_on_cpu: bool = False,
    ) -> None:
        super().__init__(compute_on_cpu=compute_on_cpu)
        self.categories = list(categories)
        self.pixel_labels = pixel_labels
        self.image_labels = image_labels
        self.fpr_limit = fpr_limit
        self.metric_mode: MetricMode = metric_mode
        names = list(metrics) if metrics is not None else list(METRIC_NAMES)
        unknown = [n for n in names if n not in ALL_METRIC_NAMES]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(ALL_METRIC_NAMES)}")
        self.metric_names = [
            n
            for n in names
            if (n in IMAGE_METRICS and image_labels) or (n not in IMAGE_METRICS and pixel_labels)
        ]
        self.functions = _select(metric_functions(metric_mode, fpr_limit), self.metric_names)
        self.num_images: dict[str, int] = {}
        self.num_empty_masks = 0
        for name in ("scores", "labels", "category_ids", "indices", "sizes", "maps", "masks"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("empty_masks", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(
        self,
        scores: Tensor,
        labels: Tensor,
        categories: list[str],
        maps: Maps,
        masks: Maps,
        indices: Tensor | None = None,
        empty_masks: Tensor | None = None,
    ) -> None:
        """Adds a batch.

        Args:
            scores: image scores (B,).
            labels: image labels (B,), 1 = anomalous.
            categories: the B category names.
            maps: anomaly maps, (B, H, W) or B tensors (H_i, W_i).
            masks: ground-truth masks shaped like ``maps``.
            indices: the samples' positions in the dataset (B,). When every batch has them,
                ``compute`` puts the samples into dataset order first, so the result is
                bit-identical however the samples were split between processes and batches.
            empty_masks: (B,) bool, True for a defective image whose mask (at its own resolution)
                has no anomalous pixel; counted in :attr:`num_empty_masks`.

        Raises:
            ValueError: for an unknown category or a map whose shape differs from its mask.
        """
        if len(maps) != len(masks) or any(a.shape != b.shape for a, b in zip(maps, masks)):
            shapes = [tuple(m.shape) for m in maps], [tuple(m.shape) for m in masks]
            raise ValueError(f"anomaly maps {shapes[0]} and masks {shapes[1]} differ")
        try:
            ids = [self.categories.index(c) for c in categories]
        except ValueError as err:
            raise ValueError(f"unknown category in batch: {err}") from err
        self.scores.append(scores.detach().float().reshape(-1))
        self.labels.append(labels.detach().long().reshape(-1))
        self.category_ids.append(torch.tensor(ids, device=scores.device))
        if indices is not None:
            self.indices.append(indices.detach().long().reshape(-1).to(scores.device))
        if empty_masks is not None:
            self.empty_masks += empty_masks.detach().reshape(-1).sum().to(self.empty_masks)
        if self.pixel_labels:
            self.sizes.append(torch.tensor([tuple(m.shape) for m in maps], device=scores.device))
            self.maps.append(torch.cat([m.detach().float().reshape(-1) for m in maps]))
            self.masks.append(torch.cat([(m.detach() > 0.5).reshape(-1) for m in masks]))

    def compute(self) -> dict[str, dict[str, float]]:
        """``{category: {metric: value}}``; NaN where a metric is undefined.

        Also sets :attr:`num_images` (images per category) and :attr:`num_empty_masks`.
        """
        self.num_empty_masks = int(self.empty_masks)
        if isinstance(self.scores, list) and not self.scores:  # a tensor once synchronised
            return {}
        scores, labels = dim_zero_cat(self.scores), dim_zero_cat(self.labels)
        ids = dim_zero_cat(self.category_ids)
        order = self._dataset_order(scores)
        scores, labels, ids = scores[order], labels[order], ids[order]
        per_image: list[tuple[Tensor, Tensor]] = []
        if self.pixel_labels:
            sizes = dim_zero_cat(self.sizes).reshape(-1, 2)
            counts = (sizes[:, 0] * sizes[:, 1]).tolist()
            maps = torch.split(dim_zero_cat(self.maps), counts)
            masks = torch.split(dim_zero_cat(self.masks), counts)
            shapes = [tuple(s) for s in sizes.tolist()]
            unordered = [(m.view(s), k.view(s)) for m, k, s in zip(maps, masks, shapes)]
            per_image = [unordered[j] for j in order.tolist()]
        out: dict[str, dict[str, float]] = {}
        self.num_images = {}
        for i, category in enumerate(self.categories):
            sel = torch.nonzero(ids == i).flatten()
            if sel.numel() == 0:
                continue
            self.num_images[category] = int(sel.numel())
            res: dict[str, float] = {}
            for name, fn in self.functions.items():
                if name in IMAGE_METRICS:
                    res[name] = float(fn(scores[sel], labels[sel]))
                else:
                    chosen = [per_image[j] for j in sel.tolist()]
                    res[name] = float(fn([m for m, _ in chosen], [k for _, k in chosen]))
            out[category] = res
        return out

    def _dataset_order(self, scores: Tensor) -> Tensor:
        """Permutation into dataset order (identity when indices were not given)."""
        count = scores.numel()
        if isinstance(self.indices, list) and len(self.indices) == 0:
            return torch.arange(count, device=scores.device)
        indices = dim_zero_cat(self.indices).to(scores.device)
        if indices.numel() != count:
            raise ValueError(
                f"sample indices were given for {indices.numel()} of {count} samples: pass "
                "them with every batch or with none"
            )
        return torch.argsort(indices, stable=True)


def _select(functions: dict[str, Callable], names: list[str]) -> dict[str, Callable]:
    missing = [n for n in names if n not in functions]
    if missing:
        raise ValueError(f"metrics {missing} have no implementation in this metric mode")
    return {n: functions[n] for n in names}


def mean_over(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over categories (or datasets), ignoring NaN and absent entries."""
    means: dict[str, float] = {}
    for name in ALL_METRIC_NAMES:
        vals = [r[name] for r in results.values() if name in r and not math.isnan(r[name])]
        if vals:
            means[name] = sum(vals) / len(vals)
    return means
