"""Cut-paste anomalies: a patch of an image pasted elsewhere under a box, polygon or Perlin mask.

Geometry: a patch frame of size (h, w), rotated by ``angle`` about its centre, is placed in the
target image. Each target pixel centre maps (one affine map, applied by Pillow's C resampler) to

* the *mask field*, a small raster in the patch frame (ones for a box, a filled polygon, or
  Perlin noise), thresholded to give the mask, and
* the *source*, an axis-aligned box of size (h, w) / scale in the source image.

Only the bounding box of the rotated patch is ever resampled, so cost scales with the patch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from data_synthesis.augment import (
    CUTPASTE_AUGMENT,
    PipelineSpec,
    apply_pipeline,
    build_pipeline,
    default_pipeline,
)
from data_synthesis.base import (
    GRAY_SPREAD,
    Anomaly,
    AnomalyGeneratorBase,
    as_image,
    is_grayscale,
    to_luminance,
)
from data_synthesis.io import list_images, load_image
from data_synthesis.perlin import sample_perlin_field

MaskType = Literal["perlin", "box", "polygon"]
Params = dict[str, Any]
MASK_TYPES: tuple[str, ...] = ("perlin", "box", "polygon")
# Aspect ratio (h / w) range of the patch frame, as in the CutPaste paper.
_ASPECT = (0.3, 1.0 / 0.3)
# Floor on the mask's coverage of its frame: a sparse Perlin draw may grow the frame by at most
# 1/sqrt(0.05) ~ 4.5x, so the field raster is never upscaled into visible blockiness.
_MIN_COVERAGE = 0.05
# Same-image pastes: redraw the source centre this often to move it >= half a patch away.
_SOURCE_TRIES = 8
# Whole-geometry redraws when a tiny patch rasterises to zero pixels.
_GEOMETRY_TRIES = 8


def _polygon_field(size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    """Filled random convex (vertices on an ellipse) or star polygon spanning the raster."""
    n = int(rng.integers(3, 13))
    star = bool(rng.integers(2))
    # Evenly spaced angles with jitter avoid degenerate slivers that sorted uniform draws give.
    step = 2.0 * math.pi / n
    angles = np.arange(n) * step + rng.uniform(-0.4, 0.4, size=n) * step + rng.uniform(0, step)
    radii = rng.uniform(0.35, 1.0, size=n) if star else np.ones(n)
    height, width = size
    xs = (1.0 + radii * np.cos(angles)) * (width / 2.0)
    ys = (1.0 + radii * np.sin(angles)) * (height / 2.0)
    canvas = Image.new("F", (width, height), 0.0)
    ImageDraw.Draw(canvas).polygon(list(zip(xs.tolist(), ys.tolist())), fill=1.0)
    return np.asarray(canvas, dtype=np.float32), {"vertices": n, "star": star}


def _mask_field(
    mask_type: str, size: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, float, Params]:
    """Field in the patch frame whose values above the returned threshold form the mask."""
    if mask_type == "box":
        return np.ones(size, dtype=np.float32), 0.5, {}
    if mask_type == "polygon":
        field, params = _polygon_field(size, rng)
        return field, 0.5, params
    # Fewer lattice cells than the full-image default: the field spans one patch, not an image.
    noise, threshold, params = sample_perlin_field(size, rng, 0, 4)
    return noise, threshold, params


def _affine(
    angle: float,
    centre: tuple[float, float] | list[float],
    origin: tuple[int, int],
    scale: tuple[float, float],
    offset: tuple[float, float],
) -> tuple[float, float, float, float, float, float]:
    """Pillow AFFINE coefficients: crop pixel -> patch frame (rotated by ``-angle``) -> raster.

    A crop pixel centre q (crop origin ``origin`` = (y0, x0) in the image) maps to the frame point
    l = R(-angle) (q + origin - centre), then to ``(scale_x * l_x + off_x, scale_y * l_y + off_y)``.
    """
    cos_a, sin_a = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    (cy, cx), (y0, x0), (ky, kx), (oy, ox) = centre, origin, scale, offset
    dx, dy = x0 - cx, y0 - cy
    return (
        kx * cos_a, kx * sin_a, kx * (cos_a * dx + sin_a * dy) + ox,
        -ky * sin_a, ky * cos_a, ky * (-sin_a * dx + cos_a * dy) + oy,
    )  # fmt: skip


def _warp(plane: np.ndarray, size: tuple[int, int], coeffs: tuple[float, ...]) -> np.ndarray:
    """Bilinear affine resampling of a float32 (H, W) plane into ``size`` = (height, width)."""
    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    out = img.transform(
        (size[1], size[0]), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(out, dtype=np.float32)


class CutPasteGenerator(AnomalyGeneratorBase):
    """Paste a (rotated, scaled, augmented) patch of an image at a random place.

    The mask is exactly the set of pasted pixels; pixels outside it are bit-identical to the input.

    Args:
        mask_type: Shape of the pasted region: "box" (the rotated rectangle), "polygon" (random
            convex or star polygon) or "perlin" (thresholded Perlin noise inside the rectangle).
        source_dir: Folder of images to cut patches from (searched recursively; one random file
            per call, resized to the target size). None cuts from the target image itself.
        rotation: Rotate the patch by a uniform angle in [-180, 180) degrees.
        scale_range: Patch magnification range (>1 enlarges source content).
        area_range: Range of the mask area as a fraction of the image area (approximate for
            tiny images, and capped where the patch would not fit).
        augment: albumentations pipeline run on the source box before it is rotated and pasted
            (``A.to_dict`` format, see :mod:`data_synthesis.augment`); the default is a mild
            colour jitter (brightness, contrast and saturation x0.9-1.1, hue +-18 degrees).
            None: the patch is pasted as cut.
        color_faithful: on a grayscale or near-grayscale image (see
            :func:`data_synthesis.base.is_grayscale`), the pasted pixels are turned into their
            luminance (a coloured source file then pastes gray); colour images are unaffected.
        gray_spread: the channel-spread threshold of that grayscale rule.
    """

    name: str = "cutpaste"

    def __init__(
        self,
        mask_type: MaskType = "perlin",
        source_dir: str | None = None,
        rotation: bool = True,
        scale_range: tuple[float, float] = (0.7, 1.4),
        area_range: tuple[float, float] = (0.005, 0.1),
        augment: PipelineSpec = CUTPASTE_AUGMENT,
        color_faithful: bool = True,
        gray_spread: float = GRAY_SPREAD,
    ) -> None:
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
        if not 0.0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        if not 0.0 < area_range[0] <= area_range[1] <= 1.0:
            raise ValueError(f"area_range must satisfy 0 < low <= high <= 1, got {area_range}")
        self.mask_type = mask_type
        self.source_dir = source_dir
        self.rotation = rotation
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.area_range = (float(area_range[0]), float(area_range[1]))
        self.augment = default_pipeline(augment) if isinstance(augment, dict) else augment
        self._pipeline = build_pipeline(augment, "CutPasteGenerator.augment")
        self.color_faithful = bool(color_faithful)
        self.gray_spread = float(gray_spread)
        # Sorted and folder-determined, so caching cannot make outputs depend on call order.
        self._files: list[Path] | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mask_type={self.mask_type!r}, source_dir={self.source_dir!r}, "
            f"rotation={self.rotation}, scale_range={self.scale_range}, "
            f"area_range={self.area_range}, augment={self.augment!r}, "
            f"color_faithful={self.color_faithful}, gray_spread={self.gray_spread})"
        )

    def _source(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
        if self.source_dir is None:
            return img, {"source": "self"}
        if self._files is None:
            self._files = list_images(self.source_dir)
        path = self._files[int(rng.integers(len(self._files)))]
        src = load_image(path, (img.shape[0], img.shape[1]))
        return src, {"source": "file", "source_file": path.relative_to(self.source_dir).as_posix()}

    def _frame(
        self, shape: tuple[int, int], rng: np.random.Generator
    ) -> tuple[np.ndarray, float, Params]:
        """Draw the patch frame, its mask field and placement; returns (field, threshold, geo)."""
        height, width = shape
        area = float(rng.uniform(*self.area_range)) * height * width
        aspect = math.exp(rng.uniform(math.log(_ASPECT[0]), math.log(_ASPECT[1])))
        scale = float(rng.uniform(*self.scale_range))
        angle = float(rng.uniform(-180.0, 180.0)) if self.rotation else 0.0
        nominal = (max(4, round(math.sqrt(area * aspect))), max(4, round(math.sqrt(area / aspect))))
        field, threshold, params = _mask_field(self.mask_type, nominal, rng)
        coverage = max(_MIN_COVERAGE, float(np.mean(field > threshold)))
        # Grow the frame so the mask, not the frame, has the drawn area.
        h, w = math.sqrt(area / coverage * aspect), math.sqrt(area / coverage / aspect)
        cos_a, sin_a = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
        ext_y, ext_x = sin_a * w + cos_a * h, cos_a * w + sin_a * h
        # Shrink until the rotated frame fits the target and the unrotated source box the source.
        fit = min(1.0, height / ext_y, width / ext_x, height * scale / h, width * scale / w)
        h, w, ext_y, ext_x = h * fit, w * fit, ext_y * fit, ext_x * fit
        # max(): after the shrink, ext can exceed the image by float rounding (~1e-15).
        centre = [
            float(rng.uniform(ext_y / 2, max(ext_y / 2, height - ext_y / 2))),
            float(rng.uniform(ext_x / 2, max(ext_x / 2, width - ext_x / 2))),
        ]
        geo = {"frame": [h, w], "centre": centre, "scale": scale, "angle": angle, **params}
        geo["source_centre"] = self._source_centre(shape, geo, rng)
        return field, threshold, geo

    def _source_centre(
        self, shape: tuple[int, int], geo: Params, rng: np.random.Generator
    ) -> list[float]:
        """Centre of the source box; for same-image pastes, away from the target centre."""
        half_y, half_x = geo["frame"][0] / geo["scale"] / 2, geo["frame"][1] / geo["scale"] / 2
        for _ in range(_SOURCE_TRIES):
            src = [
                float(rng.uniform(half_y, max(half_y, shape[0] - half_y))),
                float(rng.uniform(half_x, max(half_x, shape[1] - half_x))),
            ]
            # A paste onto its own location would change nothing; keep the draw only if it
            # moved at least half a patch (a file source is another image, so anything goes).
            moved = math.dist(src, geo["centre"]) >= min(geo["frame"]) / 2
            if self.source_dir is not None or moved:
                break
        return src

    def _rasterise(
        self, shape: tuple[int, int], rng: np.random.Generator
    ) -> tuple[np.ndarray, Params]:
        """Draw a frame and rasterise its mask on the frame's bounding box in the image.

        Returns:
            Boolean mask of the bounding box ``geo["bbox"]`` = [y0, x0, y1, x1], and ``geo``.
        """
        for _ in range(_GEOMETRY_TRIES):
            field, threshold, geo = self._frame(shape, rng)
            (cy, cx), (h, w) = geo["centre"], geo["frame"]
            cos_a = abs(math.cos(math.radians(geo["angle"])))
            sin_a = abs(math.sin(math.radians(geo["angle"])))
            half_y, half_x = (sin_a * w + cos_a * h) / 2, (cos_a * w + sin_a * h) / 2
            y0, x0 = max(0, math.floor(cy - half_y)), max(0, math.floor(cx - half_x))
            y1, x1 = min(shape[0], math.ceil(cy + half_y)), min(shape[1], math.ceil(cx + half_x))
            geo["bbox"] = [y0, x0, y1, x1]
            fh, fw = field.shape
            to_field = _affine(geo["angle"], (cy, cx), (y0, x0), (fh / h, fw / w), (fh / 2, fw / 2))
            inside = _warp(field, (y1 - y0, x1 - x0), to_field) > threshold
            if inside.any():
                return inside, geo
        # A sub-pixel patch on a tiny image: paste at least the pixel under the frame centre.
        inside[min(y1 - y0 - 1, int(cy) - y0), min(x1 - x0 - 1, int(cx) - x0)] = True
        return inside, geo

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> Anomaly:
        """Synthesise one cut-paste anomaly; see the class docstring."""
        img = as_image(image)
        height, width = img.shape[:2]
        source, params = self._source(img, rng)
        inside, geo = self._rasterise((height, width), rng)
        y0, x0, y1, x1 = geo["bbox"]
        patch, params["augment_seed"] = self._sample_source(
            source, geo, (y0, x0), inside.shape, rng
        )
        pixels = patch[inside]
        params["grayscale"] = self.color_faithful and is_grayscale(img, self.gray_spread)
        if params["grayscale"]:
            pixels = to_luminance(pixels)
        out = img.copy()
        # Only masked pixels are written, so everything else stays bit-identical to the input.
        out[y0:y1, x0:x1][inside] = np.clip(pixels, 0.0, 1.0)
        mask = np.zeros((height, width), dtype=np.float32)
        mask[y0:y1, x0:x1][inside] = 1.0
        params.update(geo, generator=self.name, mask_type=self.mask_type)
        params["area_fraction"] = float(inside.sum()) / (height * width)
        return Anomaly(image=out, mask=mask, params=params)

    def _sample_source(
        self,
        source: np.ndarray,
        geo: Params,
        origin: tuple[int, int],
        size: tuple[int, int],
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, int]:
        """Augment the source box, then resample it (scaled, rotated) onto the crop at
        ``origin`` of ``size``; returns the resampled patch and the augmentation seed."""
        (sy, sx), (h, w), scale = geo["source_centre"], geo["frame"], geo["scale"]
        # Crop the source box (+2 px for the bilinear footprint) so only it is copied to Pillow.
        top, left = (
            max(0, math.floor(sy - h / scale / 2) - 2),
            max(0, math.floor(sx - w / scale / 2) - 2),
        )
        bottom = min(source.shape[0], math.ceil(sy + h / scale / 2) + 2)
        right = min(source.shape[1], math.ceil(sx + w / scale / 2) + 2)
        crop, _, seed = apply_pipeline(self._pipeline, rng, source[top:bottom, left:right])
        coeffs = _affine(
            geo["angle"], geo["centre"], origin, (1 / scale, 1 / scale), (sy - top, sx - left)
        )
        return np.stack([_warp(crop[..., c], size, coeffs) for c in range(3)], axis=-1), seed
