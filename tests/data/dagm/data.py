"""Writes a tiny DAGM 2007 as distributed (run as a script or call ``write``).

``Class<k>/{Train,Test}/<NNNN>.PNG`` (grayscale) with ``Label/Labels.txt`` (a header line, then
rows ``number <TAB> defective <TAB> image <TAB> 0 <TAB> mask-or-0``) and ``Label/<NNNN>_label.PNG``
ellipse masks (0/255) for the defective images. ``Class10`` is included so that classes must be
ordered by number, not by name. Deterministic for a given seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# class -> split -> (number of images, indices that are defective)
CLASSES: dict[str, dict[str, tuple[int, set[int]]]] = {
    "Class1": {"Train": (3, {1}), "Test": (4, {0, 3})},
    "Class2": {"Train": (2, set()), "Test": (3, {1})},
    "Class10": {"Train": (2, {0}), "Test": (5, {2, 3, 4})},
}
SIZE = 32


def _ellipse(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    cy, cx = rng.integers(8, SIZE - 8, 2)
    return ((yy - cy) / 5.0) ** 2 + ((xx - cx) / 3.0) ** 2 <= 1.0


def write(root: Path, seed: int = 0) -> Path:
    """Writes every class and split of ``CLASSES`` under ``root``."""
    rng = np.random.default_rng(seed)
    for cls, splits in CLASSES.items():
        for split, (count, defective) in splits.items():
            folder = root / cls / split
            (folder / "Label").mkdir(parents=True, exist_ok=True)
            rows = ["1"]
            for i in range(count):
                name = f"{i:04d}.PNG"
                img = rng.integers(100, 160, (SIZE, SIZE), dtype=np.uint8)
                mask_name = "0"
                if i in defective:
                    region = _ellipse(rng)
                    img[region] = 40
                    mask_name = f"{i:04d}_label.PNG"
                    Image.fromarray(region.astype(np.uint8) * 255).save(
                        folder / "Label" / mask_name
                    )
                Image.fromarray(img).save(folder / name)
                rows.append(f"{i + 1}\t{int(i in defective)}\t{name}\t0\t{mask_name}")
            (folder / "Label" / "Labels.txt").write_text("\n".join(rows) + "\n")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "dagm_tiny")))
