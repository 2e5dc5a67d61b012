"""Writes a tiny DTD-Synthetic as distributed (run as a script or call ``write``).

The MVTec AD layout with one defect type, ``bad``: ``<Texture_NNN>/{train/good,test/good,
test/bad}/<NNN>.png`` and masks ``<Texture_NNN>/ground_truth/bad/<NNN>_mask.png`` (0/255).
Deterministic for a given seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# texture -> (train good, test good, test bad)
TEXTURES: dict[str, tuple[int, int, int]] = {"Woven_001": (2, 2, 3), "Blotchy_099": (1, 3, 2)}
SIZE = 32


def _texture(rng: np.random.Generator) -> np.ndarray:
    xx = np.arange(SIZE)[None, :, None]
    img = 0.4 + 0.2 * np.sin(xx * rng.uniform(0.5, 1.5)) + rng.normal(0, 0.03, (SIZE, SIZE, 3))
    return np.clip(img, 0, 1)


def _save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)


def write(root: Path, seed: int = 0) -> Path:
    """Writes every texture of ``TEXTURES`` under ``root``."""
    rng = np.random.default_rng(seed)
    for texture, (n_train, n_good, n_bad) in TEXTURES.items():
        for split, count in (("train", n_train), ("test", n_good)):
            for i in range(count):
                _save(_texture(rng), root / texture / split / "good" / f"{i:03d}.png")
        for i in range(n_bad):
            img, mask = _texture(rng), np.zeros((SIZE, SIZE))
            y, x = rng.integers(0, SIZE - 7, 2)
            img[y : y + 7, x : x + 7] = rng.uniform(0, 1, 3)
            mask[y : y + 7, x : x + 7] = 1.0
            _save(img, root / texture / "test" / "bad" / f"{i:03d}.png")
            _save(mask, root / texture / "ground_truth" / "bad" / f"{i:03d}_mask.png")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "dtd_synthetic_tiny")))
