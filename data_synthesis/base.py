"""Shared types and small pixel helpers for the anomaly generators.

Convention: an image is float32 (H, W, 3) in [0, 1]; a mask is float32 (H, W) with values in
{0, 1}. Generators are pure functions of (image, rng): same inputs and same seed give
byte-identical outputs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Anomaly:
    """One synthesised anomaly.

    Attributes:
        image: float32 (H, W, 3) in [0, 1]; equal to the input outside ``mask``.
        mask: float32 (H, W) in {0, 1}; 1 where the generator changed the image.
        params: JSON-serialisable record of the random choices made (opacity, box, file name...).
    """

    image: np.ndarray
    mask: np.ndarray
    params: dict[str, Any]


@runtime_checkable
class AnomalyGenerator(Protocol):
    """Anything that turns a normal image into an :class:`Anomaly` using only ``rng``."""

    name: str

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> Anomaly:
        """Synthesise an anomaly on ``image``.

        Args:
            image: float32 (H, W, 3) in [0, 1]; never modified in place.
            rng: The only source of randomness.

        Returns:
            The anomalous image, its mask and the parameters drawn.
        """
        ...


class AnomalyGeneratorBase(abc.ABC):
    """Base class of the bundled generators.

    Subclassing it (rather than only matching :class:`AnomalyGenerator`) lets YAML configs name a
    generator by its short class name (``class_path: CutPasteGenerator``).
    """

    name: str = "generator"

    @abc.abstractmethod
    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> Anomaly:
        """Synthesise an anomaly on ``image`` using only ``rng`` (see AnomalyGenerator)."""


def as_image(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) image and return it as float32 (no copy when it already is).

    Raises:
        ValueError: If the shape is not (H, W, 3) or the image is empty.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


_LUMA = (0.299, 0.587, 0.114)
# Colour-faithful anomalies: a normal image counts as grayscale when the 99th percentile of its
# pixels' channel spread (max - min of R, G, B) is at most this (~5/255 of 8-bit levels).
GRAY_SPREAD = 0.02
# The spread is measured on every 4th pixel of every 4th row: cheap at 768 px, and enough.
_GRAY_STRIDE = 4


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of (..., 3) pixels, shape (...)."""
    # Elementwise instead of `@`: BLAS kernels may pick thread- or CPU-dependent summation
    # orders, which would break byte-identical outputs across machines.
    return rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1] + rgb[..., 2] * _LUMA[2]


def is_grayscale(image: np.ndarray, spread: float = GRAY_SPREAD) -> bool:
    """True when ``image`` (H, W, 3, float in [0, 1]) is grayscale or nearly so.

    The rule: the 99th percentile of the per-pixel channel spread ``max(R, G, B) - min(R, G, B)``,
    measured on a 4-pixel grid, is at most ``spread``. The percentile (not the maximum) lets a
    few stray JPEG chroma pixels pass.
    """
    grid = image[::_GRAY_STRIDE, ::_GRAY_STRIDE]
    per_pixel = grid.max(axis=2) - grid.min(axis=2)
    return bool(np.percentile(per_pixel, 99) <= spread)


def to_luminance(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) pixels with every channel set to their Rec. 601 luma (same dtype)."""
    gray = _luma(rgb.astype(np.float32, copy=False))
    if rgb.dtype == np.uint8:
        gray = np.rint(gray)
    return np.repeat(gray[..., None], 3, axis=-1).astype(rgb.dtype)
