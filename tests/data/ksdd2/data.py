"""Writes a tiny KolektorSDD2 as distributed (run as a script or call ``write``).

``{train,test}/<id>.png`` (colour, tall like the real ~230x630 images) with a ``<id>_GT.png``
mask (0/255) beside every image, all zero for defect-free surfaces. Deterministic per seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# split -> (first id, number of images, ids that are defective)
SPLITS: dict[str, tuple[int, int, set[int]]] = {
    "train": (10000, 3, {10001}),
    "test": (20000, 6, {20002, 20005}),
}
HEIGHT, WIDTH = 64, 24


def write(root: Path, seed: int = 0) -> Path:
    """Writes ``train`` and ``test`` of ``SPLITS`` under ``root``."""
    rng = np.random.default_rng(seed)
    for split, (first, count, defective) in SPLITS.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for ident in range(first, first + count):
            img = rng.integers(80, 130, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            if ident in defective:
                y, x = int(rng.integers(0, HEIGHT - 5)), int(rng.integers(0, WIDTH - 5))
                img[y : y + 5, x : x + 5] = 240
                mask[y : y + 5, x : x + 5] = 255
            Image.fromarray(img).save(root / split / f"{ident}.png")
            Image.fromarray(mask).save(root / split / f"{ident}_GT.png")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "ksdd2_tiny")))
