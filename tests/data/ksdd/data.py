"""Writes a tiny KolektorSDD as distributed (run as a script or call ``write``).

``kos<NN>/Part<k>.jpg`` (grayscale, tall like the real ~500x1250 commutator images) with a
``Part<k>_label.bmp`` mask (0/255) beside every image; the masks of defect-free parts are all
zero, as the dataset ships them. Deterministic for a given seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

FOLDERS = ("kos01", "kos02", "kos03")
PARTS = 8
DEFECTIVE = {("kos01", 5), ("kos02", 3), ("kos03", 0)}
HEIGHT, WIDTH = 60, 24


def write(root: Path, seed: int = 0) -> Path:
    """Writes ``FOLDERS`` x ``Part0..Part7`` under ``root``; ``DEFECTIVE`` parts get a crack."""
    rng = np.random.default_rng(seed)
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for part in range(PARTS):
            img = rng.integers(100, 150, (HEIGHT, WIDTH), dtype=np.uint8)
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            if (folder, part) in DEFECTIVE:
                y = int(rng.integers(5, HEIGHT - 15))
                img[y : y + 10, 10:13] = 20
                mask[y : y + 10, 10:13] = 255
            Image.fromarray(img).save(root / folder / f"Part{part}.jpg", quality=95)
            Image.fromarray(mask).save(root / folder / f"Part{part}_label.bmp")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "ksdd_tiny")))
