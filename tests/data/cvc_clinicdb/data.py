"""Writes a tiny CVC-ClinicDB in its official layout (run as a script or call ``write``).

``<root>/Original/<n>.tif`` (RGB frames, one size for all, as in the real set's 384x288) with
``<root>/Ground Truth/<n>.tif`` (grey 0/255), n = 1..num; ``mirror="PNG"`` writes the Kaggle
mirror's ``PNG/Original`` + ``PNG/Ground Truth`` with ``.png`` files instead. Each frame has
one polyp in :func:`lesion_box`. Deterministic per seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 36, 48


def lesion_box(index: int) -> tuple[int, int, int, int]:
    """Rows ``y0:y1`` and columns ``x0:x1`` of the polyp of frame ``index`` (0-based)."""
    y0, x0 = 4 + index % 6, 5 + (3 * index) % 11
    return y0, y0 + 12, x0, x0 + 14


def write(root: Path, num: int = 12, mirror: str | None = None, seed: int = 0) -> Path:
    """Writes frames ``1..num``; ``mirror="PNG"`` for the mirror's PNG sub-folder."""
    rng = np.random.default_rng(seed)
    base, ext = (root / mirror, ".png") if mirror else (root, ".tif")
    (base / "Original").mkdir(parents=True, exist_ok=True)
    (base / "Ground Truth").mkdir(parents=True, exist_ok=True)
    for i in range(num):
        y0, y1, x0, x1 = lesion_box(i)
        img = np.array([0.75, 0.4, 0.35]) + rng.normal(0, 0.03, (HEIGHT, WIDTH, 3))
        img[y0:y1, x0:x1] = [0.9, 0.6, 0.5]
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[y0:y1, x0:x1] = 255
        rgb = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(base / "Original" / f"{i + 1}{ext}")
        Image.fromarray(mask).save(base / "Ground Truth" / f"{i + 1}{ext}")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "cvc_clinicdb_tiny")))
