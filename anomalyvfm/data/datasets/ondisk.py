"""Training set read from a synthetic dataset on disk in the reference layout.

``<root>/train/ok/*.png`` (normal, label 0, empty mask), ``<root>/train/bad/*.png`` (anomalous,
label 1) and ``<root>/ground_truth/bad/*.png`` (a mask per anomalous image, same stem, or
``<stem>_mask.png``). Both images of each pair are used, so the set is about half anomalous.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from anomalyvfm.batch import Sample
from anomalyvfm.data.datasets.synthetic import Triple
from anomalyvfm.data.transforms import image_to_tensor, mask_to_tensor
from data_synthesis.layout import CheckMode, read_item, read_layout

# Following items tried after an unreadable one before giving up.
_RETRIES = 8


class OnDiskAnomalyDataset(Dataset[Sample]):
    """Normal and anomalous images (with masks) of one on-disk synthetic dataset.

    Item ``i`` (any non-negative integer; taken modulo the number of images, so epoch-offset
    indices work) is a fixed file. Files are checked when the dataset is built (see
    :func:`data_synthesis.layout.read_layout`: a missing folder, an image without a mask, or a
    mask of the wrong size is an error naming the file; unreadable files are skipped with a
    warning). A file that still fails when read is skipped: a warning names it,
    ``read_failures`` counts it, and the next item is used instead.

    Args:
        root: dataset root.
        image_size: square model input size (squash resize; masks by nearest neighbour).
        check: how thoroughly files are checked up front ("header", "decode" or "off").
    """

    def __init__(self, root: str, image_size: int = 768, check: CheckMode = "header") -> None:
        self.layout = read_layout(root, check)
        self.items: list[tuple[Path, Path | None]] = [
            *((p, None) for p in self.layout.normals),
            *self.layout.anomalies,
        ]
        self.pairs = self.layout.pairs()
        self.image_size = image_size
        self.read_failures: set[Path] = set()

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        """Files skipped when the dataset was built, and why."""
        return self.layout.skipped

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, image_path: Path, mask_path: Path | None) -> tuple[np.ndarray, np.ndarray]:
        return read_item(image_path, mask_path, (self.image_size, self.image_size))

    def _read_item(self, index: int) -> tuple[np.ndarray, np.ndarray, Path]:
        for step in range(_RETRIES):
            image_path, mask_path = self.items[(index + step) % len(self.items)]
            try:
                return (*self._read(image_path, mask_path), image_path)
            except (OSError, ValueError) as err:
                if image_path not in self.read_failures:
                    self.read_failures.add(image_path)
                    warnings.warn(f"skipping unreadable training item: {err}", stacklevel=2)
        raise ValueError(f"{_RETRIES} unreadable items in a row in {self.layout.root}")

    def __getitem__(self, index: int) -> Sample:
        image, mask, path = self._read_item(index)
        return Sample(
            image=image_to_tensor(image, None),
            mask=mask_to_tensor(mask, None),
            # An anomalous image whose mask is empty teaches nothing anomalous: label it normal.
            label=torch.tensor(int(mask.any()), dtype=torch.long),
            path=str(path),
            dataset="synthetic_ondisk",
            category="train",
            has_mask=torch.tensor(True),
        )

    def preview_triple(self, index: int) -> Triple:
        """(normal, anomalous, mask) of pair ``index`` (modulo the number of pairs).

        Raises:
            ValueError: If no anomalous image has a normal image of the same stem.
        """
        if not self.pairs:
            raise ValueError(
                f"{self.layout.root}: no anomalous image has a normal image of the same stem"
            )
        normal_path, bad_path, mask_path = self.pairs[index % len(self.pairs)]
        anomalous, mask = self._read(bad_path, mask_path)
        normal, _ = self._read(normal_path, None)
        return normal, anomalous, mask
