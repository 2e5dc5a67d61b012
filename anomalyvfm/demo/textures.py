"""Procedural textures for the demo data set.

Every generator takes an explicit ``numpy.random.Generator`` and an image size and returns an
``(size, size, 3)`` float64 RGB array in ``[0, 1]``, so one seed reproduces one texture exactly.
The training families (:data:`TRAIN_TEXTURES`) and the held-out family (:data:`HELDOUT_TEXTURES`)
are disjoint on purpose: the zero-shot test set must show textures the detector never saw.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

FloatArray = npt.NDArray[np.float64]
TextureFn = Callable[[np.random.Generator, int], FloatArray]


def value_noise(rng: np.random.Generator, size: int, cells: int) -> FloatArray:
    """Smooth value noise: random lattice values blended with a smoothstep.

    Args:
        rng: Source of randomness.
        size: Output side length in pixels.
        cells: Number of lattice cells along each side (feature size is ``size / cells``).

    Returns:
        A ``(size, size)`` field in ``[0, 1]``.
    """
    grid = rng.random((cells + 1, cells + 1))
    pos = np.arange(size) * (cells / size)
    idx = pos.astype(np.int64)
    frac = pos - idx
    # Smoothstep hides the lattice; plain bilinear interpolation shows visible creases.
    t = frac * frac * (3.0 - 2.0 * frac)
    ty, tx = t[:, None], t[None, :]
    top = grid[np.ix_(idx, idx)] * (1 - tx) + grid[np.ix_(idx, idx + 1)] * tx
    bottom = grid[np.ix_(idx + 1, idx)] * (1 - tx) + grid[np.ix_(idx + 1, idx + 1)] * tx
    return np.asarray(top * (1 - ty) + bottom * ty, dtype=np.float64)


def fbm(
    rng: np.random.Generator, size: int, cells: int, octaves: int = 4, gain: float = 0.5
) -> FloatArray:
    """Fractal (multi-octave) value noise normalised to ``[0, 1]``.

    Args:
        rng: Source of randomness.
        size: Output side length in pixels.
        cells: Lattice cells of the coarsest octave.
        octaves: Number of octaves; each doubles the frequency.
        gain: Amplitude factor between consecutive octaves.

    Returns:
        A ``(size, size)`` field in ``[0, 1]``.
    """
    total = np.zeros((size, size))
    amplitude = 1.0
    for octave in range(octaves):
        total += amplitude * value_noise(rng, size, min(cells * 2**octave, size))
        amplitude *= gain
    return _normalise(total)


def _normalise(field: FloatArray) -> FloatArray:
    low, high = float(field.min()), float(field.max())
    return (field - low) / max(high - low, 1e-12)


def _lerp_colors(field: FloatArray, dark: FloatArray, light: FloatArray) -> FloatArray:
    """Map a scalar field in [0, 1] onto the colour ramp ``dark -> light``."""
    rgb = dark[None, None, :] + field[..., None] * (light - dark)[None, None, :]
    return np.clip(rgb, 0.0, 1.0)


def _coords(size: int) -> tuple[FloatArray, FloatArray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return yy, xx


def clouds_texture(rng: np.random.Generator, size: int) -> FloatArray:
    """Perlin-like cloudy fBm noise between two random colours."""
    field = fbm(rng, size, int(rng.integers(2, 6)), octaves=5, gain=float(rng.uniform(0.4, 0.6)))
    return _lerp_colors(field, rng.uniform(0.0, 0.5, 3), rng.uniform(0.5, 1.0, 3))


def wood_texture(rng: np.random.Generator, size: int) -> FloatArray:
    """Wood grain: noise-warped growth rings whose centre lies far outside the image."""
    yy, xx = _coords(size)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    distance = rng.uniform(1.0, 4.0) * size
    cy = size / 2 + distance * np.sin(angle)
    cx = size / 2 + distance * np.cos(angle)
    radius = np.hypot(yy - cy, xx - cx) / size
    warp = fbm(rng, size, int(rng.integers(2, 5)), octaves=3)
    rings = 0.5 + 0.5 * np.sin(2.0 * np.pi * (radius * rng.uniform(6.0, 18.0) + 0.8 * warp))
    field = rings ** rng.uniform(1.0, 3.0)
    light = rng.uniform([0.55, 0.35, 0.2], [0.9, 0.7, 0.5])
    return _lerp_colors(field, light * rng.uniform(0.35, 0.7), light)


def weave_texture(rng: np.random.Generator, size: int) -> FloatArray:
    """Plain-weave fabric: alternating horizontal and vertical thread blocks with round shading."""
    yy, xx = _coords(size)
    period = max(3.0, rng.uniform(5.0, 12.0) * size / 128)
    yy, xx = yy + rng.uniform(0, period), xx + rng.uniform(0, period)
    horizontal = ((yy // period + xx // period) % 2) == 0
    # A half-sine across each thread mimics the round cross-section of yarn.
    across = np.where(horizontal, (yy % period) / period, (xx % period) / period)
    shade = np.sin(np.pi * across) ** 0.6
    field = 0.3 + 0.6 * shade + 0.1 * (value_noise(rng, size, max(2, size // 2)) - 0.5)
    warp_color, weft_color = rng.uniform(0.3, 1.0, 3), rng.uniform(0.3, 1.0, 3)
    color = np.where(horizontal[..., None], warp_color, weft_color)
    return np.clip(color * field[..., None], 0.0, 1.0)


def grain_texture(rng: np.random.Generator, size: int) -> FloatArray:
    """Fine-grained noise (sandpaper, concrete): blurred white noise over a faint fBm field."""
    white = gaussian_filter(rng.normal(size=(size, size)), sigma=rng.uniform(0.5, 1.2))
    white /= max(float(white.std()), 1e-12)
    field = 0.5 + rng.uniform(0.08, 0.18) * white + 0.3 * (fbm(rng, size, 3, octaves=2) - 0.5)
    base = rng.uniform(0.2, 0.8, 3)
    spread = rng.uniform(0.15, 0.35)
    return _lerp_colors(np.clip(field, 0, 1), base - spread, base + spread)


def gradient_texture(rng: np.random.Generator, size: int) -> FloatArray:
    """A smooth linear colour gradient in a random direction with faint low-frequency noise."""
    yy, xx = _coords(size)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = _normalise(np.cos(angle) * xx + np.sin(angle) * yy)
    field = np.clip(ramp + 0.15 * (fbm(rng, size, 2, octaves=3) - 0.5), 0.0, 1.0)
    return _lerp_colors(field, rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3))


def leather_texture(rng: np.random.Generator, size: int) -> FloatArray:
    """Held-out family: cellular (Worley) leather with shallow grooves and domed cells."""
    yy, xx = _coords(size)
    count = max(8, int(rng.integers(30, 70) * (size / 128) ** 2))
    # Seeds beyond the border keep cells at the edge as large as those in the middle.
    seeds = rng.uniform(-0.1 * size, 1.1 * size, (count, 2))
    pixels = np.stack([yy.ravel(), xx.ravel()], axis=1)
    dist, _ = cKDTree(seeds).query(pixels, k=2)
    nearest = dist[:, 0].reshape(size, size)
    border = (dist[:, 1] - dist[:, 0]).reshape(size, size)
    width = rng.uniform(0.8, 1.8) * size / 128
    groove = 1.0 - np.exp(-((border / width) ** 2))
    dome = 1.0 - _normalise(nearest) ** 2
    grain = fbm(rng, size, max(2, size // 8), octaves=2)
    field = 0.55 + 0.15 * groove + 0.15 * dome + 0.15 * (grain - 0.5)
    # One brown hue with varying lightness keeps the category consistent, like a real product.
    base = np.array([0.6, 0.38, 0.22]) * rng.uniform(0.6, 1.15) + rng.uniform(-0.04, 0.04, 3)
    return np.clip(base[None, None, :] * (0.4 + field[..., None]), 0.0, 1.0)


TRAIN_TEXTURES: dict[str, TextureFn] = {
    "clouds": clouds_texture,
    "wood": wood_texture,
    "weave": weave_texture,
    "grain": grain_texture,
    "gradient": gradient_texture,
}
"""Procedural families used for the normal training images."""

HELDOUT_TEXTURES: dict[str, TextureFn] = {"leather": leather_texture}
"""Procedural families reserved for the zero-shot test set."""
