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

from anomalyvfm.data.datasets.base import EvalDataset, Record
from data_synthesis.io import list_images, read_mask

LAYOUT = "<root>/kos<NN>/Part<k>.jpg with a Part<k>_label.bmp mask beside each"
CATEGORY = "ksdd"
MASK_SUFFIX = "_label"


class KSDD(EvalDataset):
    """KolektorSDD, every image as test.

    Args:
        root: folder holding the ``kos<NN>`` folders.
        name: dataset name in metric names.
        mask_threshold: fraction of the format's maximum a mask value must exceed; None (any
            non-zero pixel, as the dataset's authors read the masks) by default.

    Raises:
        FileNotFoundError: the root is missing or has no ``kos<NN>`` folder with images, or an
            image has no ``_label.bmp`` mask.
    """

    def __init__(self, root: str, name: str = "ksdd", mask_threshold: float | None = None) -> None:
        super().__init__(root, name, mask_threshold=mask_threshold)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{name} root {self.root} does not exist; expected {LAYOUT}")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("kos"))
        # Every image file beside the masks (``<stem>_label.bmp``) is a test image.
        images = [
            img
            for folder in folders
            for img in list_images(folder, recursive=False, allow_empty=True)
            if not img.stem.endswith(MASK_SUFFIX)
        ]
        if not images:
            raise FileNotFoundError(
                f"{name} root {self.root} has no kos<NN>/*.jpg images; expected {LAYOUT}"
            )
        for image in images:
            mask = image.with_name(f"{image.stem}{MASK_SUFFIX}.bmp")
            self.records.append(labelled_record(image, mask, CATEGORY, name, self.mask_threshold))


def labelled_record(
    image: Path, mask: Path, category: str, name: str, threshold: float | None = None
) -> Record:
    """A record whose label is whether ``mask`` has an anomalous pixel (None mask when normal).

    The mask is read by the package's one mask rule (:func:`data_synthesis.io.read_mask`).

    Raises:
        FileNotFoundError: ``mask`` does not exist.
        ValueError: ``mask`` cannot be read as an image.
    """
    if not mask.is_file():
        raise FileNotFoundError(f"{name}: mask {mask} for image {image} is missing")
    try:
        positive = bool(read_mask(mask, threshold).any())
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err
    if positive:
        return Record(image, mask, 1, category, "defect")
    return Record(image, None, 0, category, "good")
