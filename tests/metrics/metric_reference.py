"""Slow, obviously correct metric references written from the definitions (numpy / scipy).

Every exact metric loops over every distinct score as a threshold (``score >= t`` predicted
anomalous) and counts; regions are labelled per image with ``scipy.ndimage.label`` and
8-connectivity. The compatibility modes are transcribed from the descriptions of the code they
reproduce (ADEval's histogram, the ``cal_pro_score`` loop), as explicit loops. Inputs are lists
of numpy arrays (one per image) so images of different sizes are handled the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from torch import Tensor

EIGHT = np.ones((3, 3), dtype=bool)
Arrays = Sequence[np.ndarray]


def to_numpy_list(maps: Tensor | Sequence[Tensor]) -> list[np.ndarray]:
    """(N, H, W) tensor or list of (H, W) tensors -> list of numpy arrays (dtype kept)."""
    return [m.detach().cpu().numpy() for m in maps]


def _trapezoid(y: Sequence[float], x: Sequence[float]) -> float:
    return float(sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1)))


# --------------------------------------------------------------------------------------------
# Exact binary metrics
# --------------------------------------------------------------------------------------------


def ref_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of (positive, negative) pairs ranked correctly, a tie counting one half."""
    s, y = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel().astype(bool)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    wins = sum(float(np.sum(p > neg)) + 0.5 * float(np.sum(p == neg)) for p in pos)
    return wins / (pos.size * neg.size)


