"""Decision thresholds of a detector from calibration scores.

An image (or pixel) is anomalous when its score is strictly above the threshold. Three rules:

* ``fpr`` (normal images only): the threshold that about ``target_fpr`` of the normal scores
  exceed (never more);
* ``f1`` (labelled images): the threshold of the largest F1 score on the calibration set;
* ``miss_rate`` (labelled images): the highest threshold that misses at most ``max_miss_rate``
  of the anomalous ones.

Image scores are few and kept whole. Pixel scores are too many to keep (megapixels per image), so
they are counted in a histogram of :data:`PIXEL_BINS` equal bins over [0, 1]; pixel thresholds
are bin edges, exact to 1/PIXEL_BINS.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Rule = Literal["fpr", "f1", "miss_rate"]
RULES: tuple[str, ...] = ("fpr", "f1", "miss_rate")
PIXEL_BINS = 1 << 16
# The threshold of an uncalibrated detector (image and pixel scores are probabilities).
DEFAULT_THRESHOLD = 0.5


@dataclass
class Calibration:
    """Thresholds and how they were chosen (stored in a calibrated checkpoint).

    Attributes:
        image_threshold: image score above which an image is anomalous.
        pixel_threshold: pixel score above which a pixel is anomalous.
        rule: ``fpr``, ``f1`` or ``miss_rate``.
        target_fpr: the FPR asked for (``fpr`` rule; also the pixel rule without masks).
        max_miss_rate: the miss rate allowed (``miss_rate`` rule).
        num_images: calibration images; num_normal and num_anomalous of them by label.
        num_pixels: calibration pixels counted for the pixel threshold.
    """

    image_threshold: float
    pixel_threshold: float
    rule: str
    target_fpr: float | None = None
    max_miss_rate: float | None = None
    num_images: int = 0
    num_normal: int = 0
    num_anomalous: int = 0
    num_pixels: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        return cls(**values)


class PixelHistogram:
    """Counts of pixel scores in :data:`PIXEL_BINS` bins over [0, 1], normal and anomalous."""

    def __init__(self) -> None:
        self.normal = np.zeros(PIXEL_BINS, np.int64)
        self.anomalous = np.zeros(PIXEL_BINS, np.int64)

    def add(self, scores: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Adds the pixels of one map; ``mask`` (True = anomalous) splits them, None: normal."""
        bins = np.minimum((np.clip(scores, 0.0, 1.0) * PIXEL_BINS).astype(np.int64), PIXEL_BINS - 1)
        if mask is None:
            self.normal += np.bincount(bins.ravel(), minlength=PIXEL_BINS)
            return
        inside = np.asarray(mask, bool)
        self.normal += np.bincount(bins[~inside], minlength=PIXEL_BINS)
        self.anomalous += np.bincount(bins[inside], minlength=PIXEL_BINS)

    @property
    def count(self) -> int:
        return int(self.normal.sum() + self.anomalous.sum())

    def counts_above(self) -> tuple[np.ndarray, np.ndarray]:
        """Per edge b/PIXEL_BINS (b = 0..PIXEL_BINS): normal and anomalous pixels in bins >= b."""
        zero = np.zeros(1, np.int64)
        above_n = np.concatenate([np.cumsum(self.normal[::-1])[::-1], zero])
        above_a = np.concatenate([np.cumsum(self.anomalous[::-1])[::-1], zero])
        return above_n, above_a

    def fpr_threshold(self, target_fpr: float) -> float:
        """The lowest bin edge above which at most ``target_fpr`` of the normal pixels lie."""
        above_n, _ = self.counts_above()
        total = int(above_n[0])
        if total == 0:
            raise ValueError("no normal pixels to calibrate the pixel threshold on")
        allowed = math.floor(target_fpr * total + 1e-9)
        edge = int(np.argmax(above_n <= allowed))
        return edge / PIXEL_BINS

    def f1_threshold(self) -> float:
        """The bin edge of the largest pixel F1 (ties: the lowest edge)."""
        above_n, above_a = self.counts_above()
        positives = int(above_a[0])
        if positives == 0:
            raise ValueError("the masks mark no anomalous pixel: the pixel F1 rule needs some")
        f1 = 2 * above_a / np.maximum(positives + above_a + above_n, 1)
        return int(np.argmax(f1)) / PIXEL_BINS

    def miss_rate_threshold(self, max_miss_rate: float) -> float:
        """The highest bin edge that misses at most ``max_miss_rate`` of anomalous pixels."""
        _, above_a = self.counts_above()
        positives = int(above_a[0])
        if positives == 0:
            raise ValueError("the masks mark no anomalous pixel: the miss-rate rule needs some")
        caught = above_a >= positives - math.floor(max_miss_rate * positives + 1e-9)
        return int(np.nonzero(caught)[0].max()) / PIXEL_BINS


def fpr_threshold(normal_scores: np.ndarray, target_fpr: float) -> float:
    """A threshold that at most ``floor(target_fpr * n)`` of the ``n`` normal scores exceed.

    Half-way between the highest score kept below and the lowest one allowed above, so a score
    equal to a calibration score is decided the way that score was.
    """
    scores = np.sort(np.asarray(normal_scores, np.float64))
    if scores.size == 0:
        raise ValueError("no normal image to calibrate on")
    allowed = math.floor(target_fpr * scores.size + 1e-9)
    kept = scores[scores.size - 1 - allowed]
    if allowed == 0:
        return float(kept)
    return float(0.5 * (kept + scores[scores.size - allowed]))


def f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold of the largest F1 of ``score > threshold`` against ``labels`` (1 anomalous).

    Candidates lie half-way between consecutive distinct scores (and just below the lowest);
    ties keep the highest threshold.
    """
    values = np.asarray(scores, np.float64)
    truth = np.asarray(labels).astype(bool)
    if not truth.any():
        raise ValueError("the F1 rule needs anomalous images among the labels")
    distinct = np.unique(values)
    candidates = np.concatenate(
        [[np.nextafter(distinct[0], -np.inf)], 0.5 * (distinct[1:] + distinct[:-1])]
    )
    best, best_f1 = float(candidates[0]), -1.0
    for t in candidates[::-1]:
        predicted = values > t
        tp = int((predicted & truth).sum())
        f1 = 2 * tp / (int(predicted.sum()) + int(truth.sum()))
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


def miss_rate_threshold(scores: np.ndarray, labels: np.ndarray, max_miss_rate: float) -> float:
    """The highest threshold at which at most ``max_miss_rate`` of the anomalous scores are not
    above it (half-way to the next lower score)."""
    values = np.asarray(scores, np.float64)
    truth = np.asarray(labels).astype(bool)
    anomalous = np.sort(values[truth])
    if anomalous.size == 0:
        raise ValueError("the miss-rate rule needs anomalous images among the labels")
    allowed = math.floor(max_miss_rate * anomalous.size + 1e-9)
    if allowed >= anomalous.size:
        return float(values.max())
    first_caught = anomalous[allowed]
    below = values[values < first_caught]
    if below.size == 0:
        return float(np.nextafter(first_caught, -np.inf))
    return float(0.5 * (first_caught + below.max()))


def check_rate(option: str, value: float) -> float:
    """``value`` when it is a fraction in [0, 1); else a ValueError naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{option} must be a fraction in [0, 1), e.g. 0.01; got {value!r}")
    return float(value)
