"""Offline demo data: normal training images and a zero-shot MVTec-style test set.

Everything comes from images bundled with scikit-image and from procedural textures, so the demo
runs on a fresh machine without network access. The test categories use sources and a defect
family that training never sees (see :mod:`anomalyvfm.demo.defects`), mirroring the zero-shot
protocol. All randomness flows from ``seed`` through explicit generators, one stream per split and
category, so a rebuild with the same arguments rewrites byte-identical files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anomalyvfm.demo.defects import DEFECT_TYPES, FloatArray, apply_defect
from anomalyvfm.demo.textures import HELDOUT_TEXTURES, TRAIN_TEXTURES
from data_synthesis.io import decode_image, resize_image

TRAIN_PHOTOS: tuple[str, ...] = (
    "grass.png",
    "moon.png",
    "ihc.png",
    "camera.png",
    "coins.png",
    "coffee.png",
    "chelsea.png",
    "astronaut.png",
    "rocket.jpg",
)
"""scikit-image files cropped into normal training images."""

TEST_CATEGORIES: dict[str, str] = {
    "brick": "skimage:brick.png",
    "gravel": "skimage:gravel.png",
    "leather": "procedural:leather",
}
"""Zero-shot test categories and their held-out source (never used for training)."""

_TRAIN_SCALE = (0.15, 0.7)
_TEST_SCALE = (0.3, 0.45)
_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DemoData:
    """Where :func:`build_demo_data` wrote the demo data and how much of it.

    Attributes:
        root: Root folder of the demo data.
        train_dir: Folder with the normal training PNGs (``root/train/good``).
        test_root: MVTec-style root holding one folder per test category.
        manifest_path: JSON file describing seed, sources and every written file.
        categories: Names of the test categories.
        num_train: Number of training images.
        num_test_good: Good test images per category.
        num_test_defect: Defective test images per category.
    """

    root: Path
    train_dir: Path
    test_root: Path
    manifest_path: Path
    categories: tuple[str, ...]
    num_train: int
    num_test_good: int
    num_test_defect: int


def build_demo_data(
    root: str | Path,
    image_size: int = 128,
    num_train: int = 400,
    num_test_good: int = 30,
    num_test_defect: int = 30,
    seed: int = 0,
) -> DemoData:
    """Write the demo training images, zero-shot test set and manifest under ``root``.

    Files listed in an existing manifest are removed first, so rebuilding with other counts
    leaves no stale images behind; nothing else under ``root`` is touched.

    Args:
        root: Output folder; created if missing.
        image_size: Side length of every square image and mask.
        num_train: Number of normal training images in ``root/train/good``.
        num_test_good: Good test images per category.
        num_test_defect: Defective test images per category, split over :data:`DEFECT_TYPES`.
        seed: Seed of every random choice; equal arguments give byte-identical files.

    Returns:
        Paths and counts of the written data.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / _MANIFEST
    _remove_previous(root, manifest_path)
    photos = {f"skimage:{name}": _load_skimage(name) for name in TRAIN_PHOTOS}
    train_sources = sorted(photos) + [f"procedural:{name}" for name in TRAIN_TEXTURES]
    train_records = _write_train(root, train_sources, photos, image_size, num_train, seed)
    test_records: list[dict[str, Any]] = []
    for index, (category, source) in enumerate(TEST_CATEGORIES.items()):
        rngs = [np.random.default_rng([seed, 100 + index, k]) for k in range(3)]
        test_records += _write_category(
            root, category, source, image_size, num_test_good, num_test_defect, rngs
        )
    manifest = {
        "seed": seed,
        "image_size": image_size,
        "num_train": num_train,
        "num_test_good": num_test_good,
        "num_test_defect": num_test_defect,
        "sources": {"train": train_sources, "test": dict(TEST_CATEGORIES)},
        "defect_types": list(DEFECT_TYPES),
        "train": train_records,
        "test": test_records,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return DemoData(
        root=root,
        train_dir=root / "train" / "good",
        test_root=root / "test_set",
        manifest_path=manifest_path,
        categories=tuple(TEST_CATEGORIES),
        num_train=num_train,
        num_test_good=num_test_good,
        num_test_defect=num_test_defect,
    )


def _remove_previous(root: Path, manifest_path: Path) -> None:
    """Delete the files an earlier build recorded, then any folders they leave empty."""
    if not manifest_path.is_file():
        return
    old = json.loads(manifest_path.read_text())
    files = [root / r["file"] for r in old.get("train", []) + old.get("test", [])]
    files += [root / r["mask"] for r in old.get("test", []) if r.get("mask")]
    for path in files:
        path.unlink(missing_ok=True)
    for folder in sorted({p.parent for p in files}, key=lambda p: len(p.parts), reverse=True):
        for candidate in (folder, *folder.parents):
            if candidate == root or root not in candidate.parents:
                break
            if candidate.is_dir() and not any(candidate.iterdir()):
                candidate.rmdir()


def _load_skimage(name: str) -> FloatArray:
    """Read a bundled scikit-image file (no download) as float RGB in ``[0, 1]``.

    Decoded by the package's one reader (the bundled files are 8-bit: their uint8 values / 255).
    """
    import skimage.data

    pixels = decode_image(os.path.join(skimage.data.data_dir, name))
    return np.asarray(pixels, np.float64) / (255.0 if pixels.dtype == np.uint8 else 1.0)


def _render(
    source: str,
    photos: dict[str, FloatArray],
    rng: np.random.Generator,
    size: int,
    scale: tuple[float, float],
) -> FloatArray:
    """One augmented view of ``source``: crop or procedural draw, then flips, rotation, jitter."""
    if source.startswith("procedural:"):
        name = source.split(":", 1)[1]
        image = {**TRAIN_TEXTURES, **HELDOUT_TEXTURES}[name](rng, size)
    else:
        image = _random_crop(photos[source], rng, size, scale)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.5:
        image = image[::-1]
    image = np.rot90(image, int(rng.integers(4)))
    return _color_jitter(image, rng)


def _random_crop(
    photo: FloatArray, rng: np.random.Generator, size: int, scale: tuple[float, float]
) -> FloatArray:
    """A random square crop whose side is a ``scale`` fraction of the short side, resized."""
    height, width = photo.shape[:2]
    side = max(8, int(min(height, width) * rng.uniform(*scale)))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = _to_uint8(photo[top : top + side, left : left + side])
    return resize_image(crop, (size, size)).astype(np.float64) / 255.0


def _color_jitter(image: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Mild brightness, contrast and saturation changes."""
    mean = float(image.mean())
    image = (image - mean) * rng.uniform(0.85, 1.15) + mean * rng.uniform(0.9, 1.1)
    gray = image.mean(axis=2, keepdims=True)
    image = gray + (image - gray) * rng.uniform(0.8, 1.2)
    return np.clip(image, 0.0, 1.0)


def _to_uint8(image: FloatArray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


def _write_train(
    root: Path,
    sources: list[str],
    photos: dict[str, FloatArray],
    size: int,
    count: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Write ``count`` normal training images cycling over shuffled sources."""
    rng = np.random.default_rng([seed, 0])
    records = []
    for index in range(count):
        # Shuffled rounds keep the source mix balanced even for small counts.
        if index % len(sources) == 0:
            order = rng.permutation(len(sources))
        source = sources[int(order[index % len(sources)])]
        image = _render(source, photos, rng, size, _TRAIN_SCALE)
        relative = f"train/good/{index:04d}.png"
        _save_png(root / relative, _to_uint8(image))
        records.append({"file": relative, "source": source})
    return records


def _split_counts(total: int, parts: int) -> list[int]:
    """Split ``total`` as evenly as possible, earlier parts taking the remainder."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _write_category(
    root: Path,
    category: str,
    source: str,
    size: int,
    num_good: int,
    num_defect: int,
    rngs: list[np.random.Generator],
) -> list[dict[str, Any]]:
    """Write good and defective test images plus masks for one MVTec-style category."""
    good_rng, base_rng, defect_rng = rngs
    photos = (
        {} if source.startswith("procedural:") else {source: _load_skimage(source.split(":", 1)[1])}
    )
    base = root / "test_set" / category
    records: list[dict[str, Any]] = []
    for index in range(num_good):
        relative = (base / "test" / "good" / f"{index:03d}.png").relative_to(root)
        _save_png(root / relative, _to_uint8(_render(source, photos, good_rng, size, _TEST_SCALE)))
        records.append({"file": relative.as_posix(), "category": category, "label": "good"})
    for defect_type, count in zip(DEFECT_TYPES, _split_counts(num_defect, len(DEFECT_TYPES))):
        for index in range(count):
            clean = _render(source, photos, base_rng, size, _TEST_SCALE)
            image, mask, params = apply_defect(clean, defect_type, defect_rng)
            relative = (base / "test" / defect_type / f"{index:03d}.png").relative_to(root)
            mask_rel = (base / "ground_truth" / defect_type / f"{index:03d}_mask.png").relative_to(
                root
            )
            _save_png(root / relative, _to_uint8(image))
            _save_png(root / mask_rel, mask.astype(np.uint8) * 255)
            records.append(
                {
                    "file": relative.as_posix(),
                    "mask": mask_rel.as_posix(),
                    "category": category,
                    "label": defect_type,
                    "defect": params,
                }
            )
    return records
