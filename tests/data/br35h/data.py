"""Writes a tiny Br35H set in the Kaggle layout (run as a script or call ``write``).

``<root>/no/no0.jpg`` .., ``<root>/yes/y0.jpg`` .. and the unlabelled ``<root>/pred/pred0.jpg``
.. that the benchmark leaves out. Tumour slices carry a bright blob. Deterministic per seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def write(
    root: Path, num_no: int = 12, num_yes: int = 11, num_pred: int = 2, seed: int = 0
) -> Path:
    """Writes ``no/no<i>.jpg``, ``yes/y<i>.jpg`` and ``pred/pred<i>.jpg``."""
    rng = np.random.default_rng(seed)
    for folder, prefix, num in (
        ("no", "no", num_no),
        ("yes", "y", num_yes),
        ("pred", "pred", num_pred),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(num):
            height, width = 32 + (7 * i) % 13, 34 + (5 * i) % 11
            img = 0.25 + rng.normal(0, 0.03, (height, width, 3))
            if folder == "yes":
                img[6:14, 8:16] = 0.85
            rgb = (np.clip(img, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(rgb).save(root / folder / f"{prefix}{i}.jpg")
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "br35h_tiny")))
