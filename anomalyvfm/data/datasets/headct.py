"""HeadCT: the Kaggle "Head CT - hemorrhage" set (F. Kitamura), image level.

Distributed as ``head_ct/000.png`` .. ``199.png`` (file name = the id, zero-padded to three
digits) and ``labels.csv`` with the header ``id, hemorrhage`` (a space before the second name)
and one ``<id>,<0|1>`` row per image: ids 0-99 hemorrhage, 100-199 normal. Copies that nest the
images once more (``head_ct/head_ct/``) are read too, and any image format is accepted (the
shared copy in ``../shared/data`` is re-saved as JPEG). No masks: image metrics only.
"""

from __future__ import annotations

import csv
from pathlib import Path

from anomalyvfm.data.datasets.base import EvalDataset, Record
from data_synthesis.io import list_images

LAYOUT = "<root>/labels.csv (columns 'id, hemorrhage') and <root>/head_ct/<id:03d>.<png|jpg>"
CATEGORY = "headct"


class HeadCT(EvalDataset):
    """HeadCT (200 images: 100 normal, 100 hemorrhage), read in place; records in id order.

    Args:
        root: folder holding ``labels.csv`` and ``head_ct/``.
        name: dataset name in metric names.

    Raises:
        FileNotFoundError: the root, ``labels.csv`` or the image folder is missing, or a
            labelled id has no image; the message names the root or file and the layout.
        ValueError: ``labels.csv`` lacks the ``id`` / ``hemorrhage`` columns, has a label other
            than 0/1 or a repeated id, or an image has no label.
    """

    def __init__(self, root: str, name: str = "headct") -> None:
        super().__init__(root, name, pixel_labels=False, image_labels=True)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{name} root {self.root} does not exist; expected {LAYOUT}")
        csv_path, folder = self.root / "labels.csv", self.root / "head_ct"
        if (folder / "head_ct").is_dir():
            folder = folder / "head_ct"
        for needed in (csv_path, folder):
            if not needed.exists():
                raise FileNotFoundError(
                    f"{name} root {self.root} has no {needed.name}; expected {LAYOUT}"
                )
        labels = read_labels(csv_path, name)
        files = list_images(folder, recursive=False, allow_empty=True)
        images = {int(p.stem): p for p in files if p.stem.isdigit()}
        unlabelled = sorted(set(images) - set(labels))
        if unlabelled:
            raise ValueError(
                f"{name}: {len(unlabelled)} images in {folder} have no row in {csv_path}, "
                f"e.g. {images[unlabelled[0]].name}"
            )
        for image_id in sorted(labels):
            if image_id not in images:
                raise FileNotFoundError(
                    f"{name}: image {folder / f'{image_id:03d}.png'} (id {image_id} of "
                    f"{csv_path}) is missing; expected {LAYOUT}"
                )
            label = labels[image_id]
            defect = "hemorrhage" if label else "good"
            self.records.append(Record(images[image_id], None, label, CATEGORY, defect))


def read_labels(path: Path, name: str = "headct") -> dict[int, int]:
    """``{id: label}`` from HeadCT's ``labels.csv``; header names are matched without spaces.

    Raises:
        ValueError: a missing column, a non-integer id, a label other than 0/1, or a repeated
            id; the message names the file and line.
    """
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "id" not in header or "hemorrhage" not in header:
        raise ValueError(f"{name}: {path} needs columns 'id' and 'hemorrhage', found {header}")
    col_id, col_label = header.index("id"), header.index("hemorrhage")
    labels: dict[int, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            image_id, label = int(row[col_id]), int(row[col_label])
        except (ValueError, IndexError) as err:
            raise ValueError(f"{name}: {path} line {line}: cannot read {row}: {err}") from err
        if label not in (0, 1):
            raise ValueError(f"{name}: {path} line {line}: label {label} is not 0 or 1")
        if image_id in labels:
            raise ValueError(f"{name}: {path} line {line}: id {image_id} is repeated")
        labels[image_id] = label
    return labels
