"""The reference on-disk layout of a synthetic dataset, and checks of its image files.

``<root>/train/ok/<stem>.png`` holds the normal images, ``<root>/train/bad/<stem>.png`` the
anomalous ones and ``<root>/ground_truth/bad/<stem>.png`` (or ``<stem>_mask.png``) the mask of
each anomalous image. A normal and an anomalous image with the same stem form a pair. Masks are
read by :func:`data_synthesis.io.read_mask`, the rule every mask of the package is read by (any
non-zero channel is anomalous).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from data_synthesis.io import (
    decode_image,
    image_to_float,
    list_images,
    load_image,
    read_mask,
    resize_image,
    resize_mask,
)

OK_DIR = "train/ok"
BAD_DIR = "train/bad"
MASK_DIR = "ground_truth/bad"
LAYOUT = (
    f"<root>/{OK_DIR}/<stem>.png, <root>/{BAD_DIR}/<stem>.png and "
    f"<root>/{MASK_DIR}/<stem>.png (or <stem>_mask.png)"
)
# How thoroughly image files are checked before use: "header" opens each file and checks its
# structure (PNG chunk checksums, so truncated PNGs are caught) without decoding pixels;
# "decode" decodes everything (slow on large sets); "off" leaves all problems to read time.
CheckMode = Literal["header", "decode", "off"]
# File names listed in a warning about skipped files; the rest are only counted.
_NAMES_SHOWN = 5


def check_image(
    path: Path, mode: CheckMode = "header", read: Callable[[Path], object] = load_image
) -> str | None:
    """Why ``path`` cannot be used as an image, or None when it can (as far as ``mode`` checks).

    ``read`` decodes the file in ``decode`` mode (:func:`read_mask` for masks).
    """
    if mode == "off":
        return None
    try:
        if mode == "decode":
            read(path)
        else:
            with Image.open(path) as img:
                img.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return str(exc) or type(exc).__name__
    return None


def readable_images(
    paths: Sequence[Path], mode: CheckMode, where: str, masks: Collection[Path] = ()
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split ``paths`` into usable files and skipped (file, reason) pairs; warn about skips.

    Files in ``masks`` are decoded as masks, the others as images.

    Raises:
        ValueError: If no file is usable; the message names ``where`` and the first reasons.
    """
    good: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        reason = check_image(path, mode, read_mask if path in masks else load_image)
        if reason is None:
            good.append(path)
        else:
            skipped.append((path, reason))
    if not good:
        raise ValueError(f"no readable image in {where}: {describe_skipped(skipped)}")
    if skipped:
        warnings.warn(f"{where}: skipping {describe_skipped(skipped)}", stacklevel=2)
    return good, skipped


def describe_skipped(skipped: Sequence[tuple[Path, str]]) -> str:
    """``"3 unreadable files: a.png (reason), ..."`` with the first few names."""
    shown = ", ".join(f"{p} ({why})" for p, why in skipped[:_NAMES_SHOWN])
    more = f" and {len(skipped) - _NAMES_SHOWN} more" if len(skipped) > _NAMES_SHOWN else ""
    return f"{len(skipped)} unreadable file(s): {shown}{more}"


