"""The package's one image I/O path: listing, decoding, resizing (and reading masks).

Every part of the package reads images through this module: online synthesis from normal
images, the on-disk synthetic training sets, the offline pipeline, previews, the filter and
every evaluation dataset. The rules, decided once:

* **Extensions**: :data:`IMAGE_EXTENSIONS`, matched case-insensitively; hidden files (names
  starting with ".", e.g. macOS "._x.jpg" resource forks) are never images.
* **Order**: :func:`list_images` sorts by the path relative to the listed folder, component by
  component, comparing names by code point (plain ``sorted``: ``B.png`` before ``a.png``,
  ``10.png`` before ``2.png``). It depends on the names alone, never on the file system, so a
  file list, and every sample drawn from it by index, is reproducible.
* **Decoding** (:func:`decode_image`): three channels, always. Grey is replicated, palettes are
  expanded, an alpha channel is composited on black (a transparent pixel carries no content),
  16-bit grey is scaled by 1/65535. EXIF orientation is not applied: pixels are used as stored,
  the way masks and the file-header size checks see them, so an image and its mask always line
  up. 8-bit sources without alpha decode to uint8, everything else to float32 in [0, 1].
* **Resizing** (:func:`resize_image`): Pillow's bilinear filter (antialiased when shrinking) at
  the decoded precision: uint8 images in uint8 (one pass, several times faster than three float
  planes, within one grey level of the float result and unbiased), float images per channel in
  float32. Resizing happens before the float conversion (:func:`image_to_float`), so a file
  gives the same pixels whichever part of the package loads it at a given size.
* **Masks** keep their own rules: :func:`read_mask` (any non-zero channel is anomalous) and
  :func:`resize_mask` (nearest neighbour; the reference evaluation's antialiased bilinear
  resize cut at 0.5 on request).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}
)
# Single-channel integer modes whose values span 16 bits (16-bit PNG opens as "I;16" or "I").
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Errors Pillow raises for files that are not (complete, sane) images.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is a file with an image extension and not a hidden file."""
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()
    )


def list_images(
    folder: str | Path, recursive: bool = True, *, allow_empty: bool = False
) -> list[Path]:
    """Image files of ``folder`` in the package's one order (see the module docstring).

    Args:
        folder: directory to search.
        recursive: also search all sub-folders.
        allow_empty: return an empty list instead of raising when no image is found (readers
            with their own message about the layout).

    Returns:
        The image paths, sorted by their path relative to ``folder``.

    Raises:
        FileNotFoundError: If ``folder`` is not an existing directory.
        ValueError: If no image file is found and ``allow_empty`` is False.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(
        (p for p in candidates if is_image_file(p)), key=lambda p: p.relative_to(root).parts
    )
    if not files and not allow_empty:
        where = "or its sub-folders " if recursive else ""
        raise ValueError(
            f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {root} {where}".strip()
        )
    return files


def decode_pil(img: Image.Image) -> np.ndarray:
    """(H, W, 3) pixels of a loaded PIL image by the one decoding rule of :func:`decode_image`:
    uint8 for 8-bit opaque modes, else float32 in [0, 1]."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.clip(np.asarray(img).astype(np.float32) / 65535.0, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        # Float images carry no scale; assume they already follow the [0, 1] convention.
        gray = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        # Composite on black: transparent areas carry no content, so they read as zeros instead
        # of whatever colour happens to be stored under alpha = 0.
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        return np.ascontiguousarray(rgba[..., :3] * rgba[..., 3:4])
    return np.asarray(img if mode == "RGB" else img.convert("RGB"))


def decode_image(path: str | Path) -> np.ndarray:
    """The one image decoder: a file as (H, W, 3) pixels at their own precision.

    uint8 for 8-bit sources without alpha (RGB, grey, palette, CMYK, YCbCr, bilevel); float32 in
    [0, 1] for 16-bit grey, float images and images with an alpha channel (composited on black).
    Pixels are used as stored (EXIF orientation is not applied). Use :func:`load_image` for the
    float32 [0, 1] convention, resized or not.

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
            return decode_pil(img)
    except _DECODE_ERRORS as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def image_to_float(image: np.ndarray) -> np.ndarray:
    """Decoded pixels as float32 in [0, 1]: uint8 divided by 255, float32 kept as is."""
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32, copy=False)


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as float32 (H, W, 3) in [0, 1], optionally resized.

    :func:`decode_image`, then :func:`resize_image` at the decoded precision (8-bit images in
    uint8), then :func:`image_to_float`.

    Args:
        path: image file.
        size: resize to (height, width); None keeps the file's size.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file cannot be decoded; the message names the file.
    """
    image = decode_image(path)
    if size is not None:
        image = resize_image(image, size)
    return image_to_float(image)


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image with Pillow's bilinear filter (antialiased when shrinking).

    uint8 images (grey, RGB, RGBA) are resized in uint8, anything else per channel in float32,
    so no precision is lost to rounding.

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
        pil = Image.fromarray(np.ascontiguousarray(arr))
        return np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
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


MaskResize = Literal["nearest", "bilinear_antialias"]


def resize_mask(
    mask: np.ndarray,
    size: tuple[int, int],
    method: MaskResize = "nearest",
    threshold: float = 0.5,
) -> np.ndarray:
    """A (H, W) mask (values above 0.5 inside) resized to ``size``, boolean.

    ``nearest`` (the default everywhere) gives each output pixel the source pixel at its
    centre: a defect thinner than the scale factor is kept or lost depending on where it lies.
    ``bilinear_antialias`` is the AnomalyVFM
    reference code's evaluation rule: the 0/1 mask shrunk with an antialiased bilinear filter
    (torch's, as the reference's ``torchvision`` resize on tensors), then values above
    ``threshold`` are inside. Defects narrower than about one output pixel's footprint average
    below 0.5 and vanish.

    Args:
        mask: (H, W) array, boolean or numeric.
        size: Target (height, width).
        method: ``nearest`` or ``bilinear_antialias``.
        threshold: the bilinear rule's cut (exclusive); unused by ``nearest``.
    """
    height, width = size
    inside = np.asarray(mask) > 0.5
    if inside.shape == (height, width):
        return inside
    if method == "bilinear_antialias":
        import torch
        from torch.nn import functional as F

        source = torch.from_numpy(inside.astype(np.float32))[None, None]
        shrunk = F.interpolate(
            source, (height, width), mode="bilinear", align_corners=False, antialias=True
        )
        return shrunk[0, 0].numpy() > threshold
    pil = Image.fromarray(inside.astype(np.uint8) * 255)
    return np.asarray(pil.resize((width, height), Image.Resampling.NEAREST)) > 127


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
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
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
    except _DECODE_ERRORS as exc:
        raise ValueError(f"cannot read mask {path}: {exc}") from exc
    if threshold is None and lossy:
        threshold = LOSSY_MASK_THRESHOLD
    mask = values > (threshold or 0.0) * top
    if shape is not None and mask.shape != tuple(shape[:2]):
        raise ValueError(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]}, its image is {shape[1]}x{shape[0]}"
        )
    return mask
