"""VisA (Zou et al., ECCV 2022), in its official distribution or the MVTec-style re-layout.

Official distribution (``VisA_20220922.tar``)::

    <root>/<category>/Data/Images/{Normal,Anomaly}/*.JPG
    <root>/<category>/Data/Masks/Anomaly/*.png
    <root>/split_csv/1cls.csv      columns object,split,label,image,mask; paths relative to root

The test rows of ``1cls.csv`` (the one-class split every VisA number is reported on) are read.
The MVTec-style re-layout, written by the split script of spot-diff / anomalib from that CSV::

    <root>/<category>/test/{good,bad}/*.JPG
    <root>/<category>/ground_truth/bad/<stem>.png     (same stem as the image, no suffix)

Both give the same records in the same order (``defect_type`` ``bad`` / ``good``).
The official masks are not 0/255: they store small label values (1, 2, ...); any non-zero pixel
is anomalous (the package's rule for every mask), so they and the re-layout's binarised 0/255
masks read the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from anomalyvfm.data.datasets.base import EvalDataset, Record
from anomalyvfm.data.datasets.mvtec import read_mvtec_layout, select_categories

SPLIT_CSV = Path("split_csv") / "1cls.csv"
CSV_LAYOUT = (
    "<root>/<category>/Data/Images/{Normal,Anomaly}/*.JPG, "
    "<root>/<category>/Data/Masks/Anomaly/*.png and <root>/split_csv/1cls.csv"
)
MVTEC_LAYOUT = (
    "<root>/<category>/test/{good,bad}/*.JPG and <root>/<category>/ground_truth/bad/<stem>.png"
)
CSV_COLUMNS = ("object", "split", "label", "image", "mask")


class VisA(EvalDataset):
    """VisA test split (the ``1cls`` split).

    Args:
        root: the extracted VisA folder (``split_csv`` layout) or the folder of the MVTec-style
            category folders (``mvtec`` layout).
        categories: categories to use; all found when None.
        layout: ``split_csv`` (official distribution), ``mvtec`` (re-layout) or ``auto``
            (``split_csv`` when ``<root>/split_csv/1cls.csv`` exists, else ``mvtec`` when a
            ``<category>/test`` folder exists).
        name: dataset name in metric names.
        mask_threshold: fraction of the format's maximum a mask value must exceed; None (any
            non-zero pixel) suits VisA's label-valued masks.

    Raises:
        FileNotFoundError: the root matches neither layout (the message names both), a
            category is absent, or an image or mask listed for the test split is missing.
        ValueError: the split CSV lacks a column or has an unknown label.
    """

    def __init__(
        self,
        root: str,
        categories: list[str] | None = None,
        layout: Literal["auto", "split_csv", "mvtec"] = "auto",
        name: str = "visa",
        mask_threshold: float | None = None,
    ) -> None:
        super().__init__(root, name, mask_threshold=mask_threshold)
        chosen = detect_layout(self.root, name) if layout == "auto" else layout
        if chosen == "split_csv":
            self.records = _read_split_csv(self.root, categories, name)
        else:
            self.records = read_mvtec_layout(
                self.root,
                categories,
                name,
                MVTEC_LAYOUT,
                mask_names=("{stem}.png",),
            )
        self.layout: Literal["split_csv", "mvtec"] = chosen


def detect_layout(root: Path, name: str = "visa") -> Literal["split_csv", "mvtec"]:
    """The layout of a VisA root: ``split_csv`` or ``mvtec``.

    Raises:
        FileNotFoundError: the root is missing or in neither layout; names both.
    """
    expected = f"expected either {CSV_LAYOUT} (official) or {MVTEC_LAYOUT} (MVTec-style)"
    if not root.is_dir():
        raise FileNotFoundError(f"{name} root {root} does not exist; {expected}")
    if (root / SPLIT_CSV).is_file():
        return "split_csv"
    if any((p / "test").is_dir() for p in root.iterdir()):
        return "mvtec"
    raise FileNotFoundError(f"{name} root {root} is in neither VisA layout; {expected}")


def _read_split_csv(root: Path, categories: Sequence[str] | None, name: str) -> list[Record]:
    split_file = root / SPLIT_CSV
    if not split_file.is_file():
        raise FileNotFoundError(
            f"{name}: split file {split_file} is missing; expected {CSV_LAYOUT}"
        )
    with split_file.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in CSV_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{name}: {split_file} has no rows or lacks columns {missing}")
    test_rows = [r for r in rows if r["split"] == "test"]
    found = sorted({r["object"] for r in test_rows})
    chosen = set(select_categories(categories, found, root, name))
    records = [_csv_record(root, r, split_file, name) for r in test_rows if r["object"] in chosen]
    order = {c: i for i, c in enumerate(categories or found)}
    # The MVTec-style layout's order: category, then defect folder (bad < good), then file name.
    return sorted(records, key=lambda r: (order[r.category], r.defect_type, r.image_path.name))


def _csv_record(root: Path, row: dict[str, str], split_file: Path, name: str) -> Record:
    if row["label"] not in ("normal", "anomaly"):
        raise ValueError(f"{name}: unknown label {row['label']!r} in {split_file}")
    image = root / row["image"]
    if not image.is_file():
        raise FileNotFoundError(f"{name}: image {image} listed in {split_file} is missing")
    if row["label"] == "normal":
        return Record(image, None, 0, row["object"], "good")
    mask = root / row["mask"] if row["mask"] else None
    if mask is None or not mask.is_file():
        raise FileNotFoundError(
            f"{name}: mask {mask or '(none listed)'} for image {image} is missing "
            f"(listed in {split_file})"
        )
    return Record(image, mask, 1, row["object"], "bad")
