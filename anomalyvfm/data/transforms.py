"""Resizing of images and masks to the model and evaluation resolutions.

Two evaluation geometries are supported: ``squash`` (the method's: the whole image resized to a
square, aspect ratio not kept) and ``center_crop`` (the shorter side resized to the target, then
the central square cut out: the protocol of many full-shot benchmarks). Masks always go through
the same geometry as their image, so an anomaly map of the model input lines up with its mask.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

Resize = Literal["squash", "center_crop"]


def center_square(height: int, width: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the central square of an ``height x width`` image."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def _crop_center(array: np.ndarray) -> np.ndarray:
    top, left, side = center_square(*array.shape[:2])
    return array[top : top + side, left : left + side]


def image_to_tensor(image: np.ndarray, size: int | None, resize: Resize = "squash") -> Tensor:
    """(H, W, 3) float [0, 1] array -> (3, size, size) tensor.

    ``squash`` resizes the whole image (no crop); ``center_crop`` cuts the central square first,
    which equals resizing the shorter side to ``size`` and cropping the centre.
    """
    if resize == "center_crop":
        image = _crop_center(image)
    if size is not None and image.shape[:2] != (size, size):
        pil = Image.fromarray(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8))
        image = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


def mask_to_tensor(mask: np.ndarray, size: int | None, resize: Resize = "squash") -> Tensor:
    """(H, W) {0, 1} array -> (size, size) float tensor, nearest-neighbour resized.

    ``size=None`` keeps the mask's own resolution (after the ``center_crop``, if chosen).
    """
    if resize == "center_crop":
        mask = _crop_center(mask)
    if size is not None and mask.shape != (size, size):
        pil = Image.fromarray((mask > 0.5).astype(np.uint8) * 255)
        mask = np.asarray(pil.resize((size, size), Image.Resampling.NEAREST)) > 127
    return torch.from_numpy(np.ascontiguousarray(np.asarray(mask) > 0.5).astype(np.float32))
