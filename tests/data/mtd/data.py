"""Writes a tiny dataset in MTD's native layout (run as a script or call ``write``).

``<root>/MT_<Type>/Imgs/<id>.jpg`` (grayscale, sizes varying per image as in the real set) with
a same-name ``<id>.png`` mask (0/255) beside each; the ``MT_Free`` masks are all zero, as MTD
ships them. Defective tiles carry a dark blob whose mask is written. Deterministic per seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Type -> number of images; small, but distinct per type so that counts are checkable.
COUNTS: dict[str, int] = {"Blowhole": 3, "Break": 2, "Crack": 2, "Fray": 1, "Uneven": 2, "Free": 4}


def _tile(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    yy = np.linspace(0.0, 1.0, height)[:, None]
    img = 0.45 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 3) * yy) + np.zeros((1, width))
    return np.clip(img + rng.normal(0, 0.02, (height, width)), 0, 1)


def write(root: Path, counts: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Writes ``root/MT_<Type>/Imgs/{<id>.jpg, <id>.png}`` for each type in ``counts``."""
    rng = np.random.default_rng(seed)
    for defect, num in (counts or COUNTS).items():
        folder = root / f"MT_{defect}" / "Imgs"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(num):
            height, width = (int(v) for v in rng.integers(24, 48, 2))
            img = _tile(rng, height, width)
            mask = np.zeros((height, width), np.uint8)
            if defect != "Free":
                s = int(rng.integers(4, 10))
                y, x = int(rng.integers(0, height - s)), int(rng.integers(0, width - s))
                img[y : y + s, x : x + s] = 0.05
                mask[y : y + s, x : x + s] = 255
            stem = f"exp{i % 3}_num_{defect.lower()}{i:03d}"
            Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{stem}.jpg")
            Image.fromarray(mask).save(folder / f"{stem}.png")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "mtd_tiny")))
