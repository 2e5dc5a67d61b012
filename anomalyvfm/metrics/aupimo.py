"""Exact AUPIMO: area under the per-image overlap curve in a low shared-FPR range.

AUPIMO (Bertoldo et al. 2024, "AUPIMO: Redefining visual anomaly detection benchmarks with high
speed and low tolerance") scores every anomalous image by how much of its defect is found at
thresholds where the normal images show almost no false positives.

Definition implemented here, with every distinct score a threshold ``t`` (``score >= t`` is
predicted anomalous):

* An image is anomalous if its mask has at least one anomalous pixel, normal otherwise.
* Shared FPR: ``shFPR(t)`` is the mean over the normal images of each image's false positive
  rate (fraction of its pixels with ``score >= t``). For normal images of one size this is the
  fraction of all their pixels. Pixels of anomalous images never enter it.
* Per-image overlap: ``TPR_i(t)``, the fraction of anomalous image ``i``'s defect pixels with
  ``score >= t``.
* The PIMO curve of image ``i`` joins the points ``(log shFPR(t), TPR_i(t))`` of consecutive
  thresholds with straight lines (the trapezoid rule in log-FPR, as the paper integrates).
  ``AUPIMO_i`` is the area under it between ``log L`` and ``log U`` for
  ``fpr_bounds = (L, U)``, the curve being interpolated linearly (in log-FPR) at the bounds,
  divided by ``log(U / L)`` so that a perfect image scores 1.
* The metric is the mean of ``AUPIMO_i`` over the anomalous images.

The result is NaN when there is no normal or no anomalous image, and also when the normal
images are too few to resolve the lower bound: the smallest positive shared FPR any threshold
reaches (one normal pixel of the largest normal image, or the top tie group) exceeds ``L``, so
the curve below it is unknown. Default bounds ``(1e-5, 1e-4)`` need about 1e5 normal pixels.

Only the normal pixels scoring high enough to matter for ``shFPR <= U`` are sorted, and every
defect pixel adds its share of the integral in one vectorised pass, so time and memory are
close to linear in the number of pixels, on CPU or GPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalyvfm.metrics._inputs import Maps, as_image_list, nan, score_dtype

__all__ = ["AUPIMO", "aupimo", "per_image_aupimo"]


def _check_bounds(fpr_bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(b) for b in fpr_bounds)
    if not 0.0 < low < high <= 1.0:
        raise ValueError(f"`fpr_bounds` must satisfy 0 < lower < upper <= 1, got {fpr_bounds}.")
    return low, high


def _shared_fpr_points(
    normal: list[Tensor], upper: float, dtype: torch.dtype
) -> tuple[Tensor, ...]:
    """Distinct normal scores ``v`` (descending) with ``shFPR(v)``, down to ``shFPR >= upper``."""
    scores = torch.cat([m.reshape(-1).to(dtype) for m in normal])
    num_images = len(normal)
    largest = max(m.numel() for m in normal)
    # No pixel weighs less than 1 / (num_images * largest), so the k largest normal scores
    # already reach a shared FPR above `upper`; every threshold that matters is >= the k-th.
    # The +2 absorbs rounding in the product.
    k = min(scores.numel(), math.floor(upper * num_images * largest) + 2)
    cutoff = torch.kthvalue(scores, scores.numel() - k + 1).values
    values, weights = [], []
    for m in normal:
        kept = m.reshape(-1).to(dtype)
        kept = kept[kept >= cutoff]
        values.append(kept)
        weights.append(torch.full_like(kept, 1.0 / (num_images * m.numel()), dtype=torch.float64))
    value, order = torch.sort(torch.cat(values), descending=True)
    shared_fpr = torch.cumsum(torch.cat(weights)[order], dim=0)
    last = torch.ones_like(value, dtype=torch.bool)
    last[:-1] = value[1:] != value[:-1]  # a tie group is one threshold: keep its last position
    return value[last], shared_fpr[last]


def _segment_weights(log_fpr: Tensor, low: float, high: float) -> tuple[Tensor, Tensor]:
    """Integration weights of the segments between consecutive normal-score thresholds.

    Segment k joins the point just above threshold ``v_k`` (x = log_fpr[k-1], y = fraction of
    defect pixels with score > v_k) to the point at ``v_k`` (x = log_fpr[k], y = fraction with
    score >= v_k); between them TPR is linear in x. Clipped to [low, high], its area is
    ``alpha_k * y_left + beta_k * y_right``.
    """
    x0, x1 = log_fpr[:-1], log_fpr[1:]
    a = torch.clamp(x0, min=low)
    b = torch.clamp(x1, max=high)
    width = torch.clamp(b - a, min=0.0)
    # x1 > x0 always: each distinct normal score adds positive weight to the shared FPR.
    mid = ((a + b) / 2 - x0) / (x1 - x0)
    return width * (1 - mid), width * mid


def per_image_aupimo(
    maps: Maps, masks: Maps, fpr_bounds: tuple[float, float] = (1e-5, 1e-4)
) -> Tensor:
    """Exact AUPIMO of every image (see the module docstring for the definition).

    Args:
        maps: anomaly maps, ``(N, H, W)`` or a sequence of ``(H_i, W_i)`` tensors; higher means
            more anomalous.
        masks: binary ground truth of the same structure.
        fpr_bounds: ``(L, U)``, the shared-FPR integration range, ``0 < L < U <= 1``.

    Returns:
        float64 tensor of shape ``(N,)`` on the maps' device: AUPIMO of each anomalous image,
        NaN for normal images (and for all images when the metric is undefined).

    Raises:
        ValueError: for malformed maps or masks, or invalid ``fpr_bounds``.
    """
    low, high = _check_bounds(fpr_bounds)
    images, gts = as_image_list(maps, masks)
    device = images[0].device if images else torch.device("cpu")
    result = torch.full((len(images),), float("nan"), dtype=torch.float64, device=device)
    anomalous = [bool(k.any()) for k in gts]
    normal = [m for m, a in zip(images, anomalous) if not a]
    if not normal or not any(anomalous):
        return result
    dtype = score_dtype(images)
    value, shared_fpr = _shared_fpr_points(normal, high, dtype)
    log_fpr = torch.log(shared_fpr)
    # The curve left of the first point starts at shFPR = 0 (log = -inf): its shape there is
    # unknown, so the lower bound must be reached. The tolerance absorbs summation rounding.
    if float(log_fpr[0]) > math.log(low) + 1e-9:
        return result
    alpha, beta = _segment_weights(log_fpr, math.log(low), math.log(high))
    index = [i for i, a in enumerate(anomalous) if a]
    areas = _defect_areas(value[1:], alpha, beta, [images[i][gts[i]].to(dtype) for i in index])
    # Clamping only removes rounding beyond [0, 1]; exact values lie inside.
    result[torch.tensor(index, device=device)] = (areas / math.log(high / low)).clamp(0.0, 1.0)
    return result


def _defect_areas(value: Tensor, alpha: Tensor, beta: Tensor, defects: list[Tensor]) -> Tensor:
    """Per image, the mean over its defect pixels of the area they add under the PIMO curve.

    A defect pixel scoring s counts in the left point of segment k when s > v_k (weight
    ``alpha_k``) and in its right point when s >= v_k (weight ``beta_k``); with the thresholds
    ascending and prefix sums, each pixel needs two binary searches.
    """
    thresholds = value.flip(0).contiguous()
    zero = alpha.new_zeros(1)
    alpha_sum = torch.cat([zero, torch.cumsum(alpha.flip(0), 0)])
    beta_sum = torch.cat([zero, torch.cumsum(beta.flip(0), 0)])
    pixels = torch.cat(defects)
    counts = torch.tensor([d.numel() for d in defects], device=pixels.device)
    owner = torch.repeat_interleave(torch.arange(len(defects), device=pixels.device), counts)
    gain = alpha_sum[torch.searchsorted(thresholds, pixels, right=False)]
    gain = gain + beta_sum[torch.searchsorted(thresholds, pixels, right=True)]
    totals = torch.zeros(len(defects), dtype=torch.float64, device=pixels.device)
    return totals.index_add_(0, owner, gain) / counts.to(torch.float64)


def aupimo(maps: Maps, masks: Maps, fpr_bounds: tuple[float, float] = (1e-5, 1e-4)) -> Tensor:
    """Exact AUPIMO: the mean of :func:`per_image_aupimo` over the anomalous images.

    Args:
        maps: anomaly maps, ``(N, H, W)`` or a sequence of ``(H_i, W_i)`` tensors.
        masks: binary ground truth of the same structure.
        fpr_bounds: ``(L, U)``, the shared-FPR integration range, ``0 < L < U <= 1``.

    Returns:
        0-dim float64 tensor; NaN without normal or anomalous images, or when the normal images
        cannot resolve ``L``.
    """
    per_image = per_image_aupimo(maps, masks, fpr_bounds)
    values = per_image[~torch.isnan(per_image)]
    return values.mean() if values.numel() else nan(per_image.device)


class AUPIMO(Metric):
    """Exact AUPIMO as a torchmetrics metric; see :mod:`anomalyvfm.metrics.aupimo`.

    Maps are stored flattened with each image's size (list states concatenated across processes
    under DDP), so images of different sizes can be mixed and regions never cross images.

    Args:
        fpr_bounds: ``(L, U)``, the shared-FPR integration range, ``0 < L < U <= 1``.
        return_average: if True ``compute`` returns the mean over anomalous images, else the
            ``(N,)`` per-image values (NaN for normal images) in the order seen (rank order
            after a DDP sync).
        **kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    full_state_update: bool = False
    is_differentiable: bool = False
    higher_is_better: bool | None = True
    plot_lower_bound: float | None = 0.0
    plot_upper_bound: float | None = 1.0

    maps: list[Tensor]
    masks: list[Tensor]
    sizes: list[Tensor]

    def __init__(
        self,
        fpr_bounds: tuple[float, float] = (1e-5, 1e-4),
        return_average: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fpr_bounds = _check_bounds(fpr_bounds)
        self.return_average = return_average
        for name in ("maps", "masks", "sizes"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: Maps, target: Maps) -> None:
        """Adds a batch of anomaly maps and masks: ``(N, H, W)`` or lists of ``(H_i, W_i)``.

        Raises:
            ValueError: for malformed maps or non-binary masks.
        """
        images, gts = as_image_list(preds, target)
        if not images:
            return
        dtype = score_dtype(images)
        self.maps.append(torch.cat([m.reshape(-1).to(dtype) for m in images]))
        self.masks.append(torch.cat([k.reshape(-1) for k in gts]))
        shapes = [tuple(m.shape) for m in images]
        self.sizes.append(torch.tensor(shapes, dtype=torch.long, device=images[0].device))

    def compute(self) -> Tensor:
        """AUPIMO of everything seen since the last reset (see ``return_average``)."""
        if isinstance(self.maps, list) and len(self.maps) == 0:
            return nan(self.device) if self.return_average else torch.zeros(0, dtype=torch.float64)
        sizes = dim_zero_cat(self.sizes).reshape(-1, 2)
        counts = (sizes[:, 0] * sizes[:, 1]).tolist()
        shapes = [tuple(s) for s in sizes.tolist()]
        maps = [m.view(s) for m, s in zip(torch.split(dim_zero_cat(self.maps), counts), shapes)]
        masks = [k.view(s) for k, s in zip(torch.split(dim_zero_cat(self.masks), counts), shapes)]
        if self.return_average:
            return aupimo(maps, masks, self.fpr_bounds)
        return per_image_aupimo(maps, masks, self.fpr_bounds)
