"""Writes a tiny Kvasir-SEG in its distributed layout (run as a script or call ``write``).

``<root>/images/<id>.jpg`` with ``<root>/masks/<id>.jpg`` (RGB JPEG masks, as released: values
near, not at, 0 and 255) and ``<root>/kavsir_bboxes.json``; ids are 25 lower-case letters and
digits starting with ``cj`` like the real ones, sizes vary. Each image has one polyp in
:func:`lesion_box`. Deterministic per seed.
"""

from __future__ import annotations

import json
import string
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def image_ids(num: int, seed: int = 0) -> list[str]:
    """The written ids, in writing order (not sorted)."""
    rng = np.random.default_rng(seed + 1)
    chars = np.array(list(string.ascii_lowercase + string.digits))
    return ["cj" + "".join(rng.choice(chars, 23)) for _ in range(num)]


def image_size(index: int) -> tuple[int, int]:
    """(height, width) of image ``index``."""
    return 32 + (7 * index) % 15, 36 + (5 * index) % 12


def lesion_box(index: int) -> tuple[int, int, int, int]:
    """Rows ``y0:y1`` and columns ``x0:x1`` of image ``index``'s polyp."""
    height, width = image_size(index)
    y0, x0 = 4 + index % 7, 6 + (2 * index) % 9
    return y0, y0 + height // 3, x0, x0 + width // 3


def write(root: Path, num: int = 8, seed: int = 0) -> Path:
    """Writes ``num`` image/mask pairs and the bounding-box JSON."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    boxes = {}
    for i, image_id in enumerate(image_ids(num, seed)):
        height, width = image_size(i)
        y0, y1, x0, x1 = lesion_box(i)
        img = np.array([0.8, 0.5, 0.45]) + rng.normal(0, 0.03, (height, width, 3))
        img[y0:y1, x0:x1] = [0.95, 0.7, 0.6]
        mask = np.zeros((height, width, 3), np.uint8)
        mask[y0:y1, x0:x1] = 255
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(
            root / "images" / f"{image_id}.jpg"
        )
        Image.fromarray(mask).save(root / "masks" / f"{image_id}.jpg")
        boxes[image_id] = {
            "height": height,
            "width": width,
            "bbox": [{"label": "polyp", "xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}],
        }
    (root / "kavsir_bboxes.json").write_text(json.dumps(boxes))
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "kvasir_tiny")))
