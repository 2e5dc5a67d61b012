"""MVTec AD layout (also MPDD, which is distributed in the same layout).

``<root>/<category>/test/<defect_type>/<name>.<ext>`` with ``good`` for normal images and
``<root>/<category>/ground_truth/<defect_type>/<name>_mask.png`` for masks.
"""

from __future__ import annotations

from pathlib import Path

from anomalyvfm.data.datasets.base import EvalDataset, Record

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
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
    """

    def __init__(
        self, root: str, categories: list[str] | None = None, name: str = "mvtec_ad"
    ) -> None:
        super().__init__(root, name)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{name} root {self.root} does not exist; expected {LAYOUT}")
        found = sorted(p.name for p in self.root.iterdir() if (p / "test").is_dir())
        if not found:
            raise FileNotFoundError(
                f"{name} root {self.root} has no category folders; expected {LAYOUT}"
            )
        wanted = categories or found
        missing = [c for c in wanted if c not in found]
        if missing:
            raise FileNotFoundError(
                f"{name}: categories {missing} not found in {self.root} (found {found})"
            )
        for category in wanted:
            self.records.extend(_category_records(self.root / category, category, name))


def _category_records(folder: Path, category: str, name: str) -> list[Record]:
    records = []
    for defect_dir in sorted(p for p in (folder / "test").iterdir() if p.is_dir()):
        defect = defect_dir.name
        for image in sorted(defect_dir.iterdir()):
            if image.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if defect == "good":
                records.append(Record(image, None, 0, category, defect))
                continue
            mask = folder / "ground_truth" / defect / f"{image.stem}_mask.png"
            if not mask.is_file():
                raise FileNotFoundError(f"{name}: mask {mask} for image {image} is missing")
            records.append(Record(image, mask, 1, category, defect))
    if not records:
        raise FileNotFoundError(f"{name}: no test images under {folder / 'test'}")
    return records


class MPDD(MVTecAD):
    """MPDD, distributed in the MVTec AD layout."""

    def __init__(self, root: str, categories: list[str] | None = None, name: str = "mpdd") -> None:
        super().__init__(root, categories, name)
