"""Exact, threshold-free evaluation metrics for anomaly detection.

Every function takes raw anomaly scores (higher means more anomalous) and binary ground truth,
treats every distinct score as a threshold (``score >= t`` is predicted anomalous) and returns a
0-dim ``float64`` tensor on the device of the scores. Counting and integration happen in
``float64`` so that results match slow, exact references to ~1e-12. Undefined results (one class
missing, no anomalous regions, ...) are ``NaN`` rather than an exception, because they arise
legitimately on small evaluation splits and should not abort a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from anomalyvfm.metrics._pro_curve import aupro_from_anomalous, label_anomalous

__all__ = ["aupro", "binary_auroc", "binary_average_precision", "binary_f1_max"]

# Connectivity used for ground-truth regions: 8-connected inside an image, never across images.
# Labelling the whole (N, H, W) stack in one call with this 3-D structure equals labelling each
# image with a 3x3 ones structure, but costs one scipy call instead of N.
_REGION_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_REGION_STRUCTURE[1] = True


def _nan(device: torch.device) -> Tensor:
    return torch.tensor(float("nan"), dtype=torch.float64, device=device)


def _as_sortable(scores: Tensor) -> Tensor:
    """Returns ``scores`` in a dtype that sorts and compares exactly on every device."""
    # float32/float64 are sorted natively everywhere. Every other dtype (half, bfloat16, integers,
    # bool) is widened to float64, which represents each of its values exactly, so no two distinct
    # scores can collapse into a tie.
    if scores.dtype in (torch.float32, torch.float64):
        return scores
    return scores.to(torch.float64)


def _check_binary(target: Tensor, name: str) -> None:
    if target.dtype == torch.bool:
        return
    if target.numel() > 0 and not bool(((target == 0) | (target == 1)).all()):
        values = torch.unique(target)[:6].tolist()
        raise ValueError(f"`{name}` must be binary (only 0 and 1), found values such as {values}.")


def _prepare_binary(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Validates a (scores, labels) pair and flattens it to 1-D (sortable scores, bool labels)."""
    if scores.shape != labels.shape:
        raise ValueError(
            f"`scores` and `labels` must have the same shape, got {tuple(scores.shape)} and "
            f"{tuple(labels.shape)}."
        )
    _check_binary(labels, "labels")
    flat_scores = _as_sortable(scores.detach().reshape(-1))
    flat_labels = labels.detach().reshape(-1).to(device=flat_scores.device, dtype=torch.bool)
    return flat_scores, flat_labels


