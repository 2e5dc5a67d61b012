"""Writes a tiny dataset in the MVTec AD layout (run as a script or call ``write``).

Normal images are smooth random colour fields; defective ones carry a bright square whose mask
is written to ``ground_truth``. Deterministic for a given seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def _field(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(0.2, 0.6, 3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = (
        base
        + 0.15 * np.sin(2 * np.pi * (xx * rng.uniform(1, 3) + yy * rng.uniform(1, 3)))[..., None]
    )
    return np.clip(img + rng.normal(0, 0.02, (size, size, 3)), 0, 1)


def write(
    root: Path,
    categories: tuple[str, ...] = ("bottle", "tile"),
    size: int = 48,
    num_good: int = 3,
    num_bad: int = 3,
    seed: int = 0,
) -> Path:
    """Writes ``root/<category>/{train/good,test/good,test/broken,ground_truth/broken}``."""
    rng = np.random.default_rng(seed)
    for cat in categories:
        for sub in ("train/good", "test/good", "test/broken", "ground_truth/broken"):
            (root / cat / sub).mkdir(parents=True, exist_ok=True)
        for i in range(num_good):
            for split in ("train", "test"):
                img = (_field(rng, size) * 255).astype(np.uint8)
                Image.fromarray(img).save(root / cat / split / "good" / f"{i:03d}.png")
        for i in range(num_bad):
            img = _field(rng, size)
            mask = np.zeros((size, size), np.uint8)
            s = int(rng.integers(size // 8, size // 4))
            y, x = rng.integers(0, size - s, 2)
            img[y : y + s, x : x + s] = rng.uniform(0.85, 1.0, 3)
            mask[y : y + s, x : x + s] = 255
            Image.fromarray((img * 255).astype(np.uint8)).save(
                root / cat / "test/broken" / f"{i:03d}.png"
            )
            Image.fromarray(mask).save(root / cat / "ground_truth/broken" / f"{i:03d}_mask.png")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "mvtec_tiny")))
