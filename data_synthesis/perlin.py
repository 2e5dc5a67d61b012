"""Seeded 2-D Perlin noise and DRAEM-style Perlin anomaly masks.

Two evaluators share one gradient-noise kernel:

* :func:`perlin_noise` evaluates the noise at every output pixel (exact, simple).
* :func:`fast_perlin_noise` evaluates it on a coarse grid (a few samples per lattice cell) and lets
  Pillow's C affine resampler upsample *and* rotate it in one pass. Perlin noise is a smooth
  quintic-faded interpolant, so bilinear upsampling from 8 samples per cell is visually identical
  and several times cheaper at 768x768.

All randomness comes from the ``numpy.random.Generator`` that the caller passes in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

# sqrt(2) maps the theoretical range of 2-D gradient noise to about [-1, 1]; DRAEM's reference
# implementation scales the same way, so its threshold of 0.5 keeps its meaning here.
_AMPLITUDE = math.sqrt(2.0)
# Coarse samples per lattice cell in fast_perlin_noise; 8 keeps the bilinear error far below
# anything a 0.5 threshold can see, while doing roughly 1/64 of the per-pixel work per cell.
_SAMPLES_PER_CELL = 8
# Share of pixels kept by the fallback threshold when every draw of perlin_mask came out empty.
_FALLBACK_FRACTION = 0.01


def _fade(t: np.ndarray) -> np.ndarray:
    """Quintic fade 6t^5 - 15t^4 + 10t^3 (zero first and second derivative at 0 and 1)."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _random_gradients(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Unit gradient vectors on a ``rows x cols`` lattice, shape (rows, cols, 2) as (gx, gy)."""
    angles = rng.uniform(0.0, 2.0 * math.pi, size=(rows, cols))
    return np.stack([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)


def _gradient_noise(ys: np.ndarray, xs: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Evaluate Perlin noise on the separable grid ``ys x xs`` (lattice units).

    Args:
        ys: Row coordinates in lattice units, shape (n,), within [0, grads.shape[0] - 1].
        xs: Column coordinates in lattice units, shape (m,), within [0, grads.shape[1] - 1].
        grads: Gradient lattice from :func:`_random_gradients`.

    Returns:
        Noise of shape (n, m), float32, roughly in [-1, 1].
    """
    # Clamp the cell index so that a coordinate exactly on the last lattice line stays in range.
    iy = np.minimum(ys.astype(np.intp), grads.shape[0] - 2)
    ix = np.minimum(xs.astype(np.intp), grads.shape[1] - 2)
    fy = (ys - iy).astype(np.float32)[:, None]
    fx = (xs - ix).astype(np.float32)[None, :]
    gx, gy = grads[..., 0], grads[..., 1]

    def corner(dy: int, dx: int) -> np.ndarray:
        idx = np.ix_(iy + dy, ix + dx)
        return gx[idx] * (fx - dx) + gy[idx] * (fy - dy)

    u, v = _fade(fx), _fade(fy)
    n00, n01, n10, n11 = corner(0, 0), corner(0, 1), corner(1, 0), corner(1, 1)
    top = n00 + u * (n01 - n00)
    bottom = n10 + u * (n11 - n10)
    return (_AMPLITUDE * (top + v * (bottom - top))).astype(np.float32)


def _check_shape_res(shape: tuple[int, int], res: tuple[int, int]) -> None:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be two positive ints, got {shape}")
    if len(res) != 2 or min(res) < 1:
        raise ValueError(f"res must be two positive ints, got {res}")


def perlin_noise(
    shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Exact 2-D Perlin noise, evaluated at every pixel.

    Args:
        shape: Output (height, width) in pixels.
        res: Number of lattice cells along (height, width); any positive ints, they need not
            divide ``shape``.
        rng: Source of the random gradient directions.

    Returns:
        float32 array of ``shape``, roughly in [-1, 1], zero on the lattice points.
    """
    _check_shape_res(shape, res)
    grads = _random_gradients(res[0] + 1, res[1] + 1, rng)
    ys = np.arange(shape[0]) * (res[0] / shape[0])
    xs = np.arange(shape[1]) * (res[1] / shape[1])
    return _gradient_noise(ys, xs, grads)


def fast_perlin_noise(
    shape: tuple[int, int],
    res: tuple[int, int],
    rng: np.random.Generator,
    angle: float = 0.0,
) -> np.ndarray:
    """Perlin noise computed on a coarse grid, then upsampled and rotated in one resampling pass.

    Statistically the same field as :func:`perlin_noise` with ``res`` cells across the image,
    optionally rotated by ``angle`` degrees about the image centre. The lattice covers the whole
    rotated footprint, so no corner of the output is left without noise.

    Args:
        shape: Output (height, width) in pixels.
        res: Lattice cells along (height, width) of the unrotated image.
        rng: Source of the random gradient directions.
        angle: Counter-clockwise rotation of the noise pattern in degrees.

    Returns:
        float32 array of ``shape``, roughly in [-1, 1].
    """
    _check_shape_res(shape, res)
    height, width = shape
    cell_y, cell_x = height / res[0], width / res[1]
    cos_a, sin_a = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Pixel-unit extent of the rotated output rectangle inside the noise domain.
    span_x = abs(cos_a) * width + abs(sin_a) * height
    span_y = abs(sin_a) * width + abs(cos_a) * height
    # Coarse sample spacing in pixels; never finer than one pixel.
    step_y = max(1.0, cell_y / _SAMPLES_PER_CELL)
    step_x = max(1.0, cell_x / _SAMPLES_PER_CELL)
    # Two extra samples per axis so bilinear lookups at the border never hit the zero fill.
    rows = math.ceil(span_y / step_y) + 3
    cols = math.ceil(span_x / step_x) + 3
    grads = _random_gradients(
        math.ceil(rows * step_y / cell_y) + 2, math.ceil(cols * step_x / cell_x) + 2, rng
    )
    coarse = _gradient_noise(
        np.arange(rows) * (step_y / cell_y), np.arange(cols) * (step_x / cell_x), grads
    )
    # Output pixel centre q (Pillow's convention: centres at +0.5) maps to the coarse grid as
    # ((R @ (q - image_centre)) + domain_centre) / step + 0.5, an affine map Pillow can apply.
    dom_x, dom_y = (cols - 1) * step_x / 2.0, (rows - 1) * step_y / 2.0
    cx, cy = width / 2.0, height / 2.0
    a, b = cos_a / step_x, -sin_a / step_x
    d, e = sin_a / step_y, cos_a / step_y
    c = (dom_x - cos_a * cx + sin_a * cy) / step_x + 0.5
    f = (dom_y - sin_a * cx - cos_a * cy) / step_y + 0.5
    out = Image.fromarray(coarse).transform(
        (width, height),
        Image.Transform.AFFINE,
        (a, b, c, d, e, f),
        resample=Image.Resampling.BILINEAR,
    )
    return np.asarray(out, dtype=np.float32)


def sample_perlin_field(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_scale_exp: int = 0,
    max_scale_exp: int = 6,
    threshold: float = 0.5,
    rotate: bool = True,
    max_tries: int = 16,
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Draw Perlin noise until some pixel exceeds ``threshold``; see :func:`perlin_mask`.

    Returns:
        The noise field, the threshold to apply (``threshold``, or the top-1% level of the last
        field when every draw was empty) and a JSON-ready record of the choices made.
    """
    if not 0 <= min_scale_exp < max_scale_exp:
        raise ValueError(
            f"need 0 <= min_scale_exp < max_scale_exp, got {min_scale_exp}, {max_scale_exp}"
        )
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    used, tries = threshold, 0
    while True:
        tries += 1
        exps = rng.integers(min_scale_exp, max_scale_exp, size=2)
        res = (int(2 ** exps[0]), int(2 ** exps[1]))
        angle = float(rng.uniform(-90.0, 90.0)) if rotate else 0.0
        noise = fast_perlin_noise(shape, res, rng, angle)
        if noise.max() > threshold:
            break
        if tries == max_tries:
            # Every draw was empty (only likely with a high threshold): keep the top 1% of the
            # last field, a blob around its maximum, so callers always get an anomaly. The level
            # sits just below that value because callers compare with a strict ">".
            flat = noise.ravel()
            k = max(1, int(flat.size * _FALLBACK_FRACTION))
            level = np.partition(flat, flat.size - k)[flat.size - k]
            used = float(np.nextafter(np.float32(level), np.float32(-np.inf)))
            break
    params = {
        "perlin_res": [res[0], res[1]],
        "perlin_angle": angle,
        "perlin_threshold": float(used),
        "perlin_tries": tries,
    }
    return noise, used, params


def perlin_mask_with_params(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_scale_exp: int = 0,
    max_scale_exp: int = 6,
    threshold: float = 0.5,
    rotate: bool = True,
    max_tries: int = 16,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Like :func:`perlin_mask`, but also return the choices made as a JSON-ready dict."""
    noise, used, params = sample_perlin_field(
        shape, rng, min_scale_exp, max_scale_exp, threshold, rotate, max_tries
    )
    return (noise > used).astype(np.float32), params


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_scale_exp: int = 0,
    max_scale_exp: int = 6,
    threshold: float = 0.5,
    rotate: bool = True,
    max_tries: int = 16,
) -> np.ndarray:
    """DRAEM-style binary anomaly mask from thresholded Perlin noise.

    Each try draws a lattice resolution ``2**k`` per axis with ``k`` uniform in
    ``[min_scale_exp, max_scale_exp)`` (upper bound excluded, as in DRAEM), optionally a rotation
    uniform in [-90, 90) degrees, and thresholds the noise. Empty masks are redrawn up to
    ``max_tries`` times; if all are empty, the top 1% of the last noise field is used instead, so
    the result is never empty.

    Args:
        shape: Mask (height, width).
        rng: Source of every random choice.
        min_scale_exp: Smallest exponent of the lattice resolution.
        max_scale_exp: Exclusive upper bound of the exponent.
        threshold: Noise level above which a pixel is anomalous (noise is about [-1, 1]).
        rotate: Whether to rotate the noise pattern by a random angle.
        max_tries: Draws before falling back to the top-1% threshold.

    Returns:
        float32 mask of ``shape`` with values in {0, 1} and at least one 1.
    """
    mask, _ = perlin_mask_with_params(
        shape, rng, min_scale_exp, max_scale_exp, threshold, rotate, max_tries
    )
    return mask
