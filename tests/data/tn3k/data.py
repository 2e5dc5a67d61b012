"""Writes a tiny TN3K in its distributed layout (run as a script or call ``write``).

``<root>/test-image/<nnnn>.jpg`` (grey ultrasound-like, sizes varying) with
``<root>/test-mask/<nnnn>.jpg`` (grey JPEG masks: values near, not at, 0 and 255), plus
``trainval-image`` / ``trainval-mask`` and ``tn3k-trainval-fold0.json`` as released. Each image
has one dark nodule in :func:`lesion_box`. Deterministic per seed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def image_size(index: int) -> tuple[int, int]:
    """(height, width) of image ``index``."""
    return 32 + (5 * index) % 14, 38 + (3 * index) % 10


def lesion_box(index: int) -> tuple[int, int, int, int]:
    """Rows ``y0:y1`` and columns ``x0:x1`` of image ``index``'s nodule."""
    height, width = image_size(index)
    y0, x0 = 6 + index % 5, 8 + (2 * index) % 7
    return y0, y0 + height // 3, x0, x0 + width // 3


def _write_split(folder: Path, split: str, num: int, rng: np.random.Generator) -> None:
    (folder / f"{split}-image").mkdir(parents=True, exist_ok=True)
    (folder / f"{split}-mask").mkdir(parents=True, exist_ok=True)
    for i in range(num):
        height, width = image_size(i)
        y0, y1, x0, x1 = lesion_box(i)
        img = 0.45 + rng.normal(0, 0.05, (height, width))
        img[y0:y1, x0:x1] = 0.15
        mask = np.zeros((height, width), np.uint8)
        mask[y0:y1, x0:x1] = 255
        gray = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(gray).save(folder / f"{split}-image" / f"{i:04d}.jpg")
        Image.fromarray(mask).save(folder / f"{split}-mask" / f"{i:04d}.jpg")


def write(root: Path, num_test: int = 10, num_trainval: int = 4, seed: int = 0) -> Path:
    """Writes ``num_test`` test and ``num_trainval`` train/val pairs and the fold JSON."""
    rng = np.random.default_rng(seed)
    _write_split(root, "test", num_test, rng)
    _write_split(root, "trainval", num_trainval, rng)
    half = num_trainval // 2
    fold = {"train": list(range(half)), "val": list(range(half, num_trainval))}
    (root / "tn3k-trainval-fold0.json").write_text(json.dumps(fold))
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "tn3k_tiny")))
