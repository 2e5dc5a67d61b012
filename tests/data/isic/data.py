"""Writes a tiny ISIC 2016 part-1 split in the challenge layout (run as a script or ``write``).

``<root>/ISBI2016_ISIC_Part1_Test_Data/ISIC_<7 digits>.jpg`` (sizes varying, as in the real set)
and ``<root>/ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_<7 digits>_Segmentation.png`` (grey 0/255);
``split="Training"`` writes the training folders. Ids are sparse, as in the real set. Each image
has one dark lesion in :func:`lesion_box`. Deterministic per seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def image_ids(num: int) -> list[int]:
    """The written ids, sparse and increasing."""
    return [3 + 7 * i + i * i for i in range(num)]


def image_size(index: int) -> tuple[int, int]:
    """(height, width) of image ``index``."""
    return 32 + (5 * index) % 13, 40 + (3 * index) % 9


def lesion_box(index: int) -> tuple[int, int, int, int]:
    """Rows ``y0:y1`` and columns ``x0:x1`` of image ``index``'s lesion."""
    height, width = image_size(index)
    y0, x0 = 5 + index % 4, 7 + index % 5
    return y0, y0 + height // 3, x0, x0 + width // 3


def write(root: Path, num: int = 9, split: str = "Test", seed: int = 0) -> Path:
    """Writes ``num`` images and masks of ``split`` (``Test`` or ``Training``)."""
    rng = np.random.default_rng(seed)
    images = root / f"ISBI2016_ISIC_Part1_{split}_Data"
    masks = root / f"ISBI2016_ISIC_Part1_{split}_GroundTruth"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(image_ids(num)):
        height, width = image_size(i)
        y0, y1, x0, x1 = lesion_box(i)
        img = rng.uniform(0.6, 0.8, 3) + rng.normal(0, 0.02, (height, width, 3))
        img[y0:y1, x0:x1] = rng.uniform(0.2, 0.35, 3)
        mask = np.zeros((height, width), np.uint8)
        mask[y0:y1, x0:x1] = 255
        stem = f"ISIC_{image_id:07d}"
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(images / f"{stem}.jpg")
        Image.fromarray(mask).save(masks / f"{stem}_Segmentation.png")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "isic_tiny")))
