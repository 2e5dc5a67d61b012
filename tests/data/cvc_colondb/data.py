"""Writes a tiny CVC-ColonDB in its distributed layout (run as a script or call ``write``).

``<root>/images/<n>.png`` (RGB, one size for all, as in the real set's 574x500) with
``<root>/masks/<n>.png`` (grey 0/255), n = 1..num. Each frame has one polyp in
:func:`lesion_box`. Deterministic per seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 40, 46


def lesion_box(index: int) -> tuple[int, int, int, int]:
    """Rows ``y0:y1`` and columns ``x0:x1`` of the polyp of frame ``index`` (0-based)."""
    y0, x0 = 6 + (2 * index) % 9, 4 + index % 13
    return y0, y0 + 10, x0, x0 + 16


def write(root: Path, num: int = 11, seed: int = 0) -> Path:
    """Writes frames ``1..num``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(num):
        y0, y1, x0, x1 = lesion_box(i)
        img = np.array([0.7, 0.45, 0.4]) + rng.normal(0, 0.03, (HEIGHT, WIDTH, 3))
        img[y0:y1, x0:x1] = [0.85, 0.55, 0.5]
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[y0:y1, x0:x1] = 255
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(
            root / "images" / f"{i + 1}.png"
        )
        Image.fromarray(mask).save(root / "masks" / f"{i + 1}.png")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "cvc_colondb_tiny")))
