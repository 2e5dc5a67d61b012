"""Resizing of images and masks to the model and evaluation resolutions."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def image_to_tensor(image: np.ndarray, size: int | None) -> Tensor:
    """(H, W, 3) float [0, 1] array -> (3, size, size) tensor, squash-resized (no crop)."""
    if size is not None and image.shape[:2] != (size, size):
        pil = Image.fromarray(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8))
        image = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


def mask_to_tensor(mask: np.ndarray, size: int | None) -> Tensor:
    """(H, W) {0, 1} array -> (size, size) float tensor, nearest-neighbour resized."""
    if size is not None and mask.shape != (size, size):
        pil = Image.fromarray((mask > 0.5).astype(np.uint8) * 255)
        mask = np.asarray(pil.resize((size, size), Image.Resampling.NEAREST)) > 127
    return torch.from_numpy((np.asarray(mask) > 0.5).astype(np.float32))
