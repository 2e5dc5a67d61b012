"""Image loading, listing and resizing with the package's float32 (H, W, 3) [0, 1] convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
)
# Single-channel integer modes whose values span 16 bits (16-bit PNG opens as "I;16" or "I").
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _to_float_rgb(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any common mode to float32 (H, W, 3) in [0, 1]."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(img).astype(np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if mode == "F":
        # Float images carry no scale; assume they already follow the [0, 1] convention.
        gray = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    has_alpha = mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        # Composite on black: transparent areas carry no content, so they read as zeros instead
        # of whatever colour happens to be stored under alpha = 0.
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        return np.ascontiguousarray(rgba[..., :3] * rgba[..., 3:4])
    rgb = img if mode == "RGB" else img.convert("RGB")
    return np.asarray(rgb, dtype=np.float32) / 255.0


# 8-bit modes without alpha that convert to RGB losslessly before resizing.
_EIGHT_BIT_OPAQUE = frozenset({"RGB", "L", "CMYK", "YCbCr"})


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as float32 (H, W, 3) in [0, 1], optionally resized.

    Grayscale is replicated to three channels, palette images are expanded, images with an alpha
    channel are composited on black, and 16-bit grayscale is scaled by 1/65535.

    Args:
        path: Image file.
        size: resize to (height, width) with :func:`resize_image`'s filter. 8-bit opaque images
            are resized before the float conversion (one uint8 resize instead of three float
            planes, several times faster; values differ from resizing the float image by at most
            one grey level).

    Returns:
        float32 array (H, W, 3) in [0, 1].

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file cannot be decoded (not an image, truncated, corrupt); the message
            names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            # Image.open only parses the header; load() forces the full decode so truncated
            # files fail here, with the file name, rather than later inside numpy.
            img.load()
            if size is None:
                return _to_float_rgb(img)
            if img.mode in _EIGHT_BIT_OPAQUE or (
                img.mode == "P" and "transparency" not in img.info
            ):
                rgb = np.asarray(img.convert("RGB"))
                return resize_image(rgb, size).astype(np.float32) / 255.0
            return resize_image(_to_float_rgb(img), size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """List image files in ``folder``, sorted for a stable, seed-reproducible order.

    Extensions (case-insensitive): png, jpg, jpeg, bmp, tif, tiff, webp. Hidden files (names
    starting with ".", e.g. macOS "._x.jpg" resource forks) are skipped.

    Args:
        folder: Directory to search.
        recursive: Also search all sub-directories.

    Returns:
        Sorted list of image paths.

    Raises:
        FileNotFoundError: If ``folder`` is not an existing directory.
        ValueError: If no image file is found.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(
        p
        for p in candidates
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
    if not files:
        where = "or its sub-folders " if recursive else ""
        raise ValueError(
            f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {root} {where}".strip()
        )
    return files


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image with Pillow's bilinear filter (antialiased when shrinking).

    Args:
        img: (H, W) or (H, W, C) array, uint8 or floating point.
        size: Target (height, width) - numpy order, not Pillow's (width, height).

    Returns:
        A new resized array: uint8 for uint8 input, float32 otherwise.
    """
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive (height, width), got {size}")
    arr = np.asarray(img)
    if arr.shape[:2] == (height, width):
        return arr.copy() if arr.dtype == np.uint8 else arr.astype(np.float32)
    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] in (3, 4)):
        return np.asarray(Image.fromarray(arr).resize((width, height), Image.Resampling.BILINEAR))
    # Float (or uncommon channel count): resize each channel as a 32-bit float image so no
    # precision is lost to uint8 rounding.
    planes = arr.astype(np.float32)[..., None] if arr.ndim == 2 else arr.astype(np.float32)
    out = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(planes[..., c])).resize(
                    (width, height), Image.Resampling.BILINEAR
                )
            )
            for c in range(planes.shape[2])
        ],
        axis=-1,
    )
    out = out[..., 0] if arr.ndim == 2 else out
    if arr.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out


# The largest value of each single-band integer mode, so a threshold can be a fraction of it.
_BAND_MAX = {"1": 1.0, "L": 255.0, "F": 1.0, **{m: 65535.0 for m in _SIXTEEN_BIT_MODES}}
# Formats whose compression leaves values near, not at, 0 and the maximum.
_LOSSY_FORMATS = frozenset({"JPEG", "MPO", "WEBP"})
# The threshold a lossy mask gets when none is given: half of the format's maximum.
LOSSY_MASK_THRESHOLD = 0.5


def mask_values(img: Image.Image) -> tuple[np.ndarray, float]:
    """Per-pixel strength of a decoded mask image and the largest value its format can hold.

    The strength of a pixel is its largest colour channel (grey value, palette colour, R/G/B),
    scaled by its opacity when the image has an alpha channel: a transparent pixel is empty,
    whatever colour is stored under it.
    """
    mode = img.mode
    if mode in _BAND_MAX:
        return np.asarray(img).astype(np.float32), _BAND_MAX[mode]
    if mode in {"LA", "La", "PA", "RGBA", "RGBa"} or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        return rgba[..., :3].max(axis=2) * (rgba[..., 3] / 255.0), 255.0
    rgb = img if mode == "RGB" else img.convert("RGB")
    return np.asarray(rgb, dtype=np.float32).max(axis=2), 255.0


def read_mask(
    path: str | Path,
    threshold: float | None = None,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Read a ground-truth or synthetic mask file as a boolean (H, W) array (True = anomalous).

    The one rule by which every part of the package reads a mask: a pixel is anomalous where
    any of its channels is non-zero, whatever the encoding (0/1 or 0/255 grey, a colour on
    black, a palette, 16-bit, with or without alpha; see :func:`mask_values`). Soft masks take
    ``threshold``: a pixel is anomalous where its value exceeds that fraction of the format's
    maximum (0.5: above 127 in an 8-bit file). JPEG-like files cannot hold exact zeros around
    a shape, so without a threshold they are cut at half (:data:`LOSSY_MASK_THRESHOLD`).

    Args:
        path: mask file.
        threshold: fraction in [0, 1) of the format's maximum; None for any non-zero value.
        shape: expected (H, W), usually the image's; checked when given.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be decoded, ``threshold`` is outside [0, 1), or the mask's
            size differs from ``shape``; the message names the file.
    """
    path = Path(path)
    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise ValueError(f"mask threshold must be in [0, 1) or None, got {threshold!r}")
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            values, top = mask_values(img)
            lossy = img.format in _LOSSY_FORMATS
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read mask {path}: {exc}") from exc
    if threshold is None and lossy:
        threshold = LOSSY_MASK_THRESHOLD
    mask = values > (threshold or 0.0) * top
    if shape is not None and mask.shape != tuple(shape[:2]):
        raise ValueError(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]}, its image is {shape[1]}x{shape[0]}"
        )
    return mask
