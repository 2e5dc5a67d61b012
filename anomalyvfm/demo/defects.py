"""Synthetic surface defects for the zero-shot demo test set.

The defect families here (thin scratches, sharp-edged spots/dents/holes and branching cracks) are
deliberately different from the training-time anomaly synthesis (noise-texture blends and
cut-paste under Perlin/box/polygon masks), so the test set measures zero-shot generalisation.
Each defect is rendered as an anti-aliased coverage map ``alpha`` and a colour field; the mask is
``alpha > 0``, so it covers every changed pixel and at most one extra ring of edge pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Params = dict[str, Any]
_Builder = Callable[[np.random.Generator, FloatArray], tuple[FloatArray, FloatArray, Params]]

DEFECT_TYPES: tuple[str, ...] = ("scratch", "spot", "crack")
"""Defect types written for every test category, in this order."""

MIN_AREA_FRACTION = 0.002
MAX_AREA_FRACTION = 0.03
_MAX_TRIES = 64
_LUMA = np.array([0.299, 0.587, 0.114])


def apply_defect(
    image: FloatArray, defect_type: str, rng: np.random.Generator
) -> tuple[FloatArray, BoolArray, Params]:
    """Paint one defect of ``defect_type`` onto a copy of ``image``.

    Shapes are re-drawn until the defect covers between :data:`MIN_AREA_FRACTION` and
    :data:`MAX_AREA_FRACTION` of the image, so defects stay small but visible at any size.

    Args:
        image: ``(size, size, 3)`` RGB image in ``[0, 1]``; it is not modified.
        defect_type: One of :data:`DEFECT_TYPES`.
        rng: Source of randomness.

    Returns:
        The defective image, its boolean mask and a JSON-serialisable parameter record.

    Raises:
        ValueError: If ``defect_type`` is unknown.
    """
    if defect_type not in _BUILDERS:
        raise ValueError(f"unknown defect type {defect_type!r}; expected one of {DEFECT_TYPES}")
    builder = _BUILDERS[defect_type]
    for _ in range(_MAX_TRIES):
        alpha, color, params = builder(rng, image)
        area = float(np.count_nonzero(alpha) / alpha.size)
        if MIN_AREA_FRACTION <= area <= MAX_AREA_FRACTION:
            break
    weight = alpha[..., None]
    out = np.clip(image * (1.0 - weight) + color * weight, 0.0, 1.0)
    params.update(type=defect_type, area_fraction=round(area, 5))
    return out, alpha > 0, params


def _local_mean(image: FloatArray, alpha: FloatArray) -> FloatArray:
    """Mean colour of the background under the defect footprint."""
    weight = alpha / max(float(alpha.sum()), 1e-12)
    return np.asarray((image * weight[..., None]).sum(axis=(0, 1)), dtype=np.float64)


def _vivid_color(rng: np.random.Generator, background: FloatArray) -> FloatArray:
    """The most distant of a few random colours: paint-like, always contrasting."""
    candidates = rng.random((12, 3))
    distance = np.linalg.norm(candidates - background[None, :], axis=1)
    return np.asarray(candidates[int(np.argmax(distance))], dtype=np.float64)


def _polar_color(rng: np.random.Generator, background: FloatArray, dark_bias: float) -> FloatArray:
    """A dark or bright, slightly tinted colour with the opposite lightness of the background."""
    luma = float(background @ _LUMA)
    tint = rng.uniform(-0.06, 0.06, 3)
    if luma > dark_bias:
        return np.clip(background * rng.uniform(0.08, 0.3) + tint, 0.0, 1.0)
    return np.clip(1.0 - (1.0 - background) * rng.uniform(0.08, 0.3) + tint, 0.0, 1.0)


def _polyline_alpha(size: int, points: FloatArray, half_width: float) -> FloatArray:
    """Anti-aliased coverage of a polyline of ``(x, y)`` points with the given half width."""
    alpha = np.zeros((size, size))
    margin = half_width + 1.0
    x0, y0 = np.floor(points.min(axis=0) - margin).astype(int).clip(0, size)
    x1, y1 = np.ceil(points.max(axis=0) + margin + 1).astype(int).clip(0, size)
    if x1 <= x0 or y1 <= y0:
        return alpha
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    px, py = xx.ravel()[None, :], yy.ravel()[None, :]
    ax, ay = points[:-1, 0:1], points[:-1, 1:2]
    dx, dy = points[1:, 0:1] - ax, points[1:, 1:2] - ay
    # Project every pixel onto every segment, clamp to the segment, keep the nearest.
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-12), 0, 1)
    dist = np.sqrt(((px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2).min(axis=0))
    alpha[y0:y1, x0:x1] = np.clip(half_width + 0.5 - dist, 0.0, 1.0).reshape(yy.shape)
    return alpha


def _bezier(control: FloatArray, samples: int) -> FloatArray:
    """Points on a cubic Bezier curve given four ``(x, y)`` control points."""
    t = np.linspace(0.0, 1.0, samples)[:, None]
    p0, p1, p2, p3 = control
    return np.asarray(
        (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3,
        dtype=np.float64,
    )


def _scratch(rng: np.random.Generator, image: FloatArray) -> tuple[FloatArray, FloatArray, Params]:
    """A thin, gently curved stroke (1-3 px) in a contrasting, paint-like colour."""
    size = image.shape[0]
    angle = rng.uniform(0.0, 2.0 * np.pi)
    length = rng.uniform(0.2, 0.5) * size
    direction = np.array([np.cos(angle), np.sin(angle)])
    # Centring the stroke keeps most of it inside the image instead of clipped at a border.
    start = rng.uniform(0.25, 0.75, 2) * size - direction * length / 2
    normal = np.array([-direction[1], direction[0]])
    bend = rng.normal(0.0, 0.12 * length, 2)
    control = np.stack(
        [
            start,
            start + direction * length / 3 + normal * bend[0],
            start + direction * 2 * length / 3 + normal * bend[1],
            start + direction * length,
        ]
    )
    half_width = float(rng.uniform(0.5, 1.5))
    alpha = _polyline_alpha(size, _bezier(control, 32), half_width)
    color = _vivid_color(rng, _local_mean(image, alpha))
    opacity = float(rng.uniform(0.85, 1.0))
    params: Params = {
        "control_points": np.round(control, 2).tolist(),
        "width_px": round(2 * half_width, 3),
        "color": np.round(color, 4).tolist(),
        "opacity": round(opacity, 4),
    }
    return alpha * opacity, np.broadcast_to(color, image.shape).copy(), params


def _blob_shape(
    rng: np.random.Generator, size: int
) -> tuple[FloatArray, FloatArray, FloatArray, Params]:
    """Coverage, normalised radius and lighting term of an irregular sharp-edged ellipse."""
    mean_radius = np.sqrt(rng.uniform(0.003, 0.02) * size * size / np.pi)
    aspect = rng.uniform(0.45, 1.0)
    semi_a, semi_b = mean_radius / np.sqrt(aspect), mean_radius * np.sqrt(aspect)
    centre = rng.uniform(0.15, 0.85, 2) * size
    theta = rng.uniform(0.0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    u = (xx - centre[0]) * np.cos(theta) + (yy - centre[1]) * np.sin(theta)
    v = -(xx - centre[0]) * np.sin(theta) + (yy - centre[1]) * np.cos(theta)
    rho, phi = np.hypot(u / semi_a, v / semi_b), np.arctan2(v / semi_b, u / semi_a)
    amps, phases = rng.uniform(0.0, 0.12, 3), rng.uniform(0.0, 2.0 * np.pi, 3)
    boundary = 1.0 + sum(a * np.cos(k * phi + p) for k, a, p in zip((2, 3, 4), amps, phases))
    # (boundary - rho) * radius approximates the signed pixel distance to the outline.
    alpha = np.clip((boundary - rho) * np.sqrt(semi_a * semi_b) + 0.5, 0.0, 1.0)
    light = rng.uniform(0.0, 2.0 * np.pi)
    lighting = (np.cos(light) * u / semi_a + np.sin(light) * v / semi_b) / boundary
    params: Params = {
        "centre": np.round(centre, 2).tolist(),
        "semi_axes": [round(float(semi_a), 3), round(float(semi_b), 3)],
        "angle": round(float(theta), 4),
        "light_angle": round(float(light), 4),
    }
    return alpha, np.clip(rho / boundary, 0.0, 1.0), np.clip(lighting, -1.0, 1.0), params


def _spot(rng: np.random.Generator, image: FloatArray) -> tuple[FloatArray, FloatArray, Params]:
    """A dent, hole or spot: a dark or bright blob with directional shading and a darker core."""
    alpha, radius, lighting, params = _blob_shape(rng, image.shape[0])
    color = _polar_color(rng, _local_mean(image, alpha), dark_bias=0.5)
    relief, depth = float(rng.uniform(0.25, 0.5)), float(rng.uniform(0.0, 0.4))
    shade = (1.0 + relief * lighting) * (1.0 - depth * (1.0 - radius))
    field = np.clip(color[None, None, :] * shade[..., None], 0.0, 1.0)
    params.update(color=np.round(color, 4).tolist(), relief=round(relief, 4))
    params.update(depth=round(depth, 4))
    return alpha, field, params


def _random_walk(
    rng: np.random.Generator, start: FloatArray, heading: float, length: float
) -> FloatArray:
    """A jagged path whose heading jitters but is pulled back towards its initial direction."""
    steps = max(2, int(length / 1.5))
    angles = np.empty(steps)
    current = heading
    for i in range(steps):
        current += rng.normal(0.0, 0.35) - 0.2 * (current - heading)
        angles[i] = current
    moves = 1.5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.asarray(np.vstack([start, start + np.cumsum(moves, axis=0)]), dtype=np.float64)


def _crack(rng: np.random.Generator, image: FloatArray) -> tuple[FloatArray, FloatArray, Params]:
    """A branching crack: a jagged main walk with 1-3 thinner side branches, mostly dark."""
    size = image.shape[0]
    heading = float(rng.uniform(0.0, 2.0 * np.pi))
    length = float(rng.uniform(0.25, 0.45) * size)
    start = rng.uniform(0.25, 0.75, 2) * size - 0.5 * length * np.array(
        [np.cos(heading), np.sin(heading)]
    )
    main = _random_walk(rng, start, heading, length)
    half_width = float(rng.uniform(0.5, 1.0))
    alpha = _polyline_alpha(size, main, half_width)
    branches = int(rng.integers(1, 4))
    for _ in range(branches):
        fork = int(rng.integers(len(main) // 4, max(len(main) * 3 // 4, len(main) // 4 + 1)))
        turn = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.1))
        branch = _random_walk(rng, main[fork], heading + turn, length * rng.uniform(0.2, 0.5))
        alpha = np.maximum(alpha, _polyline_alpha(size, branch, 0.6 * half_width))
    color = _polar_color(rng, _local_mean(image, alpha), dark_bias=0.3)
    params: Params = {
        "start": np.round(main[0], 2).tolist(),
        "heading": round(heading, 4),
        "length_px": round(length, 2),
        "branches": branches,
        "width_px": round(2 * half_width, 3),
        "color": np.round(color, 4).tolist(),
    }
    return alpha, np.broadcast_to(color, image.shape).copy(), params


_BUILDERS: dict[str, _Builder] = {"scratch": _scratch, "spot": _spot, "crack": _crack}
