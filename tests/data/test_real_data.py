"""The dataset readers on the real data in ``../shared/data``, and an evaluation of each set.

MTD (native layout), MPDD ``metal_plate`` (MVTec layout, JPEG images, PNG masks) and HeadCT
(Kaggle layout) are read in full and evaluated with a tiny, randomly initialised model at a small
resolution through the real task, datamodule and trainer: every image must be evaluated once and
every metric must be defined. A test skips only where its folder is absent.
"""

from __future__ import annotations

import collections
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
from PIL import Image

from anomalyvfm.data.datamodules.anomaly import AnomalyDataModule
from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.headct import HeadCT
from anomalyvfm.data.datasets.mtd import MTD
from anomalyvfm.data.datasets.mvtec import MPDD
from anomalyvfm.tasks import AnomalyVFM
from data_synthesis.io import read_mask
from tests.conftest import SHARED_DATA
from tests.helpers import one_torch_thread, tiny_task

IMAGE_METRICS = ("image_AUROC", "image_AP", "image_F1max")
PIXEL_METRICS = ("pixel_AUROC", "pixel_AP", "pixel_F1max", "pixel_AUPRO")

# Counts from ../shared/data/README.md: {defect_type: images}.
MTD_COUNTS = {"Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Uneven": 103, "Free": 150}
MPDD_COUNTS = {"good": 80, "defective": 81}
HEADCT_COUNTS = {"good": 100, "hemorrhage": 100}


def _mtd() -> EvalDataset:
    return MTD(str(SHARED_DATA / "mtd"))


def _mpdd() -> EvalDataset:
    return MPDD(str(SHARED_DATA / "mpdd"), categories=["metal_plate"])


def _headct() -> EvalDataset:
    return HeadCT(str(SHARED_DATA / "headct"))


# name: (folder under SHARED_DATA, reader, counts per defect type, category, pixel-level)
SETS = {
    "mtd": ("mtd", _mtd, MTD_COUNTS, "mtd", True),
    "mpdd": ("mpdd/metal_plate", _mpdd, MPDD_COUNTS, "metal_plate", True),
    "headct": ("headct", _headct, HEADCT_COUNTS, "headct", False),
}


def _require(name: str) -> Path:
    folder = SHARED_DATA / SETS[name][0]
    if not folder.is_dir():
        pytest.skip(f"{folder} absent: the real {name} data is not available here")
    return folder


@pytest.mark.parametrize("name", list(SETS))
def test_real_counts_labels_and_masks(name: str) -> None:
    _require(name)
    _, reader, counts, category, pixel_level = SETS[name]
    ds = reader()
    assert dict(collections.Counter(r.defect_type for r in ds.records)) == counts
    assert len(ds) == sum(counts.values())
    assert ds.categories == [category]
    assert ds.pixel_labels is pixel_level and ds.image_labels
    normal = {"mtd": "Free"}.get(name, "good")
    assert all(r.label == int(r.defect_type != normal) for r in ds.records)
    if name == "headct":  # labels.csv: ids 0-99 hemorrhage, 100-199 normal; records in id order
        assert [r.image_path.name for r in ds.records] == [f"{i:03d}.jpg" for i in range(200)]
        assert [r.label for r in ds.records] == [1] * 100 + [0] * 100
    assert [r.image_path for r in ds.records] == [r.image_path for r in reader().records]
    empty = []
    for rec in ds.records:
        if rec.label == 0 or not pixel_level:
            assert rec.mask_path is None
            continue
        assert rec.mask_path is not None
        with Image.open(rec.image_path) as im:  # reads the header only
            width, height = im.size
        # The package's mask rule with the set's threshold, checked against the image's size.
        mask = read_mask(rec.mask_path, ds.mask_threshold, (height, width))
        if not mask.any():
            empty.append(rec)
    # MTD ships four Uneven tiles with an all-zero mask (see tests/data/test_mtd.py); no other set
    # has a defective image without a marked pixel.
    if name == "mtd":
        assert len(empty) == 4 and {r.defect_type for r in empty} == {"Uneven"}
    else:
        assert empty == []


@pytest.fixture(scope="module")
def evaluated() -> tuple[AnomalyVFM, dict[str, EvalDataset]]:
    """One test run of a tiny model over every real set present (one run, several datasets)."""
    present = {n: spec for n, spec in SETS.items() if (SHARED_DATA / spec[0]).is_dir()}
    if not present:
        pytest.skip(f"{SHARED_DATA} has none of {[s[0] for s in SETS.values()]}")
    pl.seed_everything(0, verbose=False)
    datasets = {n: spec[1]() for n, spec in present.items()}
    task = tiny_task(56)
    datamodule = AnomalyDataModule(
        image_size=56,
        eval_mask_size=28,
        eval_batch_size=32,
        num_workers=0,
        test_datasets=list(datasets.values()),
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with one_torch_thread():
        trainer.test(task, datamodule=datamodule, verbose=False)
    return task, datasets


@pytest.mark.parametrize("name", list(SETS))
def test_real_set_is_evaluated_in_full(
    name: str, evaluated: tuple[AnomalyVFM, dict[str, EvalDataset]]
) -> None:
    _require(name)
    task, datasets = evaluated
    ds = datasets[name]
    category, pixel_level = SETS[name][3], SETS[name][4]
    assert set(task.results[name]) == {category}
    assert task.eval_counts[name] == {category: len(ds)}  # every image once, none padded
    values = task.results[name][category]
    expected = set(IMAGE_METRICS) | (set(PIXEL_METRICS) if pixel_level else set())
    assert expected <= set(values)
    if not pixel_level:
        assert not any(metric.startswith("pixel_") for metric in values)
    for metric, value in values.items():
        assert not math.isnan(value) and 0.0 <= value <= 1.0, (metric, value)
    # Defective images without a marked pixel are counted: MTD's four Uneven tiles.
    if pixel_level:
        assert task.eval_empty_masks[name] == (4 if name == "mtd" else 0)
    else:
        assert name not in task.eval_empty_masks
    means = task.dataset_means[name]  # one category: its dataset mean is its value
    assert {m: means[m] for m in expected} == pytest.approx({m: values[m] for m in expected})
