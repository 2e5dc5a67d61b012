"""Writes a tiny EndoTect 2020 segmentation test set (run as a script or call ``write``).

``<root>/images/<id>.jpg`` with ``<root>/masks/<id><mask_ext>`` (grey 0/255; ``.jpg`` as in the
Kvasir-SEG-style release, ``.png`` as in the re-encoded copies the zero-shot code reads), ids
like the HyperKvasir ones (UUID-style). Each image has one polyp in :func:`lesion_box`.
Deterministic per seed.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
from PIL import Image


def image_ids(num: int, seed: int = 0) -> list[str]:
    """The written ids, in writing order (not sorted)."""
    rng = np.random.default_rng(seed + 1)
    return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(num)]


def image_size(index: int) -> tuple[int, int]:
    """(height, width) of image ``index``."""
    return 34 + (3 * index) % 11, 40 + (7 * index) % 9


def lesion_box(index: int) -> tuple[int, int, int, int]:
    """Rows ``y0:y1`` and columns ``x0:x1`` of image ``index``'s polyp."""
    height, width = image_size(index)
    y0, x0 = 3 + index % 8, 5 + (3 * index) % 10
    return y0, y0 + height // 3, x0, x0 + width // 3


def write(root: Path, num: int = 7, mask_ext: str = ".jpg", seed: int = 0) -> Path:
    """Writes ``num`` image/mask pairs."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(image_ids(num, seed)):
        height, width = image_size(i)
        y0, y1, x0, x1 = lesion_box(i)
        img = np.array([0.75, 0.45, 0.4]) + rng.normal(0, 0.03, (height, width, 3))
        img[y0:y1, x0:x1] = [0.9, 0.65, 0.55]
        mask = np.zeros((height, width), np.uint8)
        mask[y0:y1, x0:x1] = 255
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(
            root / "images" / f"{image_id}.jpg"
        )
        Image.fromarray(mask).save(root / "masks" / f"{image_id}{mask_ext}")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "endo_tiny")))
