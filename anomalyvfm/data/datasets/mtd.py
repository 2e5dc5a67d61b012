"""Magnetic Tile Defects (MTD, Huang et al. 2020) in its native layout.

``<root>/MT_<Type>/Imgs/<id>.jpg`` with a same-name ``<id>.png`` mask (0/255) beside each image.
``MT_Free`` holds the defect-free tiles; every other type (Blowhole, Break, Crack, Fray, Uneven)
is defective. The whole set is one category, ``mtd``; ``defect_type`` is the folder's type.
Labels come from the folder: a few defective tiles ship an all-zero mask (four Uneven tiles in
the shared copy) and stay defective, with no positive pixel (the evaluation counts and reports
them). Masks are mostly 0/255 with soft edge values (about 70% of the masks have some), so the
set reads them with ``mask_threshold`` 0.5 (above 127) by default.

MTD has no official train/test split. Training on its defect-free tiles (the in-domain check)
needs a fixed one: :func:`mtd_free_split` draws it, and ``include_ids`` / ``exclude_ids`` keep
the training tiles out of the test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anomalyvfm.data.datasets.base import EvalDataset, Record
from data_synthesis.io import list_images

LAYOUT = "<root>/MT_<Type>/Imgs/<id>.jpg with a same-name <id>.png mask (MT_Free: defect-free)"
NORMAL_TYPE = "Free"
CATEGORY = "mtd"
# The masks have soft edges: values above half of 255 are the defect.
MASK_THRESHOLD = 0.5


class MTD(EvalDataset):
    """Magnetic Tile Defects, read in place from its native layout.

    Args:
        root: folder holding the ``MT_<Type>`` folders.
        defect_types: types to use (folder names without ``MT_``, e.g. ``["Free", "Crack"]``);
            all found when None.
        include_ids: keep only these image ids (file stems); None keeps all.
        exclude_ids: drop these image ids, e.g. the defect-free tiles used for training.
        name: dataset name in metric names.
        mask_threshold: fraction of 255 a mask value must exceed (0.5, for the soft edges);
            None for any non-zero pixel.

    Raises:
        FileNotFoundError: the root is missing or not in the MTD layout, a requested type is
            absent or has no image, or a defective image has no mask; the message names the
            expected layout.
        ValueError: an id in ``include_ids`` / ``exclude_ids`` matches no image, or the
            selection is empty.
    """

    def __init__(
        self,
        root: str,
        defect_types: Sequence[str] | None = None,
        include_ids: Sequence[str] | None = None,
        exclude_ids: Sequence[str] | None = None,
        name: str = "mtd",
        mask_threshold: float | None = MASK_THRESHOLD,
    ) -> None:
        super().__init__(root, name, mask_threshold=mask_threshold)
        found = find_types(self.root, name)
        wanted = list(defect_types) if defect_types is not None else list(found)
        missing = [t for t in wanted if t not in found]
        if missing:
            raise FileNotFoundError(
                f"{name}: defect types {missing} not found in {self.root} (found {list(found)}); "
                f"expected {LAYOUT}"
            )
        images = {t: _images(found[t]) for t in found}
        empty = [t for t in wanted if not images[t]]
        if empty:
            raise FileNotFoundError(
                f"{name}: no images in {found[empty[0]]} (defect type {empty[0]}); "
                f"expected {LAYOUT}"
            )
        known = {p.stem for files in images.values() for p in files}
        for option, ids in (("include_ids", include_ids), ("exclude_ids", exclude_ids)):
            unknown = sorted(set(ids or ()) - known)
            if unknown:
                raise ValueError(
                    f"{name}: {option} has {len(unknown)} ids that match no image in {self.root}, "
                    f"e.g. {unknown[:3]}"
                )
        keep = set(include_ids) if include_ids is not None else None
        drop = set(exclude_ids or ())
        for defect in wanted:
            for image in images[defect]:
                if (keep is not None and image.stem not in keep) or image.stem in drop:
                    continue
                self.records.append(_record(image, defect, name))
        if not self.records:
            raise ValueError(f"{name}: no images left in {self.root} after the id/type selection")


def find_types(root: Path, name: str = "mtd") -> dict[str, Path]:
    """``{type: Imgs folder}`` of every ``MT_<Type>/Imgs`` folder under ``root``, sorted by type.

    Raises:
        FileNotFoundError: ``root`` is missing or has no ``MT_<Type>/Imgs`` folder.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{name} root {root} does not exist; expected {LAYOUT}")
    found = {
        p.name[3:]: p / "Imgs"
        for p in sorted(root.iterdir())
        if p.name.startswith("MT_") and (p / "Imgs").is_dir()
    }
    if not found:
        raise FileNotFoundError(
            f"{name} root {root} has no MT_<Type>/Imgs folders; expected {LAYOUT}"
        )
    return found


def _images(folder: Path) -> list[Path]:
    """Images of one type: every image file but the PNGs (the masks), in listing order."""
    files = list_images(folder, recursive=False, allow_empty=True)
    return [p for p in files if p.suffix.lower() != ".png"]


def _record(image: Path, defect: str, name: str) -> Record:
    if defect == NORMAL_TYPE:
        # MTD ships empty masks for the defect-free tiles; an absent mask reads as empty anyway.
        return Record(image, None, 0, CATEGORY, defect)
    mask = image.with_suffix(".png")
    if not mask.is_file():
        raise FileNotFoundError(
            f"{name}: mask {mask} for image {image} is missing; expected {LAYOUT}"
        )
    return Record(image, mask, 1, CATEGORY, defect)


def mtd_free_split(root: str, num_train: int = 100, seed: int = 0) -> tuple[list[str], list[str]]:
    """A fixed, seeded split of the defect-free (``MT_Free``) tile ids into train and test.

    The ids are sorted, shuffled by ``numpy.random.default_rng(seed)``, and the first
    ``num_train`` go to training; both lists are returned sorted. The split depends only on the
    set of ids and the seed, never on the file system's listing order.

    Args:
        root: MTD root folder.
        num_train: defect-free tiles for training; the rest are test normals.
        seed: seed of the shuffle.

    Returns:
        ``(train_ids, test_ids)``.

    Raises:
        FileNotFoundError: the root is not in the MTD layout or has no ``MT_Free`` folder.
        ValueError: ``num_train`` leaves no tile for training or for testing.
    """
    types = find_types(Path(root).expanduser())
    if NORMAL_TYPE not in types:
        raise FileNotFoundError(f"mtd root {root} has no MT_{NORMAL_TYPE}/Imgs; expected {LAYOUT}")
    ids = sorted(p.stem for p in _images(types[NORMAL_TYPE]))
    if not 0 < num_train < len(ids):
        raise ValueError(
            f"num_train must be in [1, {len(ids) - 1}] for the {len(ids)} defect-free tiles "
            f"in {root}, got {num_train}"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    train = sorted(ids[i] for i in order[:num_train])
    test = sorted(ids[i] for i in order[num_train:])
    return train, test