def _last_of_ties(sorted_scores: Tensor) -> Tensor:
    """Boolean mask of the last element of every run of equal values in a sorted 1-D tensor."""
    # Tied scores cannot be separated by any threshold, so only the point after the whole group
    # is a reachable operating point.
    last = torch.ones_like(sorted_scores, dtype=torch.bool)
    last[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    return last


def _binary_clf_counts(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative true and false positives at every distinct threshold, from a single sort.

    Args:
        scores: 1-D scores.
        labels: 1-D bool labels, same length and device.

    Returns:
        ``(tps, fps)``, two float64 tensors of length T (the number of distinct scores), ordered by
        decreasing threshold: entry i counts the samples with ``score >= t_i`` where ``t_i`` is the
        i-th largest distinct score. The last entry therefore holds the class totals.
    """
    order = torch.argsort(scores, descending=True)
    sorted_labels = labels[order]
    # Counts stay exact in float64 up to 2**53 samples.
    tps = torch.cumsum(sorted_labels, dim=0, dtype=torch.float64)
    ranks = torch.arange(1, scores.numel() + 1, dtype=torch.float64, device=scores.device)
    fps = ranks - tps
    last = _last_of_ties(scores[order])
    return tps[last], fps[last]


def binary_auroc(scores: Tensor, labels: Tensor) -> Tensor:
    """Exact area under the ROC curve.

    Tied scores form a single threshold step, so the result equals the Mann-Whitney U statistic
    divided by ``#pos * #neg`` with ties counted as 1/2.

    Args:
        scores: Scores of any shape; higher means more likely positive.
        labels: Binary labels (bool or {0, 1}) of the same shape.

    Returns:
        0-dim float64 tensor on the device of ``scores``; NaN if only one class is present.
    """
    flat_scores, flat_labels = _prepare_binary(scores, labels)
    if flat_scores.numel() == 0:
        return _nan(flat_scores.device)
    tps, fps = _binary_clf_counts(flat_scores, flat_labels)
    num_pos, num_neg = tps[-1], fps[-1]
    if num_pos == 0 or num_neg == 0:
        return _nan(flat_scores.device)
    zero = tps.new_zeros(1)
    tpr = torch.cat([zero, tps / num_pos])
    fpr = torch.cat([zero, fps / num_neg])
    # Trapezoids over tie groups are exactly the 1/2 credit the U statistic gives to tied pairs.
    return torch.trapezoid(tpr, fpr)


def binary_average_precision(scores: Tensor, labels: Tensor) -> Tensor:
    """Exact (step-wise, non-interpolated) average precision.

    ``AP = sum_i (R_i - R_{i-1}) * P_i`` over the distinct thresholds, tied scores grouped into one
    threshold (the definition scikit-learn uses).

    Args:
        scores: Scores of any shape; higher means more likely positive.
        labels: Binary labels (bool or {0, 1}) of the same shape.

    Returns:
        0-dim float64 tensor on the device of ``scores``; NaN if there are no positives.
    """
    flat_scores, flat_labels = _prepare_binary(scores, labels)
    if flat_scores.numel() == 0:
        return _nan(flat_scores.device)
    tps, fps = _binary_clf_counts(flat_scores, flat_labels)
    num_pos = tps[-1]
    if num_pos == 0:
        return _nan(flat_scores.device)
    precision = tps / (tps + fps)  # tps + fps >= 1 at every threshold
    recall_gain = torch.diff(tps, prepend=tps.new_zeros(1)) / num_pos
    return torch.sum(recall_gain * precision)


def binary_f1_max(scores: Tensor, labels: Tensor) -> Tensor:
    """Maximum F1 score of the positive class over all distinct thresholds.

    Args:
        scores: Scores of any shape; higher means more likely positive.
        labels: Binary labels (bool or {0, 1}) of the same shape.

    Returns:
        0-dim float64 tensor on the device of ``scores``; NaN if there are no positives.
    """
    flat_scores, flat_labels = _prepare_binary(scores, labels)
    if flat_scores.numel() == 0:
        return _nan(flat_scores.device)
    tps, fps = _binary_clf_counts(flat_scores, flat_labels)
    num_pos = tps[-1]
    if num_pos == 0:
        return _nan(flat_scores.device)
    # F1 = 2TP / (2TP + FP + FN) and FN = P - TP; the denominator is >= P > 0.
    f1 = 2.0 * tps / (tps + fps + num_pos)
    return f1.max()


def _label_regions(masks: Tensor) -> tuple[Tensor, Tensor]:
    """Labels the 8-connected regions of each (H, W) mask of an (N, H, W) stack.

    Returns:
        ``(regions, sizes)``: int32 labels of the masks' shape (0 marks normal pixels, regions
        are numbered 1..R across the whole stack) and the int64 pixel count of every label.
    """
    # Connected-component labelling has no torch equivalent, so it always runs on CPU numpy.
    mask_np = masks.detach().cpu().numpy().astype(bool, copy=False)
    regions, num_regions = ndimage.label(mask_np, structure=_REGION_STRUCTURE)
    sizes = np.bincount(regions.reshape(-1), minlength=int(num_regions) + 1)
    return torch.from_numpy(regions), torch.from_numpy(sizes.astype(np.int64))


def _validate_maps(maps: Tensor, masks: Tensor, fpr_limit: float) -> None:
    if maps.ndim != 3:
        raise ValueError(f"`maps` must have shape (N, H, W), got {tuple(maps.shape)}.")
    if maps.shape != masks.shape:
        raise ValueError(
            f"`maps` and `masks` must have the same shape, got {tuple(maps.shape)} and "
            f"{tuple(masks.shape)}."
        )
    _check_binary(masks, "masks")
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"`fpr_limit` must lie in (0, 1], got {fpr_limit}.")


def _trapezoid_up_to(x: Tensor, y: Tensor, limit: float) -> Tensor:
    """Trapezoid area under the polyline ``(x, y)`` for ``x <= limit``.

    ``x`` must be non-decreasing and start at 0. When a segment crosses ``limit`` its end point is
    moved onto ``limit`` by linear interpolation; a curve ending before ``limit`` is integrated to
    its end.
    """
    last_inside = int((x <= limit).sum()) - 1
    if last_inside == x.numel() - 1:
        return torch.trapezoid(y, x)
    x0, x1 = x[last_inside], x[last_inside + 1]  # x0 <= limit < x1, so x1 - x0 > 0
    y0, y1 = y[last_inside], y[last_inside + 1]
    y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
    x_part = torch.cat([x[: last_inside + 1], x.new_full((1,), limit)])
    y_part = torch.cat([y[: last_inside + 1], y_limit.reshape(1)])
    return torch.trapezoid(y_part, x_part)


def _flatten_images(
    maps: Sequence[Tensor], masks: Sequence[Tensor], fpr_limit: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Flattened scores, region labels (numbered across images) and region sizes of a list of
    (H_i, W_i) maps and masks; regions are labelled within each image only."""
    _validate_image_lists(maps, masks, fpr_limit)
    parts, offset = [], 0
    for k in masks:
        labels, count = ndimage.label(
            k.detach().cpu().numpy().astype(bool, copy=False), structure=np.ones((3, 3), bool)
        )
        parts.append(np.where(labels > 0, labels + offset, 0).reshape(-1).astype(np.int32))
        offset += int(count)
    regions = np.concatenate(parts)
    sizes = np.bincount(regions, minlength=offset + 1).astype(np.int64)
    scores = torch.cat([_as_sortable(m.detach()).reshape(-1) for m in maps])
    return scores, torch.from_numpy(regions), torch.from_numpy(sizes)


def _validate_image_lists(
    maps: Sequence[Tensor], masks: Sequence[Tensor], fpr_limit: float
) -> None:
    if len(maps) != len(masks) or len(maps) == 0:
        raise ValueError(
            f"`maps` and `masks` must be non-empty lists of equal length, got {len(maps)} and "
            f"{len(masks)} images."
        )
    for i, (m, k) in enumerate(zip(maps, masks)):
        if m.ndim != 2 or m.shape != k.shape:
            raise ValueError(
                f"image {i}: map {tuple(m.shape)} and mask {tuple(k.shape)} must be equal (H, W)."
            )
        _check_binary(k, "masks")
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"`fpr_limit` must lie in (0, 1], got {fpr_limit}.")


