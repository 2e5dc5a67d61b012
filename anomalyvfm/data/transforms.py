"""Resizing of images and masks to the model and evaluation resolutions.

Two evaluation geometries are supported: ``squash`` (the method's: the whole image resized to a
square, aspect ratio not kept) and ``center_crop`` (the shorter side resized to the target, then
the central square cut out: the protocol of many full-shot benchmarks). Masks always go through
the same geometry as their image, so an anomaly map of the model input lines up with its mask.
Images are resized by the package's one rule (:mod:`data_synthesis.io`), the one training and
synthesis use; masks by nearest neighbour, or by the reference evaluation's antialiased
bilinear resize cut at a threshold (:func:`data_synthesis.io.resize_mask`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from data_synthesis.io import MaskResize, image_to_float, resize_image, resize_mask

Resize = Literal["squash", "center_crop"]


def center_square(height: int, width: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the central square of an ``height x width`` image."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def _crop_center(array: np.ndarray) -> np.ndarray:
    top, left, side = center_square(*array.shape[:2])
    return array[top : top + side, left : left + side]


def image_to_tensor(image: np.ndarray, size: int | None, resize: Resize = "squash") -> Tensor:
    """Decoded (H, W, 3) pixels (uint8, or float in [0, 1]) -> float (3, size, size) tensor.

    ``squash`` resizes the whole image (no crop); ``center_crop`` cuts the central square first,
    which equals resizing the shorter side to ``size`` and cropping the centre. Resizing is the
    package's one rule (:func:`data_synthesis.io.resize_image`, at the decoded precision), then
    the float conversion; ``size=None`` keeps the image's own size.
    """
    if resize == "center_crop":
        image = _crop_center(image)
    if size is not None and image.shape[:2] != (size, size):
        image = resize_image(image, (size, size))
    return torch.from_numpy(np.ascontiguousarray(image_to_float(image).transpose(2, 0, 1)))


def mask_to_tensor(
    mask: np.ndarray,
    size: int | None,
    resize: Resize = "squash",
    method: MaskResize = "nearest",
    threshold: float = 0.5,
) -> Tensor:
    """(H, W) {0, 1} array -> (size, size) float tensor of {0, 1}.

    ``method`` and ``threshold`` choose how the mask is resized (see
    :func:`data_synthesis.io.resize_mask`); ``size=None`` keeps the mask's own resolution
    (after the ``center_crop``, if chosen).
    """
    if resize == "center_crop":
        mask = _crop_center(mask)
    if size is None:
        inside = np.asarray(mask) > 0.5
    else:
        inside = resize_mask(mask, (size, size), method, threshold)
    return torch.from_numpy(np.ascontiguousarray(inside).astype(np.float32))