def read_item(
    image_path: Path, mask_path: Path | None, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """An image of the layout and its mask: float32 (H, W, 3) in [0, 1] and (H, W) in {0, 1}.

    A normal image (``mask_path`` None) gets an empty mask. With ``size`` (height, width) the
    image is resized by the package's one rule (:func:`data_synthesis.io.resize_image`, before
    the float conversion) and the mask by nearest neighbour (:func:`data_synthesis.io.resize_mask`).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file cannot be decoded, or the mask's size differs from its image's.
    """
    image = decode_image(image_path)
    if mask_path is None:
        mask = np.zeros(image.shape[:2], bool)
    else:
        mask = read_mask(mask_path, shape=image.shape[:2])
    if size is not None:
        image, mask = resize_image(image, size), resize_mask(mask, size)
    return image_to_float(image), mask.astype(np.float32)


@dataclass
class SyntheticLayout:
    """The files of one dataset in the reference layout (see the module docstring).

    Attributes:
        root: dataset root.
        normals: readable normal images, sorted.
        anomalies: readable (anomalous image, mask) pairs, sorted.
        skipped: unreadable files and why; an unreadable mask also drops its image.
    """

    root: Path
    normals: list[Path]
    anomalies: list[tuple[Path, Path]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def pairs(self) -> list[tuple[Path, Path, Path]]:
        """(normal, anomalous, mask) triples whose normal and anomalous image share a stem."""
        normal_by_stem = {p.stem: p for p in self.normals}
        return [
            (normal_by_stem[bad.stem], bad, mask)
            for bad, mask in self.anomalies
            if bad.stem in normal_by_stem
        ]


def _folder(root: Path, sub: str) -> list[Path]:
    folder = root / sub
    if not folder.is_dir():
        raise FileNotFoundError(f"synthetic dataset {root} lacks {folder}; expected {LAYOUT}")
    return list_images(folder, recursive=False)


def _match_masks(bad: list[Path], masks: list[Path], root: Path) -> list[tuple[Path, Path]]:
    """Pair every anomalous image with its mask by stem; any left-over file is an error."""
    by_stem: dict[str, Path] = {}
    for mask in masks:
        stem = mask.stem[: -len("_mask")] if mask.stem.endswith("_mask") else mask.stem
        if stem in by_stem:
            raise ValueError(f"two masks for the stem {stem!r}: {by_stem[stem]} and {mask}")
        by_stem[stem] = mask
    stems = [p.stem for p in bad]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise ValueError(f"{root / BAD_DIR} has several images per stem: {duplicated[:5]}")
    no_mask = [p.name for p in bad if p.stem not in by_stem]
    orphans = sorted(by_stem[s].name for s in set(by_stem) - set(stems))
    if no_mask or orphans:
        raise ValueError(
            f"mismatched pairs in {root}: {len(no_mask)} image(s) in {BAD_DIR} without a mask in "
            f"{MASK_DIR} (first: {no_mask[:5]}), {len(orphans)} mask(s) without an image "
            f"(first: {orphans[:5]}); expected {LAYOUT}"
        )
    return [(p, by_stem[p.stem]) for p in bad]


def _check_sizes(pairs: list[tuple[Path, Path]]) -> None:
    for image, mask in pairs:
        with Image.open(image) as a, Image.open(mask) as b:
            if a.size != b.size:
                raise ValueError(
                    f"mask {mask} is {b.size[0]}x{b.size[1]}, its image {image} is "
                    f"{a.size[0]}x{a.size[1]}"
                )


def read_layout(root: str | Path, check: CheckMode = "header") -> SyntheticLayout:
    """List and check a dataset in the reference layout.

    Args:
        root: dataset root.
        check: how thoroughly files are checked (see :data:`CheckMode`); unreadable files are
            skipped with one warning giving their count and first names.

    Returns:
        The usable files.

    Raises:
        FileNotFoundError: If ``root`` or one of its three folders is missing.
        ValueError: On an empty folder, an anomalous image without a mask (or the reverse), or a
            mask whose size differs from its image's; the message names the files.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"synthetic dataset root {root} does not exist; expected {LAYOUT}")
    normals, bad, masks = (_folder(root, sub) for sub in (OK_DIR, BAD_DIR, MASK_DIR))
    pairs = _match_masks(bad, masks, root)
    normals, skipped = readable_images(normals, check, str(root / OK_DIR))
    readable, skipped_pairs = readable_images(
        [p for pair in pairs for p in pair],
        check,
        f"{root / BAD_DIR} and {root / MASK_DIR}",
        masks={mask for _, mask in pairs},
    )
    usable = set(readable)
    pairs = [(img, mask) for img, mask in pairs if img in usable and mask in usable]
    if not pairs:
        raise ValueError(f"no readable (image, mask) pair in {root}")
    if check != "off":
        _check_sizes(pairs)
    return SyntheticLayout(root, normals, pairs, skipped + skipped_pairs)


def is_layout_root(path: str | Path) -> bool:
    """Whether ``path`` looks like a dataset root in the reference layout (has train/bad)."""
    return (Path(path) / BAD_DIR).is_dir()