def _counts(scores: np.ndarray, labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(TP, FP, #positives) at every distinct threshold, highest first."""
    s, y = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel().astype(bool)
    rows = []
    for t in sorted(set(s.tolist()), reverse=True):
        predicted = s >= t
        rows.append((int(np.sum(predicted & y)), int(np.sum(predicted & ~y)), int(y.sum())))
    return rows


def ref_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """sum over thresholds of (recall gain) * precision."""
    rows = _counts(scores, labels)
    if not rows or rows[0][2] == 0:
        return math.nan
    ap, previous_recall = 0.0, 0.0
    for tp, fp, num_pos in rows:
        ap += (tp / num_pos - previous_recall) * tp / (tp + fp)
        previous_recall = tp / num_pos
    return ap


def ref_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """Largest 2PR / (P + R) over the thresholds."""
    rows = _counts(scores, labels)
    if not rows or rows[0][2] == 0:
        return math.nan
    best = 0.0
    for tp, fp, num_pos in rows:
        if tp > 0:
            precision, recall = tp / (tp + fp), tp / num_pos
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def pooled(maps: Arrays, masks: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """All pixels of all images as 1-D (scores float64, labels bool)."""
    scores = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    return scores, np.concatenate([np.asarray(k).ravel().astype(bool) for k in masks])


# --------------------------------------------------------------------------------------------
# AUPRO and AUPIMO
# --------------------------------------------------------------------------------------------


def regions_of(maps: Arrays, masks: Arrays, structure: np.ndarray = EIGHT) -> list[np.ndarray]:
    """Scores of the pixels of every connected region (8-connected by default), per image."""
    regions = []
    for image, mask in zip(maps, masks):
        labelled, count = ndimage.label(np.asarray(mask).astype(bool), structure=structure)
        regions += [np.asarray(image, np.float64)[labelled == r] for r in range(1, count + 1)]
    return regions


def area_between(points: list[tuple[float, float]], low: float, high: float) -> float:
    """Area under the polyline through ``points`` (x non-decreasing) for ``low <= x <= high``."""
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        a, b = max(x0, low), min(x1, high)
        if b <= a:
            continue
        slope = (y1 - y0) / (x1 - x0)
        ya, yb = y0 + slope * (a - x0), y0 + slope * (b - x0)
        area += (b - a) * (ya + yb) / 2
    return area


def ref_pro_curve(
    maps: Arrays, masks: Arrays, structure: np.ndarray = EIGHT
) -> list[tuple[float, float]] | None:
    """(FPR, PRO) at (0, 0) and at every distinct score, highest first; None if undefined.

    FPR over the normal pixels of all images; PRO the mean over all regions of the fraction of
    the region's pixels scoring ``>= t``.
    """
    regions = regions_of(maps, masks, structure)
    scores, labels = pooled(maps, masks)
    normal = scores[~labels]
    if not regions or normal.size == 0:
        return None
    curve = [(0.0, 0.0)]
    for t in np.unique(scores)[::-1]:
        pro = np.mean([np.mean(region >= t) for region in regions])
        curve.append((float(np.mean(normal >= t)), float(pro)))
    return curve


def ref_aupro(
    maps: Arrays,
    masks: Arrays,
    fpr_limit: float = 0.3,
    curve: list | None = None,
    structure: np.ndarray = EIGHT,
) -> float:
    """Area under the PRO curve up to ``fpr_limit`` (interpolated there), over ``fpr_limit``."""
    curve = curve if curve is not None else ref_pro_curve(maps, masks, structure)
    if curve is None:
        return math.nan
    return area_between(curve, 0.0, fpr_limit) / fpr_limit


def ref_pimo_curves(
    maps: Arrays, masks: Arrays, min_threshold: float | None = None
) -> tuple[list[float], list[list[float] | None]] | None:
    """Shared FPR and every anomalous image's TPR at every distinct score, highest first.

    The shared FPR is the mean over the normal images of each one's fraction of pixels scoring
    ``>= t``; the TPR of image i the fraction of its defect pixels scoring ``>= t`` (None for a
    normal image). None without a normal or an anomalous image. ``min_threshold`` skips the
    thresholds below it to save time; the function checks that they cannot matter.
    """
    anomalous = [bool(np.any(k)) for k in masks]
    normal = [np.asarray(m, np.float64) for m, a in zip(maps, anomalous) if not a]
    if not normal or not any(anomalous):
        return None
    thresholds = np.unique(np.concatenate([np.ravel(m) for m in maps]))[::-1]
    if min_threshold is not None:
        thresholds = thresholds[thresholds >= min_threshold]
    shared = [float(np.mean([np.mean(m >= t) for m in normal])) for t in thresholds]
    tprs: list[list[float] | None] = []
    for m, k, a in zip(maps, masks, anomalous):
        defect = np.asarray(m, np.float64)[np.asarray(k, bool)]
        tprs.append([float(np.mean(defect >= t)) for t in thresholds] if a else None)
    return shared, tprs


def ref_per_image_aupimo(
    maps: Arrays,
    masks: Arrays,
    fpr_bounds: tuple[float, float] = (1e-5, 1e-4),
    min_threshold: float | None = None,
    curves: tuple[list[float], list[list[float] | None]] | None = None,
) -> list[float]:
    """AUPIMO of every image from its definition (NaN for normal images).

    Points ``(log shFPR(t), TPR_i(t))`` of every distinct score ``t``, highest first, joined by
    straight lines and integrated between the log bounds, over ``log(U / L)``. NaN when the
    smallest positive shared FPR exceeds L (the curve below it is unknown).
    """
    low, high = fpr_bounds
    curves = curves if curves is not None else ref_pimo_curves(maps, masks, min_threshold)
    out = [math.nan] * len(maps)
    if curves is None:
        return out
    shared, tprs = curves
    assert max(shared) >= high, "min_threshold cuts off thresholds that matter"
    if min(f for f in shared if f > 0) > low:
        return out
    for i, tpr in enumerate(tprs):
        if tpr is not None:
            points = [(math.log(f), y) for f, y in zip(shared, tpr) if f > 0]
            out[i] = area_between(points, math.log(low), math.log(high)) / math.log(high / low)
    return out


# --------------------------------------------------------------------------------------------
# Compatibility modes, transcribed from their descriptions
# --------------------------------------------------------------------------------------------


def ref_adeval_curve(
    maps: Arrays, masks: Arrays, num_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """ADEval's histogram curve: (fpr, tpr, precision, pro) at its num_bins + 1 points.

    Float32 scores; bin of s = int(float32((s - min) * num_bins) / (max - min)), the maximum
    into the last bin; an extra "overflow" bin counts the scores >= max again. Point k predicts
    anomalous everything outside the underflow bin and inner bins 0..k-1. Anomalous pixels
    weigh 1 / region size for PRO.
    """
    scores = [np.asarray(m, np.float32).ravel() for m in maps]
    labels = [np.asarray(k).ravel().astype(bool) for k in masks]
    weights = []
    for mask in masks:
        labelled, _ = ndimage.label(np.asarray(mask).astype(bool), structure=EIGHT)
        sizes = np.bincount(labelled.ravel())
        weights.append(np.where(labelled.ravel() > 0, 1.0 / sizes[labelled.ravel()], 1.0))
    s, y, w = np.concatenate(scores), np.concatenate(labels), np.concatenate(weights)
    low, high = s.min(), s.max()
    if not low < high:
        return None
    inner = {"pos": np.zeros(num_bins), "neg": np.zeros(num_bins), "wpos": np.zeros(num_bins)}
    over = {"pos": 0.0, "neg": 0.0, "wpos": 0.0}
    for value, positive, weight in zip(s, y, w):
        # All operands float32, as in torch.histc's CUDA kernel.
        b = min(int((value - low) * np.float32(num_bins) / (high - low)), num_bins - 1)
        keys = ("pos", "wpos") if positive else ("neg",)
        for key in keys:
            amount = weight if key == "wpos" else 1.0
            inner[key][b] += amount
            if value >= high:
                over[key] += amount
    rates = {}
    for key in inner:
        total = inner[key].sum() + over[key]
        rates[key] = np.array([inner[key][k:].sum() + over[key] for k in range(num_bins + 1)])
        rates[key + "_total"] = total
    tp, fp = rates["pos"], rates["neg"]
    if rates["pos_total"] == 0 or rates["neg_total"] == 0:
        return None
    precision = np.array([t / (t + f) if t + f > 0 else 1.0 for t, f in zip(tp, fp)])
    return (
        fp / rates["neg_total"],
        tp / rates["pos_total"],
        precision,
        rates["wpos"] / rates["wpos_total"],
    )


def ref_adeval_metrics(
    maps: Arrays, masks: Arrays, num_bins: int = 200, limit: float = 0.3
) -> dict[str, float]:
    """ADEval's p_auroc, p_aupr, p_aupro (and F1 at the bins) from its curve."""
    curve = ref_adeval_curve(maps, masks, num_bins)
    if curve is None:
        return dict.fromkeys(("auroc", "ap", "f1", "aupro"), math.nan)
    fpr, tpr, precision, pro = (c[::-1] for c in curve)  # increasing FPR
    f1 = [2 * p * r / (p + r) if p + r > 0 else 0.0 for p, r in zip(precision, tpr)]
    lo = [i for i in range(len(fpr)) if fpr[i] <= limit]
    hi = [i for i in range(len(fpr)) if fpr[i] > limit]
    area_lo = _trapezoid([pro[i] for i in lo], [fpr[i] for i in lo])
    # The crossing trapezoid, split into a rectangle (height y1) and a triangle on top of it.
    x1, x2, y1, y2 = fpr[lo[-1]], fpr[hi[0]], pro[lo[-1]], pro[hi[0]]
    t = (limit - x1) / (x2 - x1)
    partial = y1 * (x2 - x1) * t + 0.5 * (y2 - y1) * (x2 - x1) * t * t
    return {
        "auroc": _trapezoid(tpr, fpr),
        "ap": _trapezoid(precision, tpr),
        "f1": max(f1),
        "aupro": (area_lo + partial) / limit,
    }


def ref_threshold_loop_aupro(
    maps: Arrays, masks: Arrays, fpr_limit: float = 0.3, num_thresholds: int = 200
) -> float:
    """The ``cal_pro_score`` loop: arange thresholds, ``score > th``, keep FPR < limit, rescale."""
    dtype = np.float32 if all(np.asarray(m).dtype == np.float32 for m in maps) else np.float64
    maps = [np.asarray(m).astype(dtype) for m in maps]
    low = min(m.min() for m in maps)
    high = max(m.max() for m in maps)
    labelled = [ndimage.label(np.asarray(k).astype(bool), structure=EIGHT) for k in masks]
    normal_total = sum(int(np.sum(~np.asarray(k).astype(bool))) for k in masks)
    pros, fprs = [], []
    for th in np.arange(low, high, (high - low) / num_thresholds):
        overlaps, false_positives = [], 0
        for image, mask, (regions, count) in zip(maps, masks, labelled):
            detected = image > th
            for r in range(1, count + 1):
                overlaps.append(detected[regions == r].sum() / (regions == r).sum())
            false_positives += int(np.sum(detected & ~np.asarray(mask).astype(bool)))
        pros.append(np.mean(overlaps))
        fprs.append(false_positives / normal_total)
    pro_kept = np.array(pros)[np.array(fprs) < fpr_limit]
    fpr_kept = np.array(fprs)[np.array(fprs) < fpr_limit]
    fpr_kept = (fpr_kept - fpr_kept.min()) / (fpr_kept.max() - fpr_kept.min())
    return abs(_trapezoid(list(pro_kept), list(fpr_kept)))


# --------------------------------------------------------------------------------------------
# Test data shared by the metric tests
# --------------------------------------------------------------------------------------------

MAP_KINDS = ("continuous", "continuous64", "ties", "two_levels", "constant", "perfect")


def adversarial_masks(sizes: Sequence[tuple[int, int]] | None = None) -> list[np.ndarray]:
    """Masks covering the hard cases: normal images, one-pixel regions, several regions per
    image, regions touching only diagonally (one 8-connected region), a blob.

    ``sizes`` gives each of the 6 images its own (H, W) (at least 20x20); default 24x24.
    """
    sizes = list(sizes) if sizes is not None else [(24, 24)] * 6
    masks = [np.zeros(s, dtype=bool) for s in sizes]
    masks[2][3:9, 4:12] = True  # a rectangle ...
    masks[2][-2, -2] = True  # ... and a one-pixel region
    masks[3][1:4, 1:4] = True  # several regions
    masks[3][10:12, 12:18] = True
    masks[3][14:16, 2:4] = True  # two blocks touching only at a corner: one region
    masks[3][16:19, 4:7] = True
    masks[4][12, 12] = True  # an image whose only region is one pixel
    blobs = ndimage.gaussian_filter(np.random.default_rng(7).normal(size=sizes[5]), 2.0)
    masks[5] = blobs > np.quantile(blobs, 0.85)
    return masks


def maps_for(masks: Sequence[np.ndarray], kind: str, seed: int = 0) -> list[np.ndarray]:
    """Anomaly maps of a given kind: anomalous pixels score 1.5 higher on average."""
    rng = np.random.default_rng(seed)
    noise = [rng.normal(size=k.shape) + 1.5 * k for k in masks]
    if kind == "continuous":
        return [n.astype(np.float32) for n in noise]
    if kind == "continuous64":
        return noise
    if kind == "ties":  # five levels: every threshold is a big tie group, across both classes
        return [np.digitize(n, [-0.5, 0.5, 1.0, 2.0]).astype(np.float32) for n in noise]
    if kind == "two_levels":
        return [(n > 1.0).astype(np.float64) for n in noise]
    if kind == "constant":
        return [np.full(k.shape, 0.25, dtype=np.float32) for k in masks]
    if kind == "perfect":  # every anomalous pixel above every normal one
        return [(2 * k + rng.uniform(0, 1, k.shape)).astype(np.float32) for k in masks]
    raise ValueError(kind)
