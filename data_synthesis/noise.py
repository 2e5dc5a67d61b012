"""DRAEM-style noise-texture anomalies: a texture blended into the image under a Perlin mask."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from data_synthesis.base import Anomaly, AnomalyGeneratorBase, as_image, rotate_hue
from data_synthesis.io import decode_image, image_to_float, list_images, resize_image
from data_synthesis.perlin import fast_perlin_noise, perlin_mask_with_params

Params = dict[str, Any]
# A texture augmentation: (texture, rng) -> (augmented texture, record of its parameters).
Augment = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, Params]]
PROCEDURAL_KINDS = ("perlin_two_tone", "perlin_color", "stripes", "gradient_grain")
# DRAEM applies three distinct augmentations out of its list to every texture.
_AUGMENTS_PER_TEXTURE = 3
# Smallest crop side, as a fraction of the largest crop with the image's aspect ratio.
_MIN_CROP_FRACTION = 0.5


def _gamma(tex: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    gamma = float(rng.uniform(0.5, 2.0))
    # An earlier augmentation (brightness) may push values below 0, and a fractional power of a
    # negative number is NaN: one NaN pixel in a batch would turn every weight into NaN.
    return np.power(np.maximum(tex, 0.0), np.float32(gamma)), {"gamma": gamma}


def _brightness(tex: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    mul, add = float(rng.uniform(0.8, 1.2)), float(rng.uniform(-0.12, 0.12))
    return tex * np.float32(mul) + np.float32(add), {"mul": mul, "add": add}


def _hue_saturation(tex: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    hue, sat = float(rng.uniform(-90.0, 90.0)), float(rng.uniform(0.5, 1.5))
    gray = tex.mean(axis=2, keepdims=True)
    return rotate_hue(gray + (tex - gray) * np.float32(sat), hue), {"hue": hue, "sat": sat}


def _solarize(tex: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    thr = float(rng.uniform(0.125, 0.5))
    return np.where(tex > thr, 1.0 - tex, tex), {"threshold": thr}


def _posterize(tex: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    levels = 2 ** int(rng.integers(2, 6))
    # Clip first: earlier augmentations may overshoot 1, which would add an extra level.
    return np.floor(np.clip(tex, 0.0, 1.0) * (levels - 1) + 0.5) / (levels - 1), {"levels": levels}


def _invert(tex: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    return 1.0 - tex, {}


def _autocontrast(tex: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    lo = tex.min(axis=(0, 1), keepdims=True)
    span = np.maximum(tex.max(axis=(0, 1), keepdims=True) - lo, 1e-6)
    return (tex - lo) / span, {}


AUGMENTATIONS: dict[str, Augment] = {
    "gamma": _gamma,
    "brightness": _brightness,
    "hue_saturation": _hue_saturation,
    "solarize": _solarize,
    "posterize": _posterize,
    "invert": _invert,
    "autocontrast": _autocontrast,
}


def augment_texture(tex: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Params]:
    """Apply three distinct random photometric augmentations (DRAEM's recipe), in random order.

    Args:
        tex: float32 (H, W, 3) in [0, 1].
        rng: Source of the choice and of each augmentation's parameters.

    Returns:
        Augmented texture clipped to [0, 1] and ``{name: params}`` in application order.
    """
    names = list(AUGMENTATIONS)
    chosen = rng.choice(len(names), size=_AUGMENTS_PER_TEXTURE, replace=False)
    record: Params = {}
    for i in chosen:
        tex, record[names[int(i)]] = AUGMENTATIONS[names[int(i)]](tex, rng)
    return np.clip(tex, 0.0, 1.0).astype(np.float32), record


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
    """Random 90-degree rotation, flip and aspect-preserving crop of ``tex``, resized to ``shape``.

    The crop has the target's aspect ratio (no stretching); its side is 50-100% of the largest
    such crop. The result keeps the texture's dtype (uint8 or float32).
    """
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    tex = np.rot90(tex, k)
    if flip:
        tex = tex[:, ::-1]
    src_h, src_w = tex.shape[:2]
    height, width = shape
    fit = min(src_h / height, src_w / width)
    frac = float(rng.uniform(_MIN_CROP_FRACTION, 1.0))
    crop_h = min(src_h, max(1, round(height * fit * frac)))
    crop_w = min(src_w, max(1, round(width * fit * frac)))
    y0 = int(rng.integers(src_h - crop_h + 1))
    x0 = int(rng.integers(src_w - crop_w + 1))
    out = resize_image(tex[y0 : y0 + crop_h, x0 : x0 + crop_w], shape)
    return out, {"rot90": k, "flip": flip, "crop": [y0, x0, crop_h, crop_w]}


class NoiseTextureGenerator(AnomalyGeneratorBase):
    """Blend a texture into the image under a thresholded Perlin mask (DRAEM).

    ``out = img`` outside the mask and ``(1 - opacity) * img + opacity * texture`` inside it, so
    ``opacity`` is the visibility of the texture (1: pasted as is; small: a faint tint). DRAEM's
    ``beta`` is ``1 - opacity``; both are recorded in ``params``.

    Args:
        texture_dir: Folder of texture images (e.g. the Describable Textures Dataset), searched
            recursively on first use. Each call loads one file at random, then rotates, flips,
            crops, resizes and photometrically augments it. When None, textures are generated
            procedurally (coloured Perlin noise, stripes, colour gradients with grain).
        opacity: Range of the texture visibility, drawn uniformly per call; within (0, 1].
        min_scale_exp: Smallest Perlin lattice exponent of the mask.
        max_scale_exp: Exclusive upper bound of the Perlin lattice exponent.
        threshold: Perlin noise threshold of the mask.
        texture_size: Textures are made (procedural) or cropped and augmented (files) at most
            this many pixels on their long side, then resized to the image. Texture detail is
            coarse anyway, and this keeps synthesis above 20 images/s per core at 768 px (see
            experiments/benchmarks/RESULTS.md). None works at the image's full size.
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
        # The sorted file list depends only on the folder, never on call order, so caching it
        # keeps outputs deterministic; the textures themselves are loaded per call.
        self._files: list[Path] | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(texture_dir={self.texture_dir!r}, opacity={self.opacity}, "
            f"min_scale_exp={self.min_scale_exp}, max_scale_exp={self.max_scale_exp}, "
            f"threshold={self.threshold}, texture_size={self.texture_size})"
        )

    def _work_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """``shape`` scaled down so its long side is at most ``texture_size``."""
        if self.texture_size is None or max(shape) <= self.texture_size:
            return shape
        scale = self.texture_size / max(shape)
        return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))

    def _texture(
        self, shape: tuple[int, int], rng: np.random.Generator
    ) -> tuple[np.ndarray, Params]:
        work = self._work_shape(shape)
        if self.texture_dir is None:
            tex, params = procedural_texture(work, rng)
        else:
            if self._files is None:
                self._files = list_images(self.texture_dir)
            path = self._files[int(rng.integers(len(self._files)))]
            # Cropped and resized at the decoded precision, then converted (data_synthesis.io).
            tex, crop = random_crop_resize(decode_image(path), work, rng)
            tex, augments = augment_texture(image_to_float(tex), rng)
            rel = path.relative_to(self.texture_dir).as_posix()
            params = {"texture": "file", "texture_file": rel, **crop, "augment": augments}
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
        texture, texture_params = self._texture(shape, rng)
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
            **mask_params,
            **texture_params,
        }
        return Anomaly(image=out, mask=mask, params=params)
