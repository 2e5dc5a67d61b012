"""MVTec AD layout (also MPDD, which is distributed in the same layout).

``<root>/<category>/test/<defect_type>/<name>.<ext>`` with ``good`` for normal images and
``<root>/<category>/ground_truth/<defect_type>/<name>_mask.png`` for masks.

:func:`read_mvtec_layout` reads any set shipped in this shape with its own normal-folder name and
mask naming (VisA's MVTec-style re-layout, BTAD, DTD-Synthetic reuse it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from anomalyvfm.data.datasets.base import EvalDataset, Record
from data_synthesis.io import list_images

LAYOUT = (
    "<root>/<category>/test/{good,<defect>}/*.png and "
    "<root>/<category>/ground_truth/<defect>/*_mask.png"
)


class MVTecAD(EvalDataset):
    """MVTec AD test split.

    Args:
        root: folder holding one sub-folder per category.
        categories: categories to use; all found when None.
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel.
    """

    def __init__(
        self,
        root: str,
        categories: list[str] | None = None,
        name: str = "mvtec_ad",
        mask_threshold: float | None = None,
    ) -> None:
        super().__init__(root, name, mask_threshold=mask_threshold)
        self.records = read_mvtec_layout(self.root, categories, name, LAYOUT)


def find_categories(root: Path, name: str, layout: str) -> list[str]:
    """Sorted names of the folders under ``root`` that hold a ``test`` folder.

    Raises:
        FileNotFoundError: ``root`` is missing or has no such folder; names ``layout``.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{name} root {root} does not exist; expected {layout}")
    found = sorted(p.name for p in root.iterdir() if (p / "test").is_dir())
    if not found:
        raise FileNotFoundError(f"{name} root {root} has no category folders; expected {layout}")
    return found


def select_categories(
    wanted: Sequence[str] | None, found: Sequence[str], root: Path, name: str
) -> list[str]:
    """``wanted`` (all of ``found`` when None), checked against ``found``.

    Raises:
        FileNotFoundError: a wanted category is not in ``found``.
    """
    chosen = list(wanted) if wanted else list(found)
    missing = [c for c in chosen if c not in found]
    if missing:
        raise FileNotFoundError(
            f"{name}: categories {missing} not found in {root} (found {list(found)})"
        )
    return chosen


def read_mvtec_layout(
    root: Path,
    categories: Sequence[str] | None,
    name: str,
    layout: str,
    normal_dir: str = "good",
    mask_names: Sequence[str] = ("{stem}_mask.png",),
) -> list[Record]:
    """Test records of every selected category of an MVTec-shaped set, sorted.

    Within a category, defect folders are visited in name order, and the images of each in the
    package's one listing order (:func:`data_synthesis.io.list_images`).

    Args:
        root: folder holding one sub-folder per category.
        categories: categories to use; all found when None.
        name: dataset name, for error messages.
        layout: the expected layout, for error messages.
        normal_dir: the ``test`` sub-folder holding normal images (``good``; BTAD: ``ok``).
        mask_names: mask file names under ``ground_truth/<defect>/`` tried in order, as format
            strings of the image's ``stem``; the first that exists is used.

    Raises:
        FileNotFoundError: the root, a category, or a defective image's mask is missing.
    """
    found = find_categories(root, name, layout)
    records = []
    for category in select_categories(categories, found, root, name):
        folder = root / category
        if not (folder / "test" / normal_dir).is_dir():
            raise FileNotFoundError(
                f"{name}: {folder / 'test'} has no {normal_dir!r} folder; expected {layout}"
            )
        for defect_dir in sorted(p for p in (folder / "test").iterdir() if p.is_dir()):
            for image in list_images(defect_dir, recursive=False, allow_empty=True):
                records.append(_record(image, folder, category, normal_dir, mask_names, name))
        if not any(r.category == category for r in records):
            raise FileNotFoundError(f"{name}: no test images under {folder / 'test'}")
    return records


def _record(
    image: Path,
    folder: Path,
    category: str,
    normal_dir: str,
    mask_names: Sequence[str],
    name: str,
) -> Record:
    defect = image.parent.name
    if defect == normal_dir:
        return Record(image, None, 0, category, defect)
    gt_dir = folder / "ground_truth" / defect
    candidates = [gt_dir / pattern.format(stem=image.stem) for pattern in mask_names]
    mask = next((m for m in candidates if m.is_file()), None)
    if mask is None:
        raise FileNotFoundError(
            f"{name}: mask {' or '.join(map(str, candidates))} for image {image} is missing"
        )
    return Record(image, mask, 1, category, defect)


class MPDD(MVTecAD):
    """MPDD, distributed in the MVTec AD layout."""

    def __init__(
        self,
        root: str,
        categories: list[str] | None = None,
        name: str = "mpdd",
        mask_threshold: float | None = None,
    ) -> None:
        super().__init__(root, categories, name, mask_threshold)
