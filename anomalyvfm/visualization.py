"""Image grids: image | ground truth | anomaly map, one row per sample."""

from __future__ import annotations

import numpy as np
from PIL import Image
from torch import Tensor


def _heat(values: np.ndarray) -> np.ndarray:
    """A [0, 1] map to an RGB heat map (black-red-yellow-white), no matplotlib needed."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    return np.clip(np.concatenate([3 * v, 3 * v - 1, 3 * v - 2], axis=-1), 0.0, 1.0)


def anomaly_grid(images: Tensor, masks: Tensor, maps: Tensor, pad: int = 2) -> Image.Image:
    """Rows of image | ground truth | anomaly map (normalised over the whole grid).

    Args:
        images: (N, 3, H, W) in [0, 1].
        masks: (N, H, W) in {0, 1}.
        maps: (N, H, W) anomaly scores.
        pad: white border between tiles, in pixels.
    """
    imgs = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    gts = masks.detach().float().cpu().numpy()
    amaps = maps.detach().float().cpu().numpy()
    lo, hi = float(amaps.min()), float(amaps.max())
    amaps = (amaps - lo) / (hi - lo + 1e-12)
    n, h, w = gts.shape
    canvas = np.ones((n * (h + pad) + pad, 3 * (w + pad) + pad, 3), np.float32)
    for i in range(n):
        y = pad + i * (h + pad)
        tiles = [
            imgs[i],
            np.repeat(gts[i][..., None], 3, -1),
            0.5 * imgs[i] + 0.5 * _heat(amaps[i]),
        ]
        for j, tile in enumerate(tiles):
            x = pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = tile
    return Image.fromarray((canvas * 255 + 0.5).astype(np.uint8))


def heatmap_overlay(image: np.ndarray, amap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``image`` (H, W, 3) in [0, 1] blended with the heat map of ``amap`` (H, W) as uint8 RGB.

    The colour scale is fixed: score 0 is black and 1 is white, whatever the map's own range, so
    overlays of different images compare (a normal image stays dark).
    """
    blend = (1.0 - alpha) * np.asarray(image, np.float32) + alpha * _heat(amap)
    return (np.clip(blend, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