def _aupro(
    maps: Tensor | Sequence[Tensor],
    masks: Tensor | Sequence[Tensor],
    fpr_limit: float,
    restrict: bool,
) -> Tensor:
    """AUPRO with an optional restriction of the sort to the scores that reach ``fpr_limit``."""
    if isinstance(maps, Tensor) and isinstance(masks, Tensor):
        _validate_maps(maps, masks, fpr_limit)
        scores = _as_sortable(maps.detach()).reshape(-1)
        regions, sizes = _label_regions(masks)
    else:
        scores, regions, sizes = _flatten_images(list(maps), list(masks), fpr_limit)
    device = scores.device
    regions = regions.reshape(-1).to(device)
    num_regions, num_neg = sizes.numel() - 1, int(sizes[0])
    if num_regions == 0 or num_neg == 0:
        return _nan(device)

    # Every region contributes 1/num_regions to PRO once fully detected, spread evenly over its
    # pixels; normal pixels (label 0) contribute nothing.
    pixel_overlap = 1.0 / (num_regions * sizes.to(device=device, dtype=torch.float64))
    pixel_overlap[0] = 0.0

    if restrict:
        # The curve only matters up to the first threshold whose FPR exceeds the limit. With
        # k = floor(limit * num_neg) + 1 > limit * num_neg, every threshold above the k-th largest
        # normal score v has FPR < limit, while v itself has FPR > limit. So the pixels with
        # score >= v produce exactly the needed prefix of the full curve, tie groups included.
        # Rounding in the product can only raise k, which keeps a superset and stays exact.
        k = min(num_neg, math.floor(fpr_limit * num_neg) + 1)
        threshold = torch.kthvalue(scores[regions == 0], num_neg - k + 1).values
        keep = scores >= threshold
        scores, regions = scores[keep], regions[keep]

    # A stable sort makes the candidate prefix order identical to the full-sort order (boolean
    # indexing preserves order), so both paths accumulate in the same order, bit for bit.
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_regions = regions[order]
    false_pos = torch.cumsum(sorted_regions == 0, dim=0, dtype=torch.float64)
    overlap = torch.cumsum(pixel_overlap[sorted_regions], dim=0)
    last = _last_of_ties(scores[order])
    zero = overlap.new_zeros(1)
    fpr = torch.cat([zero, false_pos[last] / num_neg])  # exact counts, one division
    pro = torch.cat([zero, overlap[last]])
    return _trapezoid_up_to(fpr, pro, fpr_limit) / fpr_limit


