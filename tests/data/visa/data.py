"""Writes a tiny VisA in either of its layouts (run as a script or call ``write``).

``split_csv``: the official distribution, ``<cat>/Data/Images/{Normal,Anomaly}/*.JPG`` (normal
images numbered ``0000``, anomalous ``000``), masks ``<cat>/Data/Masks/Anomaly/<NNN>.png`` that
store label values (1, and 2 for a second defect) rather than 255, and ``split_csv/1cls.csv``
with train and test rows. ``mvtec``: the re-layout the split script writes from that CSV,
``<cat>/{train/good,test/good,test/bad}`` with masks ``ground_truth/bad/<NNN>.png`` binarised to
0/255. Both layouts hold the same images. Deterministic for a given seed.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

# category -> (image height, width, train normals, test normals, test anomalies)
SHAPES: dict[str, tuple[int, int, int, int, int]] = {
    "candle": (36, 40, 2, 3, 2),
    "pcb1": (32, 48, 1, 2, 3),
}


def _image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.uniform(0.2, 0.6, 3)
    yy = np.linspace(0, 1, height)[:, None, None]
    img = base + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 3) * yy)
    return np.clip(img + rng.normal(0, 0.02, (height, width, 3)), 0, 1)


def _defect(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, value: int) -> None:
    height, width = mask.shape
    s = int(rng.integers(4, 8))
    y, x = int(rng.integers(0, height - s)), int(rng.integers(0, width - s))
    img[y : y + s, x : x + s] = rng.uniform(0.85, 1.0, 3)
    mask[y : y + s, x : x + s] = value


def _save_jpg(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(path, format="JPEG", quality=95)


def write(root: Path, layout: Literal["split_csv", "mvtec"] = "split_csv", seed: int = 0) -> Path:
    """Writes every category of ``SHAPES`` under ``root`` in ``layout``."""
    rng = np.random.default_rng(seed)
    rows: list[list[str]] = []
    for cat, (height, width, n_train, n_test, n_bad) in SHAPES.items():
        for i in range(n_train + n_test):
            split = "train" if i < n_train else "test"
            rel = f"{cat}/Data/Images/Normal/{i:04d}.JPG"
            dst = rel if layout == "split_csv" else f"{cat}/{split}/good/{i:04d}.JPG"
            _save_jpg(_image(rng, height, width), root / dst)
            rows.append([cat, split, "normal", rel, ""])
        for i in range(n_bad):
            img, mask = _image(rng, height, width), np.zeros((height, width), np.uint8)
            _defect(rng, img, mask, 1)
            if i == 0:  # a second defect with another label value, as VisA masks have
                _defect(rng, img, mask, 2)
            rel, rel_mask = (
                f"{cat}/Data/Images/Anomaly/{i:03d}.JPG",
                f"{cat}/Data/Masks/Anomaly/{i:03d}.png",
            )
            if layout == "split_csv":
                _save_jpg(img, root / rel)
                (root / rel_mask).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(root / rel_mask)
            else:
                _save_jpg(img, root / cat / "test" / "bad" / f"{i:03d}.JPG")
                (root / cat / "ground_truth" / "bad").mkdir(parents=True, exist_ok=True)
                binary = np.where(mask > 0, 255, 0).astype(np.uint8)
                Image.fromarray(binary).save(root / cat / "ground_truth" / "bad" / f"{i:03d}.png")
            rows.append([cat, "test", "anomaly", rel, rel_mask])
    if layout == "split_csv":
        (root / "split_csv").mkdir(parents=True, exist_ok=True)
        with (root / "split_csv" / "1cls.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["object", "split", "label", "image", "mask"])
            writer.writerows(rows)
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "visa_tiny")))
