"""Writes a tiny BrainMRI set in the Kaggle layout (run as a script or call ``write``).

``<root>/no/`` and ``<root>/yes/`` with the real set's free-form names and mixed extensions
(``1 no.jpeg``, ``N1.JPG``, ``no 10.jpg``; ``Y1.jpg``, ``Y10.JPG``, ``y2.png``) and a stray
``.DS_Store``; with ``wrapped=True`` the folders sit in ``brain_tumor_dataset/`` as in the
Kaggle download. Tumour slices carry a bright blob. Deterministic per seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

NORMAL_NAMES = ("1 no.jpeg", "N1.JPG", "no 10.jpg", "no 2.jpg")
TUMOR_NAMES = ("Y1.jpg", "Y10.JPG", "Y2.jpg", "y3.png", "Y20.jpeg")


def write(root: Path, wrapped: bool = False, seed: int = 0) -> Path:
    """Writes ``no/`` (4 images) and ``yes/`` (5 images), optionally inside one more folder."""
    rng = np.random.default_rng(seed)
    base = root / "brain_tumor_dataset" if wrapped else root
    for folder, names in (("no", NORMAL_NAMES), ("yes", TUMOR_NAMES)):
        (base / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            height, width = 36 + 3 * i, 32 + 4 * i
            img = 0.3 + rng.normal(0, 0.03, (height, width))
            if folder == "yes":
                img[10:18, 12:20] = 0.9
            gray = (np.clip(img, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(gray).save(base / folder / name)
    (base / "no" / ".DS_Store").write_bytes(b"\0")  # macOS litter, not an image
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "brainmri_tiny")))
