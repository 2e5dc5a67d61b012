"""Real-IAD (Wang et al., CVPR 2024), read through its JSON splits.

As released (``realiad_1024.zip`` or another resolution, and ``realiad_jsons.zip``)::

    <root>/realiad_<resolution>/<category>/OK/S0001/<category>_0001_OK_C1_<time>.jpg
    <root>/realiad_<resolution>/<category>/NG/<defect>/S0026/<...>_NG_<defect>_C1_<time>.{jpg,png}
    <root>/realiad_jsons/<json_set>/<category>.json       (also accepted: <root>/<json_set>/)

Each JSON holds ``meta`` (``prefix`` = ``"<category>/"``, ``normal_class`` = ``"OK"``) and
``train`` / ``test`` lists of ``{category, anomaly_class, image_path, mask_path}``, with paths
relative to ``realiad_<resolution>/<prefix>``. Only ``test`` is read. The label comes from
``anomaly_class``, never from the folder: the views of a defective sample in which the defect is
not visible lie under ``NG/`` but are labelled ``OK``, with no mask.

``json_set`` picks the split: ``realiad_jsons_sv`` (single view, camera C1: 19,802 test images
over the 30 categories) is what the AnomalyVFM reference evaluates on; ``realiad_jsons`` is the
multi-view split (114,585 test images); ``realiad_jsons_fuiad_*`` are the fully-unsupervised
splits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from anomalyvfm.data.datasets.base import EvalDataset, Record
from anomalyvfm.data.datasets.mvtec import select_categories

LAYOUT = (
    "<root>/realiad_<resolution>/<category>/{OK,NG}/... and "
    "<root>/realiad_jsons/<json_set>/<category>.json"
)
JsonSet = Literal[
    "realiad_jsons",
    "realiad_jsons_sv",
    "realiad_jsons_fuiad_0.0",
    "realiad_jsons_fuiad_0.1",
    "realiad_jsons_fuiad_0.2",
    "realiad_jsons_fuiad_0.4",
]


class RealIAD(EvalDataset):
    """Real-IAD test split of one of its JSON splits.

    Args:
        root: folder holding ``realiad_<resolution>`` and ``realiad_jsons``.
        categories: categories to use; all with a JSON file when None.
        resolution: which image release to read, ``realiad_<resolution>``.
        json_set: which JSON split to read (see the module docstring).
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel.

    Raises:
        FileNotFoundError: the image folder, the JSON folder, a category's JSON, or an image or
            mask listed in a JSON is missing; the message names the expected layout.
        ValueError: a JSON has no ``test`` list, or an anomalous entry has no ``mask_path``.
    """

    def __init__(
        self,
        root: str,
        categories: list[str] | None = None,
        resolution: Literal[256, 512, 1024, "raw"] = 1024,
        json_set: JsonSet = "realiad_jsons_sv",
        name: str = "real_iad",
        mask_threshold: float | None = None,
    ) -> None:
        super().__init__(root, name, mask_threshold=mask_threshold)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{name} root {self.root} does not exist; expected {LAYOUT}")
        image_root = self.root / f"realiad_{resolution}"
        if not image_root.is_dir():
            raise FileNotFoundError(
                f"{name}: image folder {image_root} is missing in {self.root}; expected {LAYOUT}"
            )
        json_dir = find_json_dir(self.root, json_set, name)
        found = sorted(p.stem for p in json_dir.glob("*.json"))
        for category in select_categories(categories, found, json_dir, name):
            self.records.extend(_category_records(json_dir / f"{category}.json", image_root, name))


def find_json_dir(root: Path, json_set: str, name: str = "real_iad") -> Path:
    """The folder of ``json_set``'s per-category JSON files under ``root``.

    Raises:
        FileNotFoundError: neither ``<root>/realiad_jsons/<json_set>`` (as the zip extracts)
            nor ``<root>/<json_set>`` holds a JSON file.
    """
    candidates = [root / "realiad_jsons" / json_set, root / json_set]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.json")):
            return folder
    raise FileNotFoundError(
        f"{name}: no JSON split in {' or '.join(map(str, candidates))}; expected {LAYOUT}"
    )


def _category_records(json_file: Path, image_root: Path, name: str) -> list[Record]:
    with json_file.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    if not isinstance(data.get("test"), list):
        raise ValueError(f"{name}: {json_file} has no 'test' list")
    meta = data.get("meta") or {}
    category = json_file.stem
    normal_class = meta.get("normal_class", "OK")
    # Paths are relative to realiad_<resolution>/<prefix>; the prefix is "<category>/".
    base = image_root / meta.get("prefix", f"{category}/")
    records = [
        _record(entry, base, category, normal_class, json_file, name) for entry in data["test"]
    ]
    if not records:
        raise ValueError(f"{name}: {json_file} lists no test images")
    return sorted(records, key=lambda r: r.image_path)


def _record(
    entry: dict[str, Any],
    base: Path,
    category: str,
    normal_class: str,
    json_file: Path,
    name: str,
) -> Record:
    image = base / entry["image_path"]
    if not image.is_file():
        raise FileNotFoundError(f"{name}: image {image} listed in {json_file} is missing")
    defect = str(entry["anomaly_class"])
    if defect == normal_class:
        return Record(image, None, 0, category, defect)
    if not entry.get("mask_path"):
        raise ValueError(f"{name}: anomalous image {image} has no mask_path in {json_file}")
    mask = base / entry["mask_path"]
    if not mask.is_file():
        raise FileNotFoundError(
            f"{name}: mask {mask} for image {image} is missing (listed in {json_file})"
        )
    return Record(image, mask, 1, category, defect)
