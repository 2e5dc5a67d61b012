"""Pixel metrics as the AnomalyVFM reference evaluation computes them: 200-bin histograms.

The authors' ``test.py`` (``test_category``) evaluates each category with ADEval 1.1.0's
``EvalAccumulatorCuda(score_min, score_max, map_min, map_max, skip_pixel_aupro=False,
nstrips=200)`` and takes pixel AUROC (``p_auroc``), AP (``p_aupr``) and AUPRO (``p_aupro``) from
it; its image metrics and pixel F1-max are exact (scikit-learn). ADEval bins the scores of all
maps of a category between their minimum and maximum into 200 equal bins, counts normal and
anomalous pixels (and, for PRO, anomalous pixels weighted by 1 / region size) per bin, and reads
201 operating points off the cumulative counts. The functions below reproduce that, quirks
included (see ``_binned_curve``); the reference feeds them 96x96 maps after a 5x5 mean filter.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anomalyvfm.metrics._inputs import (
    Maps,
    as_image_list,
    check_limit,
    device_of,
    flatten,
    nan,
    region_ids,
)

__all__ = ["binned_aupro", "binned_auroc", "binned_average_precision"]


def _binned_curve(maps: Maps, masks: Maps, num_bins: int, weighted: bool) -> Tensor | None:
    """The reference's operating points, as rows ``(fpr, tpr, precision, pro)``.

    Scores are cast to float32 (the reference evaluates ``preds.float()``); the bins split
    ``[min, max]`` of all scores into ``num_bins`` equal parts, a score going to bin
    ``int((s - min) * num_bins / (max - min))`` computed in float32 as ``torch.histc`` does on
    CUDA, the maximum into the last bin. Point ``k = 0..num_bins`` predicts "anomalous" for every
    score in bin ``k`` or above; the last point keeps only an extra overflow bin of the scores
    ``>= max``. ADEval fills that overflow bin *in addition* to the last bin, so pixels at the
    maximum are counted twice in every total: reproduced. Columns are in increasing FPR order.
    PRO weights every anomalous pixel by 1 / (size of its 8-connected region), so its weighted
    TPR is the mean overlap over regions. None when all scores are equal (ADEval asserts).
    """
    images, gts = as_image_list(maps, masks)
    scores, labels = flatten(images, gts)
    scores = scores.to(torch.float32)
    if num_bins < 1:
        raise ValueError(f"`num_bins` must be at least 1, got {num_bins}.")
    if scores.numel() == 0 or not bool(scores.min() < scores.max()):
        return None
    low, high = scores.min(), scores.max()
    bins = ((scores - low) * num_bins / (high - low)).long().clamp_(max=num_bins - 1)
    passes: list[tuple[Tensor, Tensor | None]] = [(labels, None), (~labels, None)]
    if weighted:
        ids, sizes = region_ids(gts)  # anomalous pixels in the order of scores[labels]
        passes.append((labels, 1.0 / sizes.to(torch.float64)[ids]))
    rows = []
    for select, w in passes:
        hist = torch.bincount(bins[select], weights=w, minlength=num_bins).to(torch.float64)
        at_max = scores[select] >= high
        overflow = (w[at_max].sum() if w is not None else at_max.sum()).reshape(1)
        stat = torch.cat([hist.new_zeros(1), hist, overflow.to(torch.float64)])
        cumulative = torch.cumsum(stat, 0)
        # Above point k: everything outside bins 0..k-1, i.e. total minus the cumulative count.
        rows.append(cumulative[-1] - cumulative[:-1])
    tp, fp = rows[0], rows[1]
    weighted_tp = rows[2] if weighted else tp
    num_pos, num_neg = tp[0], fp[0]
    if num_pos == 0 or num_neg == 0:
        return None
    predicted = tp + fp
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.ones_like(tp))
    curve = torch.stack([fp / num_neg, tp / num_pos, precision, weighted_tp / weighted_tp[0]])
    return curve.flip(1)


def binned_auroc(maps: Maps, masks: Maps, num_bins: int = 200) -> Tensor:
    """Pixel AUROC as the AnomalyVFM reference computes it (ADEval, ``nstrips=200``).

    Trapezoid area under the ``num_bins + 1`` histogram operating points of
    ``_binned_curve``; the curve starts at the top bin's point, not at (0, 0).

    Args:
        maps: anomaly maps, ``(N, H, W)`` or a sequence of ``(H_i, W_i)`` tensors.
        masks: binary masks of the same structure.
        num_bins: histogram bins over ``[min, max]`` of the scores.

    Returns:
        0-dim float64; NaN for constant maps or a missing class.
    """
    curve = _binned_curve(maps, masks, num_bins, weighted=False)
    if curve is None:
        return nan(device_of(maps))
    return torch.trapezoid(curve[1], curve[0])


def binned_average_precision(maps: Maps, masks: Maps, num_bins: int = 200) -> Tensor:
    """Pixel AP as the AnomalyVFM reference computes it: trapezoid area under the binned PR curve.

    Precision is 1 where a bin predicts nothing (as ADEval sets it); the curve starts at the top
    bin's recall, not at 0. Arguments and return as :func:`binned_auroc`.
    """
    curve = _binned_curve(maps, masks, num_bins, weighted=False)
    if curve is None:
        return nan(device_of(maps))
    return torch.trapezoid(curve[2], curve[1])


def binned_aupro(maps: Maps, masks: Maps, fpr_limit: float = 0.3, num_bins: int = 200) -> Tensor:
    """AUPRO as the AnomalyVFM reference computes it (ADEval's ``p_aupro``, limit 0.3).

    The region-weighted histogram of ``_binned_curve`` gives PRO at the ``num_bins + 1`` bin
    thresholds; the trapezoid area from the top bin's point up to ``fpr_limit`` (the crossing
    segment cut by linear interpolation, which ADEval's rectangle-plus-triangle split equals) is
    divided by ``fpr_limit``. Where PRO is 0 on both ends of the crossing segment ADEval returns
    NaN (0/0); this returns the limit value instead.

    Args:
        maps: anomaly maps, ``(N, H, W)`` or a sequence of ``(H_i, W_i)`` tensors.
        masks: binary masks of the same structure.
        fpr_limit: integration limit, in (0, 1].
        num_bins: histogram bins over ``[min, max]`` of the scores.

    Returns:
        0-dim float64; NaN for constant maps, no region, no normal pixel, or when even the top
        bin exceeds ``fpr_limit``.
    """
    check_limit(fpr_limit)
    curve = _binned_curve(maps, masks, num_bins, weighted=True)
    if curve is None:
        return nan(device_of(maps))
    fpr, pro = curve[0], curve[3]
    inside = int((fpr <= fpr_limit).sum())
    if inside == 0:
        return nan(fpr.device)
    area = torch.trapezoid(pro[:inside], fpr[:inside])
    if inside < fpr.numel():
        x0, x1, y0, y1 = fpr[inside - 1], fpr[inside], pro[inside - 1], pro[inside]
        y_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        area = area + (fpr_limit - x0) * (y0 + y_limit) / 2
    return area / fpr_limit
