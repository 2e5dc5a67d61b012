"""DRAEM-style noise-texture anomalies: a texture blended into the image under a Perlin mask."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from data_synthesis.augment import (
    NOISE_TEXTURE_AUGMENT,
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
from data_synthesis.io import decode_image, image_to_float, list_images, resize_image
from data_synthesis.perlin import fast_perlin_noise, perlin_mask_with_params

Params = dict[str, Any]
PROCEDURAL_KINDS = ("perlin_two_tone", "perlin_color", "stripes", "gradient_grain")
# Smallest crop side, as a fraction of the largest crop with the image's aspect ratio.
_MIN_CROP_FRACTION = 0.5


def _random_res(rng: np.random.Generator) -> tuple[int, int]:
    exps = rng.integers(1, 6, size=2)
    return int(2 ** exps[0]), int(2 ** exps[1])


def _lerp_colors(t: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """Blend two RGB colours by the (H, W) weight ``t`` in [0, 1] -> (H, W, 3)."""
    return c0 + t[..., None] * (c1 - c0)


def procedural_texture(
    shape: tuple[int, int], rng: np.random.Generator, kind: str | None = None
) -> tuple[np.ndarray, Params]:
    """Generate a structured colour texture without any image files.

    Args:
        shape: Texture (height, width).
        rng: Source of every random choice.
        kind: One of ``PROCEDURAL_KINDS``; drawn at random when None.

    Returns:
        float32 (H, W, 3) texture in [0, 1] and its parameters.
    """
    if kind is None:
        kind = PROCEDURAL_KINDS[int(rng.integers(len(PROCEDURAL_KINDS)))]
    height, width = shape
    colors = rng.uniform(0.0, 1.0, size=(3, 3)).astype(np.float32)
    params: Params = {"texture": kind, "colors": colors.round(4).tolist()}
    if kind in ("perlin_two_tone", "perlin_color"):
        res, angle = _random_res(rng), float(rng.uniform(-90.0, 90.0))
        gain = float(rng.uniform(1.0, 4.0))  # >1 sharpens the transition between the colours
        weight = np.clip(0.5 + gain * fast_perlin_noise(shape, res, rng, angle), 0.0, 1.0)
        tex = _lerp_colors(weight, colors[0], colors[1])
        params.update(res=list(res), angle=angle, gain=gain)
        if kind == "perlin_color":
            res2 = _random_res(rng)
            tint = fast_perlin_noise(shape, res2, rng, float(rng.uniform(-90.0, 90.0)))
            tex = tex + tint[..., None] * (colors[2] - 0.5)
            params["res2"] = list(res2)
    elif kind == "stripes":
        period = float(rng.uniform(4.0, max(8.0, min(shape) / 4.0)))
        theta, phase = float(rng.uniform(0.0, math.pi)), float(rng.uniform(0.0, 2.0 * math.pi))
        hardness = float(rng.uniform(1.0, 8.0))
        freq = 2.0 * math.pi / period
        # Separable phase: (H, 1) + (1, W) broadcasts to the full grid in one addition.
        ys = (np.arange(height, dtype=np.float32) * np.float32(freq * math.sin(theta)))[:, None]
        xs = (np.arange(width, dtype=np.float32) * np.float32(freq * math.cos(theta)))[None, :]
        wave = np.tanh(hardness * np.sin(xs + ys + np.float32(phase)))
        tex = _lerp_colors(0.5 + 0.5 * wave, colors[0], colors[1])
        params.update(period=period, theta=theta, phase=phase, hardness=hardness)
    elif kind == "gradient_grain":
        theta, grain = float(rng.uniform(0.0, 2.0 * math.pi)), float(rng.uniform(0.02, 0.2))
        ys = np.linspace(0.0, math.sin(theta), height, dtype=np.float32)[:, None]
        xs = np.linspace(0.0, math.cos(theta), width, dtype=np.float32)[None, :]
        ramp = np.clip(0.5 + 0.5 * (xs + ys), 0.0, 1.0)
        noise = rng.random((height, width, 1), dtype=np.float32) - np.float32(0.5)
        tex = _lerp_colors(ramp, colors[0], colors[1]) + np.float32(grain) * noise
        params.update(theta=theta, grain=grain)
    else:
        raise ValueError(f"unknown procedural texture {kind!r}; expected one of {PROCEDURAL_KINDS}")
    return np.clip(tex, 0.0, 1.0).astype(np.float32), params


def random_crop_resize(
    tex: np.ndarray, shape: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, Params]:
    """Random aspect-preserving crop of ``tex``, resized to ``shape``.

    The crop has the target's aspect ratio (no stretching); its side is 50-100% of the largest
    such crop. The result keeps the texture's dtype (uint8 or float32).
    """
    src_h, src_w = tex.shape[:2]
    height, width = shape
    fit = min(src_h / height, src_w / width)
    frac = float(rng.uniform(_MIN_CROP_FRACTION, 1.0))
    crop_h = min(src_h, max(1, round(height * fit * frac)))
    crop_w = min(src_w, max(1, round(width * fit * frac)))
    y0 = int(rng.integers(src_h - crop_h + 1))
    x0 = int(rng.integers(src_w - crop_w + 1))
    out = resize_image(tex[y0 : y0 + crop_h, x0 : x0 + crop_w], shape)
    return out, {"crop": [y0, x0, crop_h, crop_w]}


class NoiseTextureGenerator(AnomalyGeneratorBase):
    """Blend a texture into the image under a thresholded Perlin mask (DRAEM).

    ``out = img`` outside the mask and ``(1 - opacity) * img + opacity * texture`` inside it, so
    ``opacity`` is the visibility of the texture (1: pasted as is; small: a faint tint). DRAEM's
    ``beta`` is ``1 - opacity``; both are recorded in ``params``.

    Args:
        texture_dir: Folder of texture images (e.g. the Describable Textures Dataset), searched
            recursively on first use. Each call loads one file at random, runs ``augment`` on
            it, then crops and resizes it. When None, textures are generated procedurally
            (coloured Perlin noise, stripes, colour gradients with grain).
        opacity: Range of the texture visibility, drawn uniformly per call; within (0, 1].
        min_scale_exp: Smallest Perlin lattice exponent of the mask.
        max_scale_exp: Exclusive upper bound of the Perlin lattice exponent.
        threshold: Perlin noise threshold of the mask.
        texture_size: Textures are made (procedural) or cropped and augmented (files) at most
            this many pixels on their long side, then resized to the image. Texture detail is
            coarse anyway, and this keeps synthesis above 20 images/s per core at 768 px (see
            experiments/benchmarks/RESULTS.md). None works at the image's full size.
        augment: albumentations pipeline run on every texture file (``A.to_dict`` format, see
            :mod:`data_synthesis.augment`); the default is DRAEM's recipe: a random D4
            rotation/flip, then three distinct changes out of gamma, brightness/contrast,
            hue/saturation, solarize, posterize, invert and autocontrast. None: no change.
            Procedural textures are random by construction and are not augmented.
        color_faithful: on a grayscale or near-grayscale image (see
            :func:`data_synthesis.base.is_grayscale`), the texture is turned into its luminance,
            so the anomaly stays gray like the image; colour images are unaffected.
        gray_spread: the channel-spread threshold of that grayscale rule.
    """

    name: str = "noise_texture"

    def __init__(
        self,
        texture_dir: str | None = None,
        opacity: tuple[float, float] = (0.15, 1.0),
        min_scale_exp: int = 0,
        max_scale_exp: int = 6,
        threshold: float = 0.5,
        texture_size: int | None = 256,
        augment: PipelineSpec = NOISE_TEXTURE_AUGMENT,
        color_faithful: bool = True,
        gray_spread: float = GRAY_SPREAD,
    ) -> None:
        low, high = opacity
        if texture_size is not None and texture_size < 8:
            raise ValueError(f"texture_size must be at least 8 pixels or None, got {texture_size}")
        self.texture_size = texture_size
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"opacity must satisfy 0 < low <= high <= 1, got {opacity}")
        if not 0 <= min_scale_exp < max_scale_exp:
            raise ValueError(
                f"need 0 <= min_scale_exp < max_scale_exp, got {min_scale_exp}, {max_scale_exp}"
            )
        self.texture_dir = texture_dir
        self.opacity = (float(low), float(high))
        self.min_scale_exp = min_scale_exp
        self.max_scale_exp = max_scale_exp
        self.threshold = threshold
        self.augment = default_pipeline(augment) if isinstance(augment, dict) else augment
        self._pipeline = build_pipeline(augment, "NoiseTextureGenerator.augment")
        self.color_faithful = bool(color_faithful)
        self.gray_spread = float(gray_spread)
        # The sorted file list depends only on the folder, never on call order, so caching it
        # keeps outputs deterministic; the textures themselves are loaded per call.
        self._files: list[Path] | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(texture_dir={self.texture_dir!r}, opacity={self.opacity}, "
            f"min_scale_exp={self.min_scale_exp}, max_scale_exp={self.max_scale_exp}, "
            f"threshold={self.threshold}, texture_size={self.texture_size}, "
            f"augment={self.augment!r}, color_faithful={self.color_faithful}, "
            f"gray_spread={self.gray_spread})"
        )

    def _work_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """``shape`` scaled down so its long side is at most ``texture_size``."""
        if self.texture_size is None or max(shape) <= self.texture_size:
            return shape
        scale = self.texture_size / max(shape)
        return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))

    def _texture(
        self, shape: tuple[int, int], rng: np.random.Generator, gray: bool
    ) -> tuple[np.ndarray, Params]:
        work = self._work_shape(shape)
        if self.texture_dir is None:
            tex, params = procedural_texture(work, rng)
        else:
            if self._files is None:
                self._files = list_images(self.texture_dir)
            path = self._files[int(rng.integers(len(self._files)))]
            decoded = decode_image(path)
            if decoded.dtype != np.uint8:
                decoded = image_to_float(decoded)
            # Augmented at the decoded size, so geometric transforms never stretch the crop.
            decoded, _, seed = apply_pipeline(self._pipeline, rng, decoded)
            # Cropped and resized at the decoded precision, then converted (data_synthesis.io).
            tex, crop = random_crop_resize(decoded, work, rng)
            tex = image_to_float(tex)
            rel = path.relative_to(self.texture_dir).as_posix()
            params = {"texture": "file", "texture_file": rel, **crop, "augment_seed": seed}
        if gray:
            tex = to_luminance(tex)
        if work != shape:
            # One 8-bit RGB resize is ~10x cheaper than three float planes, and a texture loses
            # nothing visible at 1/255 steps (sources are 8-bit images anyway).
            tex8 = np.rint(np.clip(tex, 0.0, 1.0) * 255.0).astype(np.uint8)
            tex = image_to_float(resize_image(tex8, shape))
        return tex, params

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> Anomaly:
        """Synthesise one noise-texture anomaly; see the class docstring."""
        img = as_image(image)
        shape = (img.shape[0], img.shape[1])
        mask, mask_params = perlin_mask_with_params(
            shape, rng, self.min_scale_exp, self.max_scale_exp, self.threshold
        )
        gray = self.color_faithful and is_grayscale(img, self.gray_spread)
        texture, texture_params = self._texture(shape, rng, gray)
        opacity = float(rng.uniform(*self.opacity))
        # In-place whole-array arithmetic on the texture (a fresh array owned here) is cheaper
        # than gathering the masked pixels; copyto keeps everything outside the mask
        # bit-identical to the input.
        blend = np.subtract(texture, img, out=texture)
        blend *= np.float32(opacity)
        blend += img
        np.clip(blend, 0.0, 1.0, out=blend)
        out = img.copy()
        np.copyto(out, blend, where=mask[..., None] > 0)
        params = {
            "generator": self.name,
            "opacity": opacity,
            "beta": 1.0 - opacity,
            "grayscale": gray,
            **mask_params,
            **texture_params,
        }
        return Anomaly(image=out, mask=mask, params=params)
