"""Shared types and small pixel helpers for the anomaly generators.

Convention: an image is float32 (H, W, 3) in [0, 1]; a mask is float32 (H, W) with values in
{0, 1}. Generators are pure functions of (image, rng): same inputs and same seed give
byte-identical outputs.
"""

from __future__ import annotations

import abc
import math
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


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of (..., 3) pixels, shape (...)."""
    # Elementwise instead of `@`: BLAS kernels may pick thread- or CPU-dependent summation
    # orders, which would break byte-identical outputs across machines.
    return rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1] + rgb[..., 2] * _LUMA[2]


def mix_channels(rgb: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Apply a 3x3 colour matrix: ``out[..., i] = sum_j mat[i, j] * rgb[..., j]``.

    Elementwise for the same determinism reason as :func:`_luma`.
    """
    m = np.asarray(mat, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.stack([m[i, 0] * r + m[i, 1] * g + m[i, 2] * b for i in range(3)], axis=-1)


def rotate_hue(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate hue by ``degrees`` with a luma-preserving rotation in YIQ space.

    A 3x3 matrix is far cheaper than an HSV round trip and close enough for augmentation.
    """
    theta = math.radians(degrees)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    to_yiq = np.array(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=np.float64,
    )
    rot = np.array([[1.0, 0.0, 0.0], [0.0, cos_t, -sin_t], [0.0, sin_t, cos_t]])
    mat = np.linalg.inv(to_yiq) @ rot @ to_yiq
    return mix_channels(rgb, mat)


def color_jitter(
    rgb: np.ndarray, rng: np.random.Generator, strength: float
) -> tuple[np.ndarray, dict[str, float]]:
    """Random brightness, contrast, saturation and hue change, torchvision-style.

    Args:
        rgb: float32 (..., 3) in [0, 1].
        rng: Source of the four factors.
        strength: Brightness/contrast/saturation factors are drawn from
            ``[1 - strength, 1 + strength]``; hue shifts from ``+-180 * strength`` degrees.

    Returns:
        The jittered pixels clipped to [0, 1] and the factors drawn.
    """
    b, c, s = (float(x) for x in rng.uniform(1.0 - strength, 1.0 + strength, size=3))
    hue = float(rng.uniform(-180.0 * strength, 180.0 * strength))
    out = rgb * np.float32(b)
    luma = _luma(out)
    mean = np.float32(luma.mean()) if luma.size else np.float32(0.0)
    out = (out - mean) * np.float32(c) + mean
    gray = _luma(out)[..., None]
    out = gray + (out - gray) * np.float32(s)
    if hue != 0.0:
        out = rotate_hue(out, hue)
    params = {"brightness": b, "contrast": c, "saturation": s, "hue_degrees": hue}
    return np.clip(out, 0.0, 1.0).astype(np.float32), params