def aupro(
    maps: Tensor | Sequence[Tensor], masks: Tensor | Sequence[Tensor], fpr_limit: float = 0.3
) -> Tensor:
    """Exact normalised area under the per-region-overlap (PRO) curve up to ``fpr_limit``.

    Follows the global-threshold definition of the MVTec AD evaluation: ground-truth regions are
    the 8-connected components of each image's mask; every distinct score ``t`` is a threshold;
    ``FPR(t)`` is the fraction of normal pixels (over all images) with ``score >= t`` and
    ``PRO(t)`` the mean over all regions of the fraction of the region's pixels with
    ``score >= t``. The curve starts at (0, 0) and is integrated with the trapezoid rule up to
    ``fpr_limit`` (interpolating PRO linearly at the limit), then divided by ``fpr_limit``.

    No pixel is sorted but the anomalous ones: each normal pixel below the FPR limit adds its
    trapezoid, read off a lookup of the anomalous scores (see
    :mod:`anomalyvfm.metrics._pro_curve`). The value equals the full-sort computation
    (``_aupro``, kept as the slow path for tests) up to float64 summation order.

    Args:
        maps: Anomaly maps of shape (N, H, W), or a sequence of (H_i, W_i) maps of different
            sizes (e.g. each image at its original resolution); higher means more anomalous.
        masks: Binary ground-truth masks (bool or {0, 1}) shaped like ``maps``.
        fpr_limit: Upper integration limit of the FPR, in (0, 1].

    Returns:
        0-dim float64 tensor on the device of ``maps``; NaN if the masks contain no anomalous
        region or no normal pixel.

    Raises:
        ValueError: If the shapes differ or are not 3-D, the masks are not binary, or
            ``fpr_limit`` is outside (0, 1].
    """
    if isinstance(maps, Tensor) and isinstance(masks, Tensor):
        _validate_maps(maps, masks, fpr_limit)
        scores = _as_sortable(maps.detach()).reshape(-1)
        mask_list = list(masks.detach().cpu().numpy().astype(bool, copy=False))
    else:
        maps, masks = list(maps), list(masks)
        _validate_image_lists(maps, masks, fpr_limit)
        scores = torch.cat([_as_sortable(m.detach()).reshape(-1) for m in maps])
        mask_list = [m.detach().cpu().numpy().astype(bool, copy=False) for m in masks]
    anomalous, regions, sizes = label_anomalous(mask_list)
    return aupro_from_anomalous(scores.contiguous(), anomalous, regions, sizes, fpr_limit)
