"""AUPRO as most zero-shot repositories compute it: a loop over 200 thresholds.

APRIL-GAN (VAND 2023) and AnomalyCLIP evaluate AUPRO with ``cal_pro_score(masks, amaps,
max_step=200, expect_fpr=0.3)`` (derived from CFlow-AD's evaluation): thresholds from an
``arange`` over the score range, PRO and FPR measured at each, the points below the FPR limit
kept and their FPRs rescaled to [0, 1]. The value is coarse and changes under monotone
transforms of the scores (the thresholds are spaced linearly in score, not in rank).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from anomalyvfm.metrics._inputs import Maps, as_image_list, check_limit, flatten, nan, region_ids

__all__ = ["threshold_loop_aupro"]


def threshold_loop_aupro(
    maps: Maps, masks: Maps, fpr_limit: float = 0.3, num_thresholds: int = 200
) -> Tensor:
    """AUPRO as the ``cal_pro_score`` loop of APRIL-GAN / AnomalyCLIP and most zero-shot code.

    Thresholds are ``numpy.arange(min, max, (max - min) / num_thresholds)`` in the maps' dtype
    (float32 when all maps are float32, else float64); at each, a pixel is anomalous if
    ``score > th`` (strict), PRO is the mean over all 8-connected regions of the detected
    fraction, FPR the fraction of normal pixels detected. Points with ``FPR < fpr_limit`` are
    kept, their FPRs rescaled to [0, 1] by their own min and max, and the trapezoid area is
    returned (so it is normalised by the kept FPR range rather than by ``fpr_limit``). Computed
    by counting, not by looping, with the same result.

    Args:
        maps: anomaly maps, ``(N, H, W)`` or a sequence of ``(H_i, W_i)`` tensors.
        masks: binary masks of the same structure.
        fpr_limit: the ``expect_fpr`` cut, in (0, 1].
        num_thresholds: ``max_step``, the number of threshold steps.

    Returns:
        0-dim float64; NaN for constant maps, no region or normal pixel, or fewer than two
        kept points with distinct FPR (where the loop fails or divides by zero).
    """
    check_limit(fpr_limit)
    images, gts = as_image_list(maps, masks)
    scores, labels = flatten(images, gts)
    device = scores.device
    if scores.numel() == 0 or not bool(labels.any()) or bool(labels.all()):
        return nan(device)
    # numpy scalars of the maps' dtype, so that `arange` rounds its steps as those loops do.
    np_dtype = np.float64 if scores.dtype == torch.float64 else np.float32
    low, high = np_dtype(scores.min().item()), np_dtype(scores.max().item())
    if not low < high:
        return nan(device)
    thresholds = torch.from_numpy(np.arange(low, high, (high - low) / num_thresholds)).to(device)
    steps = thresholds.numel()
    # A score s is detected at the thresholds below it: indices j < (number of thresholds < s).
    above = torch.searchsorted(thresholds.to(scores.dtype), scores, right=False)
    false_pos = _count_above(above[~labels], steps)
    ids, sizes = region_ids(gts)
    num_regions = sizes.numel()
    per_region = torch.bincount(
        ids * (steps + 1) + above[labels], minlength=num_regions * (steps + 1)
    )
    detected = _suffix_sum(per_region.reshape(num_regions, steps + 1).to(torch.float64))
    pro = (detected[:, 1:] / sizes.to(torch.float64)[:, None]).mean(0)
    fpr = false_pos / float((~labels).sum())
    keep = fpr < fpr_limit
    fpr, pro = fpr[keep], pro[keep]
    if fpr.numel() < 2 or not bool(fpr.max() > fpr.min()):
        return nan(device)
    fpr = (fpr - fpr.min()) / (fpr.max() - fpr.min())
    # FPR falls as the threshold rises; sklearn's `auc` flips the sign for a decreasing x.
    return -torch.trapezoid(pro, fpr)


def _count_above(above: Tensor, steps: int) -> Tensor:
    """How many of the scores are detected at each of the ``steps`` thresholds (float64)."""
    return _suffix_sum(torch.bincount(above, minlength=steps + 1).to(torch.float64))[..., 1:]


def _suffix_sum(counts: Tensor) -> Tensor:
    """``out[..., j] = counts[..., j:].sum(-1)``: items with index >= j."""
    return counts.flip(-1).cumsum(-1).flip(-1)
