"""Exact AUPRO with one sort of the normal pixels below the FPR limit and nothing else.

The PRO curve is a polyline through one point per distinct threshold. Its FPR only moves at the
scores of normal pixels, so every segment in which only anomalous pixels cross the threshold is
vertical and adds no area. Writing the trapezoid rule over the remaining segments pixel by pixel,
a normal pixel with score ``s`` contributes

    (1 / N) * (PRO_strict(s) + PRO(s)) / 2,

where ``N`` is the number of normal pixels, ``PRO(s)`` the overlap of the anomalous pixels scoring
``>= s`` and ``PRO_strict(s)`` of those scoring ``> s`` (a group of ``m`` tied normal pixels adds
``m`` times that: its trapezoid). Summed over the normal pixels above ``v`` (the normal score at
which the FPR first exceeds the limit) and swapped around, this is

    sum_a w_a * (#{normal n: v < s_n <= s_a} + #{normal n: v < s_n < s_a}) / (2 N),

one binary search per anomalous pixel (weight ``w_a = 1 / (#regions * |region of a|)``) in the
sorted normal scores above ``v``. ``v``'s tie group adds the segment that crosses the limit,
interpolated linearly there exactly as the trapezoid rule on the full curve does. The value equals
the full-sort computation up to float64 summation order (~1e-15).

Cost: a selection (``v``) over the normal scores and a sort of the ``limit * N`` normal scores
above it; anomalous pixels (a few % of all) are never sorted. On CPU numpy's vectorised
``partition``/``sort`` do this several times faster than torch's; on an accelerator the same steps
run in torch. Working memory beyond the stored maps: one copy of the normal scores (4 bytes per
pixel for float32 maps) plus O(#anomalous pixels); masks are labelled region by region inside
each image's bounding box of anomalous pixels, never as a full-size label image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def aupro_from_anomalous(
    scores: Tensor, anomalous: Tensor, regions: Tensor, sizes: Tensor, fpr_limit: float
) -> Tensor:
    """Normalised AUPRO up to ``fpr_limit``.

    Args:
        scores: 1-D float32/float64 scores of every pixel.
        anomalous: 1-D int64 positions (into ``scores``) of the anomalous pixels.
        regions: 1-D region number (1..R) of each anomalous pixel.
        sizes: int64 (R + 1,): ``sizes[0]`` the number of normal pixels, ``sizes[r]`` region r's.
        fpr_limit: integration limit in (0, 1].

    Returns:
        0-dim float64 tensor on the device of ``scores``; NaN without regions or normal pixels.
    """
    device = scores.device
    num_regions, num_neg = sizes.numel() - 1, int(sizes[0])
    if num_regions == 0 or num_neg == 0:
        return torch.tensor(float("nan"), dtype=torch.float64, device=device)
    # k-th largest normal score v with k = floor(limit * N) + 1 > limit * N: every threshold above
    # v has FPR <= limit, v itself has FPR > limit (unless v is the smallest normal score).
    k = min(num_neg, math.floor(fpr_limit * num_neg) + 1)
    normal_mask = torch.ones(scores.numel(), dtype=torch.bool, device=device)
    normal_mask[anomalous.to(device)] = False
    if device.type == "cpu":
        above, v, num_at_v = _top_normals_numpy(scores.numpy()[normal_mask.numpy()], k)
    else:
        above, v, num_at_v = _top_normals_torch(scores[normal_mask], k)
    del normal_mask
    a_scores = scores[anomalous.to(device)]
    weight = 1.0 / (num_regions * sizes.to(device=device, dtype=torch.float64))
    a_weight = weight[regions.to(device).long()]
    # Normals above v that each anomalous pixel outscores (<=) and strictly outscores (<).
    le = torch.searchsorted(above, a_scores.to(above.dtype), right=True)
    lt = torch.searchsorted(above, a_scores.to(above.dtype), right=False)
    area = torch.sum(a_weight * (le + lt).to(torch.float64)) / (2.0 * num_neg)

    # v's tie group: the segment from (f_prev, PRO_strict(v)) to (f_v, PRO(v)), cut at the limit.
    pro_v = torch.sum(a_weight[a_scores >= v])
    strict_v = torch.sum(a_weight[a_scores > v])
    f_prev = above.numel() / num_neg
    f_v = (above.numel() + num_at_v) / num_neg
    if f_v <= fpr_limit:
        area = area + (f_v - f_prev) * (strict_v + pro_v) / 2.0
    else:
        at_limit = strict_v + (pro_v - strict_v) * ((fpr_limit - f_prev) / (f_v - f_prev))
        area = area + (fpr_limit - f_prev) * (strict_v + at_limit) / 2.0
    return area / fpr_limit


def _top_normals_numpy(normal: np.ndarray, k: int) -> tuple[Tensor, Tensor, int]:
    """(sorted normal scores > v, v, #normal scores == v) for the k-th largest normal score v."""
    n = normal.size
    normal.partition(n - k)  # our own copy (boolean indexing copied it), so in place is safe
    v = normal[n - k]
    tail = normal[n - k :]
    tail.sort()  # ascending, tail[0] == v
    first_above = int(np.searchsorted(tail, v, side="right"))
    num_at_v = first_above + int(np.count_nonzero(normal[: n - k] == v))
    return torch.from_numpy(tail[first_above:]), torch.from_numpy(np.asarray(v)), num_at_v


def _top_normals_torch(normal: Tensor, k: int) -> tuple[Tensor, Tensor, int]:
    """Accelerator version of :func:`_top_normals_numpy`."""
    v = torch.kthvalue(normal, normal.numel() - k + 1).values
    above = torch.sort(normal[normal > v]).values
    return above, v, int((normal == v).sum())


def label_anomalous(masks: list[np.ndarray]) -> tuple[Tensor, Tensor, Tensor]:
    """8-connected regions of each (H_i, W_i) bool mask, numbered across images.

    Each image is labelled inside the bounding box of its anomalous pixels only, so the cost
    follows the defect area rather than the image area.

    Returns:
        ``(anomalous, regions, sizes)``: int64 positions of the anomalous pixels in the
        concatenation of the flattened masks, their region numbers (1..R), and the pixel count of
        every label (``sizes[0]`` = normal pixels).
    """
    structure = np.ones((3, 3), dtype=bool)
    positions, labels = [], []
    offset, num_regions, total = 0, 0, 0
    from scipy import ndimage

    for mask in masks:
        height, width = mask.shape
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size:
            top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            box, count = ndimage.label(mask[top:bottom, left:right], structure=structure)
            ys, xs = np.nonzero(box)
            positions.append(offset + (ys + top) * width + (xs + left))
            labels.append(box[ys, xs] + num_regions)
            num_regions += int(count)
        offset += height * width
        total += height * width
    anomalous = np.concatenate(positions) if positions else np.zeros(0, np.int64)
    regions = np.concatenate(labels) if labels else np.zeros(0, np.int32)
    sizes = np.bincount(regions, minlength=num_regions + 1).astype(np.int64)
    sizes[0] = total - anomalous.size
    return (
        torch.from_numpy(anomalous.astype(np.int64)),
        torch.from_numpy(regions),
        torch.from_numpy(sizes),
    )
