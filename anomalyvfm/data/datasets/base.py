"""Base class of evaluation datasets: a list of (image, mask, label, category) records."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from anomalyvfm.batch import Sample
from anomalyvfm.data.transforms import Resize, image_to_tensor, mask_to_tensor
from data_synthesis.io import MaskResize, decode_image, image_to_float, read_mask

# Threads that read file headers at the start-up check (file systems with high latency gain).
_CHECK_THREADS = 8


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

    The datamodule sets ``image_size`` (model input), ``mask_size`` (the evaluation resolution
    of masks: a square size, ``"original"`` for each mask's own size, None for ``image_size``)
    ``resize`` (``squash`` or ``center_crop``, applied to image and mask alike), and
    ``mask_resize``/``mask_resize_threshold`` (how masks are resized, see
    :func:`data_synthesis.io.resize_mask`) before use, and calls :meth:`check_files` before the
    first evaluation.

    Masks are read by :func:`data_synthesis.io.read_mask`: a pixel is anomalous where any of its
    channels is non-zero, whatever the file's encoding; ``mask_threshold`` is for soft masks.

    Args:
        root: dataset root folder.
        name: dataset name used in metric names and reports.
        pixel_labels: whether masks are meaningful (False for image-level sets).
        image_labels: whether image labels are meaningful. False for pixel-level sets in which
            every image is anomalous (polyp, lesion and nodule segmentation sets): their image
            metrics are undefined and excluded from every mean.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed to be anomalous (0.5: above 127 in 8-bit files); None for any non-zero value
            (JPEG masks, whose compression leaves no exact zeros, are then cut at half).

    Raises:
        ValueError: ``mask_threshold`` is not in [0, 1).
    """

    def __init__(
        self,
        root: str,
        name: str,
        pixel_labels: bool = True,
        image_labels: bool = True,
        mask_threshold: float | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.name = name
        self.pixel_labels = pixel_labels
        self.image_labels = image_labels
        self.mask_threshold = check_mask_threshold(mask_threshold, name)
        self.records: list[Record] = []
        self.image_size: int | None = None
        self.mask_size: int | Literal["original"] | None = None
        self.resize: Resize = "squash"
        self.mask_resize: MaskResize = "nearest"
        self.mask_resize_threshold = 0.5

    @property
    def categories(self) -> list[str]:
        """Categories in first-seen order."""
        return list(dict.fromkeys(r.category for r in self.records))

    def __len__(self) -> int:
        return len(self.records)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) float32 in [0, 1] and boolean mask (H, W) of record ``index``.

        Raises:
            FileNotFoundError: a file is missing; ValueError: a file cannot be decoded or the
                mask's size differs from the image's. Messages name the dataset and the file.
        """
        image, mask = self._decode(index)
        return image_to_float(image), mask

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded image (:func:`data_synthesis.io.decode_image`) and boolean mask of ``index``."""
        rec = self.records[index]
        try:
            image = decode_image(rec.image_path)
            if rec.mask_path is None:
                return image, np.zeros(image.shape[:2], bool)
            return image, read_mask(rec.mask_path, self.mask_threshold, image.shape[:2])
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{self.name}: {err}") from err
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.name}: {err}") from err

    def __getitem__(self, index: int) -> Sample:
        rec = self.records[index]
        # Resized at the decoded precision, as training images are (data_synthesis.io).
        image, mask = self._decode(index)
        empty = rec.label == 1 and self.pixel_labels and not mask.any()
        return Sample(
            image=image_to_tensor(image, self.image_size, self.resize),
            mask=mask_to_tensor(
                mask,
                self._mask_target(),
                self.resize,
                self.mask_resize,
                self.mask_resize_threshold,
            ),
            label=torch.tensor(rec.label, dtype=torch.long),
            path=str(rec.image_path),
            dataset=self.name,
            category=rec.category,
            has_mask=torch.tensor(self.pixel_labels),
            index=torch.tensor(index, dtype=torch.long),
            empty_mask=torch.tensor(empty),
        )

    def _mask_target(self) -> int | None:
        if self.mask_size == "original":
            return None
        return self.mask_size or self.image_size

    def check_files(self) -> None:
        """Checks from file headers alone (nothing is decoded) that the set can be evaluated.

        The set has an image; every image and mask exists and opens as an image; every mask has
        its image's size. The first problem in record order is raised.

        Raises:
            FileNotFoundError: an image or mask is missing.
            ValueError: the set is empty, a file is not an image, or a mask's size differs from
                its image's. Messages name the dataset and the file.
        """
        if not self.records:
            raise ValueError(f"{self.name}: no image to evaluate under {self.root}")
        with ThreadPoolExecutor(_CHECK_THREADS) as pool:
            problems = [p for p in pool.map(self._check_record, self.records) if p is not None]
        if problems:
            more = len(problems) - 1
            note = f" ({more} more file(s) with problems)" if more else ""
            raise type(problems[0])(f"{problems[0]}{note}")

    def _check_record(self, rec: Record) -> FileNotFoundError | ValueError | None:
        try:
            size = _header_size(rec.image_path, "image", self.name)
            if rec.mask_path is None:
                return None
            mask_size = _header_size(rec.mask_path, "mask", self.name)
        except (FileNotFoundError, ValueError) as err:
            return err
        if mask_size != size:
            return ValueError(
                f"{self.name}: mask {rec.mask_path} is {mask_size[0]}x{mask_size[1]}, its image "
                f"{rec.image_path} is {size[0]}x{size[1]}; a mask must have its image's size"
            )
        return None


def check_mask_threshold(threshold: float | None, name: str) -> float | None:
    """``threshold`` when it is None or a fraction in [0, 1).

    Raises:
        ValueError: otherwise; the message names the dataset and the option.
    """
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        valid = False
    else:
        valid = 0.0 <= threshold < 1.0
    if not valid:
        raise ValueError(
            f"{name}: mask_threshold must be a fraction in [0, 1) of the mask format's maximum "
            f"(0.5 for soft 0-255 masks) or null for any non-zero pixel; got {threshold!r}"
        )
    return float(threshold)


def _header_size(path: Path, kind: str, name: str) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: {kind} {path} does not exist") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{name}: cannot read {kind} {path} as an image: {err}") from None
