"""Writes a tiny generic folder dataset (run as a script or call ``write``).

``normal/*`` and ``abnormal/*`` images (PNG and JPEG mixed) and ``masks/<stem><suffix>.png``
(0/255) for every anomalous image. Deterministic for a given seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

NUM_NORMAL, NUM_ABNORMAL, SIZE = 4, 3, 32


def write(root: Path, mask_suffix: str = "_mask", seed: int = 0) -> Path:
    """Writes ``root/{normal,abnormal,masks}``."""
    rng = np.random.default_rng(seed)
    for sub in ("normal", "abnormal", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(NUM_NORMAL):
        img = rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "normal" / f"ok_{i:02d}{'.png' if i % 2 else '.jpg'}")
    for i in range(NUM_ABNORMAL):
        img = rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        y, x = rng.integers(0, SIZE - 5, 2)
        img[y : y + 5, x : x + 5] = 255
        mask[y : y + 5, x : x + 5] = 255
        Image.fromarray(img).save(root / "abnormal" / f"defect_{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"defect_{i:02d}{mask_suffix}.png")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "folder_tiny")))
