"""Writes a tiny HeadCT set in the Kaggle layout (run as a script or call ``write``).

``<root>/head_ct/000.png`` .. (ids zero-padded to three digits, sizes varying as in the real
set) and ``<root>/labels.csv`` with the real header ``id, hemorrhage`` (a space before the
second name). As in the real file, the first half of the ids are hemorrhages (1), the rest
normal (0). Hemorrhages carry a bright blob. Deterministic per seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def write(root: Path, num: int = 10, ext: str = ".png", seed: int = 0) -> Path:
    """Writes ``num`` images (the first ``num // 2`` hemorrhages) and ``labels.csv``."""
    rng = np.random.default_rng(seed)
    (root / "head_ct").mkdir(parents=True, exist_ok=True)
    rows = ["id, hemorrhage"]
    for i in range(num):
        label = int(i < num // 2)
        height, width = 32 + (5 * i) % 13, 32 + (3 * i) % 11
        yy, xx = np.mgrid[0:height, 0:width]
        skull = ((yy - height / 2) / (height / 2.2)) ** 2 + ((xx - width / 2) / (width / 2.2)) ** 2
        img = np.where(skull < 1, 0.35, 0.05) + rng.normal(0, 0.02, (height, width))
        if label:
            img[8:14, 10:16] = 0.8
        gray = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(np.repeat(gray[..., None], 3, 2)).save(root / "head_ct" / f"{i:03d}{ext}")
        rows.append(f"{i},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "headct_tiny")))
