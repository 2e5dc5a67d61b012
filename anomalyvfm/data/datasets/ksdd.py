"""KolektorSDD (KSDD, Tabernik et al., 2020), as distributed.

``<root>/kos01..kos50/Part<k>.jpg`` (grayscale electrical commutators, ~500x1250) with a
``Part<k>_label.bmp`` mask beside every image, empty for defect-free surfaces (399 images, 52
defective). There are no label files or splits: an image is defective when its mask has a
positive (nonzero) pixel, as the dataset's authors define it. Zero-shot evaluation (the
AnomalyVFM reference among others) uses every image as test; so does this reader. The whole set
is one category, ``ksdd``; ``defect_type`` is ``defect`` or ``good``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from anomalyvfm.data.datasets.base import EvalDataset, Record

LAYOUT = "<root>/kos<NN>/Part<k>.jpg with a Part<k>_label.bmp mask beside each"
CATEGORY = "ksdd"
# Masks are 0/255; nonzero is positive, as the dataset's authors read them.
MASK_THRESHOLD = 0


class KSDD(EvalDataset):
    """KolektorSDD, every image as test.

    Args:
        root: folder holding the ``kos<NN>`` folders.
        name: dataset name in metric names.

    Raises:
        FileNotFoundError: the root is missing or has no ``kos<NN>`` folder with images, or an
            image has no ``_label.bmp`` mask.
    """

    def __init__(self, root: str, name: str = "ksdd") -> None:
        super().__init__(root, name)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{name} root {self.root} does not exist; expected {LAYOUT}")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("kos"))
        images = [img for folder in folders for img in sorted(folder.glob("*.jpg"))]
        if not images:
            raise FileNotFoundError(
                f"{name} root {self.root} has no kos<NN>/*.jpg images; expected {LAYOUT}"
            )
        for image in images:
            mask = image.with_name(f"{image.stem}_label.bmp")
            self.records.append(labelled_record(image, mask, CATEGORY, name))


def labelled_record(image: Path, mask: Path, category: str, name: str) -> Record:
    """A record whose label is whether ``mask`` has a nonzero pixel (None mask when normal).

    Raises:
        FileNotFoundError: ``mask`` does not exist.
    """
    if not mask.is_file():
        raise FileNotFoundError(f"{name}: mask {mask} for image {image} is missing")
    if mask_has_positive(mask, MASK_THRESHOLD):
        return Record(image, mask, 1, category, "defect", MASK_THRESHOLD)
    return Record(image, None, 0, category, "good", MASK_THRESHOLD)


def mask_has_positive(path: Path, threshold: int = 0) -> bool:
    """Whether the mask at ``path`` has a pixel whose grey value exceeds ``threshold``.

    Raises:
        ValueError: the file cannot be read as an image.
    """
    try:
        with Image.open(path) as im:
            return bool((np.asarray(im.convert("L")) > threshold).any())
    except OSError as err:
        raise ValueError(f"cannot read mask {path}: {err}") from err
