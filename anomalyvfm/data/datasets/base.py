"""Base class of evaluation datasets: a list of (image, mask, label, category) records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from anomalyvfm.batch import Sample
from anomalyvfm.data.transforms import image_to_tensor, mask_to_tensor
from data_synthesis.io import load_image


@dataclass(frozen=True)
class Record:
    """One test image: its file, its mask file (None when normal), label and category."""

    image_path: Path
    mask_path: Path | None
    label: int
    category: str
    defect_type: str


class EvalDataset(Dataset[Sample]):
    """A benchmark test set. Subclasses fill ``self.records`` in ``__init__``.

    The datamodule sets ``image_size`` (model input, squash resize) and ``mask_size`` (the
    evaluation resolution of masks) before use.

    Args:
        root: dataset root folder.
        name: dataset name used in metric names and reports.
        pixel_labels: whether masks are meaningful (False for image-level sets).
    """

    def __init__(self, root: str, name: str, pixel_labels: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.name = name
        self.pixel_labels = pixel_labels
        self.records: list[Record] = []
        self.image_size: int | None = None
        self.mask_size: int | None = None

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
            mask = _load_mask(rec.mask_path, image.shape[:2])
        else:
            mask = np.zeros(image.shape[:2], np.float32)
        return Sample(
            image=image_to_tensor(image, self.image_size),
            mask=mask_to_tensor(mask, self.mask_size or self.image_size),
            label=torch.tensor(rec.label, dtype=torch.long),
            path=str(rec.image_path),
            dataset=self.name,
            category=rec.category,
            has_mask=torch.tensor(self.pixel_labels),
        )


def _load_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L")) > 127
    except OSError as err:
        raise ValueError(f"cannot read mask {path}: {err}") from err
    if mask.shape != shape:
        raise ValueError(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]}, its image is {shape[1]}x{shape[0]}"
        )
    return mask.astype(np.float32)
