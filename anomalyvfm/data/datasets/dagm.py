"""DAGM 2007 (the competition's ten texture classes), as distributed.

``<root>/Class<k>/Test/<NNNN>.PNG`` (512x512 grayscale) with ``Class<k>/Test/Label/Labels.txt``
and a mask ``Label/<NNNN>_label.PNG`` (an ellipse, 0/255) for every defective image. After a
header line, ``Labels.txt`` has one tab-separated row per image: running number, defective flag
(0/1), image file name, an unused 0, and the mask file name (``0`` when normal). The flag is the
label; only the ``Test`` folders are read. ``Class1``..``Class10`` are the categories.
"""

from __future__ import annotations

import re
from pathlib import Path

from anomalyvfm.data.datasets.base import EvalDataset, Record
from anomalyvfm.data.datasets.mvtec import select_categories

LAYOUT = (
    "<root>/Class<k>/Test/<NNNN>.PNG with Class<k>/Test/Label/Labels.txt and "
    "Label/<NNNN>_label.PNG masks"
)
_CLASS = re.compile(r"Class(\d+)")


class DAGM(EvalDataset):
    """DAGM 2007 test split.

    Args:
        root: folder holding ``Class1`` .. ``Class10``.
        categories: classes to use (e.g. ``["Class1", "Class7"]``); all found when None.
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel.

    Raises:
        FileNotFoundError: the root has no ``Class<k>/Test`` folder, a class or its
            ``Labels.txt`` is absent, or an image or mask listed there is missing.
        ValueError: a ``Labels.txt`` row is malformed, or it lists no image.
    """

    def __init__(
        self,
        root: str,
        categories: list[str] | None = None,
        name: str = "dagm",
        mask_threshold: float | None = None,
    ) -> None:
        super().__init__(root, name, mask_threshold=mask_threshold)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{name} root {self.root} does not exist; expected {LAYOUT}")
        found = sorted(
            (
                p.name
                for p in self.root.iterdir()
                if _CLASS.fullmatch(p.name) and (p / "Test").is_dir()
            ),
            key=lambda c: int(c[5:]),  # Class2 before Class10
        )
        if not found:
            raise FileNotFoundError(
                f"{name} root {self.root} has no Class<k>/Test folders; expected {LAYOUT}"
            )
        for category in select_categories(categories, found, self.root, name):
            self.records.extend(_class_records(self.root / category / "Test", category, name))


def _class_records(test: Path, category: str, name: str) -> list[Record]:
    labels = test / "Label" / "Labels.txt"
    if not labels.is_file():
        raise FileNotFoundError(f"{name}: label file {labels} is missing; expected {LAYOUT}")
    records = []
    for i, row in enumerate(labels.read_text(encoding="utf-8-sig").splitlines()):
        fields = row.split()
        if not fields or (i == 0 and len(fields) < 3):  # the header line holds one number
            continue
        if len(fields) < 3 or fields[1] not in ("0", "1"):
            raise ValueError(f"{name}: malformed row {row!r} in {labels}")
        image = test / fields[2]
        if not image.is_file():
            raise FileNotFoundError(f"{name}: image {image} listed in {labels} is missing")
        if fields[1] == "0":
            records.append(Record(image, None, 0, category, "good"))
            continue
        mask_name = fields[4] if len(fields) > 4 and fields[4] != "0" else f"{image.stem}_label.PNG"
        mask = test / "Label" / mask_name
        if not mask.is_file():
            raise FileNotFoundError(f"{name}: mask {mask} for image {image} is missing")
        records.append(Record(image, mask, 1, category, "defect"))
    if not records:
        raise ValueError(f"{name}: {labels} lists no image of {category}")
    return sorted(records, key=lambda r: r.image_path.name)
