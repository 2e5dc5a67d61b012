"""A generic test set from folders: normal images, anomalous images, optional masks.

``normal_dir/*`` (label 0), ``abnormal_dir/*`` (label 1), and, when given, ``mask_dir`` with one
mask per anomalous image, matched by file stem: the mask of ``abnormal_dir/<stem>.<ext>`` is
``mask_dir/<stem><mask_suffix>.<any image ext>``. Without ``mask_dir`` the set is image-level
(``pixel_labels=False``). Folders are read flat (no sub-folders), in the package's one listing
order (:func:`data_synthesis.io.list_images`).
"""

from __future__ import annotations

from pathlib import Path

from anomalyvfm.data.datasets.base import EvalDataset, Record
from data_synthesis.io import list_images

LAYOUT = (
    "<normal_dir>/*.<ext>, <abnormal_dir>/*.<ext> and optionally <mask_dir>/<stem><suffix>.<ext>"
)


class FolderDataset(EvalDataset):
    """Normal and anomalous images from two folders, masks from an optional third.

    Args:
        normal_dir: folder of normal images.
        abnormal_dir: folder of anomalous images.
        mask_dir: folder of masks of the anomalous images; None for an image-level set.
        category: the single category of every record.
        name: dataset name in metric names.
        mask_suffix: what follows the image's stem in its mask's name (e.g. ``"_mask"``).
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel (0/1, 0/255, colour masks).
        root: folder the three folders are relative to; None for the working directory.

    Raises:
        FileNotFoundError: a folder is missing or holds no image, or an anomalous image has no
            mask in ``mask_dir``.
        ValueError: an anomalous image matches more than one mask file.
    """

    def __init__(
        self,
        normal_dir: str,
        abnormal_dir: str,
        mask_dir: str | None = None,
        category: str = "folder",
        name: str = "folder",
        mask_suffix: str = "",
        mask_threshold: float | None = None,
        root: str | None = None,
    ) -> None:
        super().__init__(
            root or ".", name, pixel_labels=mask_dir is not None, mask_threshold=mask_threshold
        )
        normals = _images(self.root / normal_dir, name)
        anomalies = _images(self.root / abnormal_dir, name)
        masks = _mask_index(self.root / mask_dir, mask_suffix, name) if mask_dir else None
        if masks is not None and mask_suffix:
            # Masks may lie beside their images (mask_dir == abnormal_dir), told apart by suffix.
            mask_files = {p for paths in masks.values() for p in paths}
            normals = [p for p in normals if p not in mask_files]
            anomalies = [p for p in anomalies if p not in mask_files]
        for image in normals:
            self.records.append(Record(image, None, 0, category, "good"))
        for image in anomalies:
            mask = None
            if masks is not None:
                mask = _find_mask(masks, image, self.root / str(mask_dir), mask_suffix, name)
            self.records.append(Record(image, mask, 1, category, "anomaly"))


def _images(folder: Path, name: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{name}: folder {folder} does not exist; expected {LAYOUT}")
    images = list_images(folder, recursive=False, allow_empty=True)
    if not images:
        raise FileNotFoundError(f"{name}: no images in {folder}; expected {LAYOUT}")
    return images


def _mask_index(folder: Path, suffix: str, name: str) -> dict[str, list[Path]]:
    """Mask files by the image stem they belong to (their stem less ``suffix``)."""
    index: dict[str, list[Path]] = {}
    for path in _images(folder, name):
        if path.stem.endswith(suffix):
            index.setdefault(path.stem[: len(path.stem) - len(suffix)], []).append(path)
    return index


def _find_mask(
    masks: dict[str, list[Path]], image: Path, folder: Path, suffix: str, name: str
) -> Path:
    found = masks.get(image.stem, [])
    if not found:
        raise FileNotFoundError(
            f"{name}: mask {folder / (image.stem + suffix)}.<ext> for image {image} is missing"
        )
    if len(found) > 1:
        raise ValueError(f"{name}: image {image} matches several masks: {[str(p) for p in found]}")
    return found[0]
