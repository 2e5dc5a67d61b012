"""Writes a tiny BTAD as distributed (run as a script or call ``write``).

``<cat>/{train/ok,test/ok,test/ko}/<NNNN>.<ext>`` with masks ``<cat>/ground_truth/ko/<NNNN>.<ext>``
(0/255). The extensions follow the real products: ``01`` BMP images and PNG masks, ``02`` PNG
images and masks, ``03`` BMP images and masks. Deterministic for a given seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# category -> (image ext, mask ext, height, width, train ok, test ok, test ko)
PRODUCTS: dict[str, tuple[str, str, int, int, int, int, int]] = {
    "01": (".bmp", ".png", 40, 40, 2, 2, 3),
    "02": (".png", ".png", 32, 32, 1, 3, 1),
    "03": (".bmp", ".bmp", 30, 40, 1, 2, 2),
}


def _save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def write(root: Path, seed: int = 0) -> Path:
    """Writes every product of ``PRODUCTS`` under ``root``."""
    rng = np.random.default_rng(seed)
    for cat, (ext, mask_ext, height, width, n_train, n_ok, n_ko) in PRODUCTS.items():
        number = 0
        for split, count in (("train", n_train), ("test", n_ok)):
            for _ in range(count):
                img = rng.integers(90, 140, (height, width, 3), dtype=np.uint8)
                _save(img, root / cat / split / "ok" / f"{number:04d}{ext}")
                number += 1
        for _ in range(n_ko):
            img = rng.integers(90, 140, (height, width, 3), dtype=np.uint8)
            mask = np.zeros((height, width), np.uint8)
            y, x = int(rng.integers(0, height - 6)), int(rng.integers(0, width - 6))
            img[y : y + 6, x : x + 6] = 250
            mask[y : y + 6, x : x + 6] = 255
            _save(img, root / cat / "test" / "ko" / f"{number:04d}{ext}")
            _save(mask, root / cat / "ground_truth" / "ko" / f"{number:04d}{mask_ext}")
            number += 1
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "btad_tiny")))
