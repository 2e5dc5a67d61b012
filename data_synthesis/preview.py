"""Contact sheets of synthetic samples: one row per sample, normal | anomalous | mask outline.

``python -m data_synthesis.preview --source <folder> --out sheet.png`` previews either an online
generator on a folder of normal images or an on-disk dataset in the reference layout (a folder
with ``train/bad`` is read as one).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from data_synthesis.base import AnomalyGeneratorBase
from data_synthesis.cutpaste import MASK_TYPES, CutPasteGenerator
from data_synthesis.io import list_images, load_image, resize_image, resize_mask
from data_synthesis.layout import is_layout_root, read_item, read_layout
from data_synthesis.noise import NoiseTextureGenerator

Triple = tuple[np.ndarray, np.ndarray, np.ndarray]
GeneratorName = Literal["noise", "cutpaste"]
# Redraws of an anomaly that changed no pixel (possible for tiny images).
_RETRIES = 8


def mask_outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boolean (H, W) border of the mask's regions: mask pixels with a 4-neighbour outside it.

    Args:
        mask: (H, W) array; values above 0.5 are inside.
        width: border thickness in pixels.
    """
    inside = np.asarray(mask) > 0.5
    eroded = inside.copy()
    for _ in range(width):
        # Pixels on the image edge count as bordering the outside.
        padded = np.pad(eroded, 1, constant_values=False)
        eroded = (
            padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
            & padded[1:-1, :-2] & padded[1:-1, 2:]
        )  # fmt: skip
    return inside & ~eroded


def _tile(image: np.ndarray, size: int) -> np.ndarray:
    """float (H, W, 3) in [0, 1] -> uint8 (size, size, 3), squash-resized."""
    arr = np.clip(np.asarray(image, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.array(resize_image(arr, (size, size)))  # writable: the outline is drawn on it


def contact_sheet(
    samples: Sequence[Triple],
    size: int = 256,
    gap: int = 4,
    color: tuple[int, int, int] = (255, 0, 0),
    outline_width: int = 2,
) -> Image.Image:
    """Grid with one row per (normal, anomalous, mask) sample and three columns.

    Columns: the normal image, the anomalous image, and the anomalous image with the mask's
    outline drawn in ``color``. Images are float32 (H, W, 3) in [0, 1], masks (H, W) in {0, 1};
    every tile is squash-resized to ``size`` x ``size`` (masks by nearest neighbour).

    Args:
        samples: the rows.
        size: tile side in pixels.
        gap: white space between tiles and around the sheet.
        color: outline colour (RGB, 0-255).
        outline_width: outline thickness in pixels of the tile.

    Returns:
        An RGB image of ``3 * size + 4 * gap`` by ``len(samples) * (size + gap) + gap`` pixels.
    """
    if not samples:
        raise ValueError("contact_sheet needs at least one sample")
    cols, rows = 3, len(samples)
    sheet = np.full((rows * (size + gap) + gap, cols * (size + gap) + gap, 3), 255, dtype=np.uint8)
    for r, (normal, anomalous, mask) in enumerate(samples):
        outlined = _tile(anomalous, size)
        outlined[mask_outline(resize_mask(mask, (size, size)), outline_width)] = color
        top = gap + r * (size + gap)
        for c, tile in enumerate((_tile(normal, size), _tile(anomalous, size), outlined)):
            left = gap + c * (size + gap)
            sheet[top : top + size, left : left + size] = tile
    return Image.fromarray(sheet)


def make_generator(
    name: GeneratorName, texture_dir: str | None = None, mask_type: str = "perlin"
) -> AnomalyGeneratorBase:
    """The online generator called ``name`` ("noise" or "cutpaste") with default settings."""
    if name == "noise":
        return NoiseTextureGenerator(texture_dir=texture_dir)
    if name == "cutpaste":
        return CutPasteGenerator(mask_type=mask_type)  # type: ignore[arg-type]
    raise ValueError(f"unknown generator {name!r}; expected 'noise' or 'cutpaste'")


def online_samples(
    folder: str | Path, generator: AnomalyGeneratorBase, num: int, seed: int, size: int
) -> list[Triple]:
    """``num`` anomalies made by ``generator`` on images of ``folder`` resized to ``size``.

    Sample ``i`` draws its file and anomaly from ``numpy.random.default_rng([seed, i])``.
    """
    files = list_images(folder)
    samples = []
    for i in range(num):
        rng = np.random.default_rng([seed, i])
        normal = load_image(files[int(rng.integers(len(files)))], (size, size))
        for _ in range(_RETRIES):
            anomaly = generator(normal, rng)
            if anomaly.mask.any():
                break
        samples.append((normal, anomaly.image, anomaly.mask))
    return samples


def dataset_samples(root: str | Path, num: int, seed: int, size: int) -> list[Triple]:
    """``num`` (normal, anomalous, mask) pairs of an on-disk dataset, chosen by ``seed``.

    Raises:
        ValueError: If no anomalous image has a normal image of the same stem.
    """
    pairs = read_layout(root).pairs()
    if not pairs:
        raise ValueError(f"{root}: no anomalous image has a normal image of the same stem")
    order = np.random.default_rng(seed).permutation(len(pairs))[:num]
    samples = []
    for k in order.tolist():
        normal_path, bad_path, mask_path = pairs[k]
        anomalous, mask = read_item(bad_path, mask_path, (size, size))
        normal, _ = read_item(normal_path, None, (size, size))
        samples.append((normal, anomalous, mask))
    return samples


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_synthesis.preview",
        description="Write a contact sheet (normal | anomalous | mask outline) of N samples.",
    )
    parser.add_argument(
        "--source",
        required=True,
        help="folder of normal images (online generator) or root of an on-disk dataset "
        "(train/ok, train/bad, ground_truth/bad)",
    )
    parser.add_argument("--generator", choices=["noise", "cutpaste"], default="noise")
    parser.add_argument("--texture-dir", default=None, help="texture folder of the noise generator")
    parser.add_argument("--mask-type", choices=list(MASK_TYPES), default="perlin")
    parser.add_argument("--num", type=int, default=8, help="number of rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="tile side in pixels")
    parser.add_argument("--out", required=True, help="PNG file to write")
    return parser


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the path of the written sheet."""
    args = _parser().parse_args(argv)
    if args.num < 1 or args.size < 8:
        raise SystemExit("--num must be at least 1 and --size at least 8")
    try:
        if is_layout_root(args.source):
            samples = dataset_samples(args.source, args.num, args.seed, args.size)
        else:
            gen = make_generator(args.generator, args.texture_dir, args.mask_type)
            samples = online_samples(args.source, gen, args.num, args.seed, args.size)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(samples, size=args.size).save(out)
    print(f"wrote {out} ({len(samples)} samples)")
    return out


if __name__ == "__main__":
    main()
