"""Base class of evaluation datasets: a list of (image, mask, label, category) records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from anomalyvfm.batch import Sample
from anomalyvfm.data.transforms import Resize, image_to_tensor, mask_to_tensor
from data_synthesis.io import load_image


@dataclass(frozen=True)
class Record:
    """One test image: its file, its mask file (None when normal), label and category.

    ``mask_threshold``: a mask pixel is anomalous where its grey value exceeds it. 127 suits
    0/255 masks with soft edges; 0 suits masks stored as 0/1 or class ids (VisA), where any
    nonzero pixel is anomalous.
    """

    image_path: Path
    mask_path: Path | None
    label: int
    category: str
    defect_type: str
    mask_threshold: int = 127


class EvalDataset(Dataset[Sample]):
    """A benchmark test set. Subclasses fill ``self.records`` in ``__init__``.

    The datamodule sets ``image_size`` (model input), ``mask_size`` (the evaluation resolution
    of masks: a square size, ``"original"`` for each mask's own size, None for ``image_size``)
    and ``resize`` (``squash`` or ``center_crop``, applied to image and mask alike) before use.

    Args:
        root: dataset root folder.
        name: dataset name used in metric names and reports.
        pixel_labels: whether masks are meaningful (False for image-level sets).
        image_labels: whether image labels are meaningful. False for pixel-level sets in which
            every image is anomalous (polyp, lesion and nodule segmentation sets): their image
            metrics are undefined and excluded from every mean.
    """

    def __init__(
        self, root: str, name: str, pixel_labels: bool = True, image_labels: bool = True
    ) -> None:
        self.root = Path(root).expanduser()
        self.name = name
        self.pixel_labels = pixel_labels
        self.image_labels = image_labels
        self.records: list[Record] = []
        self.image_size: int | None = None
        self.mask_size: int | Literal["original"] | None = None
        self.resize: Resize = "squash"

    @property
    def categories(self) -> list[str]:
        """Categories in first-seen order."""
        return list(dict.fromkeys(r.category for r in self.records))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        rec = self.records[index]
        image = load_image(rec.image_path)
        if rec.mask_path is not None:
            mask = _load_mask(rec.mask_path, image.shape[:2], rec.mask_threshold)
        else:
            mask = np.zeros(image.shape[:2], np.float32)
        return Sample(
            image=image_to_tensor(image, self.image_size, self.resize),
            mask=mask_to_tensor(mask, self._mask_target(), self.resize),
            label=torch.tensor(rec.label, dtype=torch.long),
            path=str(rec.image_path),
            dataset=self.name,
            category=rec.category,
            has_mask=torch.tensor(self.pixel_labels),
            index=torch.tensor(index, dtype=torch.long),
        )

    def _mask_target(self) -> int | None:
        if self.mask_size == "original":
            return None
        return self.mask_size or self.image_size


def _load_mask(path: Path, shape: tuple[int, ...], threshold: int = 127) -> np.ndarray:
    try:
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L")) > threshold
    except OSError as err:
        raise ValueError(f"cannot read mask {path}: {err}") from err
    if mask.shape != shape:
        raise ValueError(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]}, its image is {shape[1]}x{shape[0]}"
        )
    return mask.astype(np.float32)
