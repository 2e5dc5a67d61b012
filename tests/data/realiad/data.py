"""Writes a tiny Real-IAD as released (run as a script or call ``write``).

``realiad_1024/<cat>/OK/S<NNNN>/<cat>_<NNNN>_OK_C<v>_<time>.jpg`` and
``realiad_1024/<cat>/NG/<defect>/S<NNNN>/<cat>_<NNNN>_NG_<defect>_C<v>_<time>.jpg`` with a
same-stem ``.png`` mask (0/255) where the defect is visible, plus the JSON splits
``realiad_jsons/realiad_jsons/<cat>.json`` (views C1 and C2) and
``realiad_jsons/realiad_jsons_sv/<cat>.json`` (C1 only). Each defective sample's C2 view shows no
defect: it lies under ``NG/`` but is labelled ``OK`` with no mask, as in the real splits.
Deterministic for a given seed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SIZE = 32
# category -> samples as (sample number, anomaly class); S0001 is training, the rest test.
SAMPLES: dict[str, list[tuple[int, str]]] = {
    "audiojack": [(1, "OK"), (2, "OK"), (3, "HS"), (4, "QS")],
    "pcb": [(1, "OK"), (2, "OK"), (3, "OK"), (4, "AK")],
}
VIEWS = ("C1", "C2")


def _entry(cat: str, anomaly_class: str, image: str, mask: str | None) -> dict[str, Any]:
    return {"category": cat, "anomaly_class": anomaly_class, "image_path": image, "mask_path": mask}


def _sample(rng: np.random.Generator, folder: Path, stem: str, defect: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    img = np.clip(rng.uniform(0.3, 0.6, 3) + rng.normal(0, 0.02, (SIZE, SIZE, 3)), 0, 1)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    if defect:
        y, x = rng.integers(0, SIZE - 6, 2)
        img[y : y + 6, x : x + 6] = 0.95
        mask[y : y + 6, x : x + 6] = 255
        Image.fromarray(mask).save(folder / f"{stem}.png")
    Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{stem}.jpg", quality=95)


def write(root: Path, seed: int = 0) -> Path:
    """Writes images and both JSON splits of every category in ``SAMPLES``."""
    rng = np.random.default_rng(seed)
    for cat, samples in SAMPLES.items():
        splits: dict[str, dict[str, list[dict[str, Any]]]] = {
            "realiad_jsons": {"train": [], "test": []},
            "realiad_jsons_sv": {"train": [], "test": []},
        }
        for number, cls in samples:
            sub = "OK" if cls == "OK" else f"NG/{cls}"
            for view in VIEWS:
                kind = "OK" if cls == "OK" else f"NG_{cls}"
                stem = f"{cat}_{number:04d}_{kind}_{view}_2023092209{number:02d}00"
                visible = cls != "OK" and view == "C1"
                _sample(rng, root / "realiad_1024" / cat / sub / f"S{number:04d}", stem, visible)
                image = f"{sub}/S{number:04d}/{stem}.jpg"
                entry = _entry(
                    cat, cls if visible else "OK", image, image[:-4] + ".png" if visible else None
                )
                split = "train" if number == 1 else "test"
                splits["realiad_jsons"][split].append(entry)
                if view == "C1":
                    splits["realiad_jsons_sv"][split].append(entry)
        for json_set, data in splits.items():
            folder = root / "realiad_jsons" / json_set
            folder.mkdir(parents=True, exist_ok=True)
            meta = {"prefix": f"{cat}/", "normal_class": "OK", "pre_transform": None}
            (folder / f"{cat}.json").write_text(json.dumps({"meta": meta, **data}, indent=1))
    return root


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else "realiad_tiny")))
