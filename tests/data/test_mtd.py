"""The Magnetic Tile Defects dataset: fixture in the native layout and the real shared copy."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalyvfm.data import MTD
from anomalyvfm.data.datasets.mtd import mtd_free_split
from tests.conftest import SHARED_DATA
from tests.data.mtd import data as mtd_data

REAL_MTD = SHARED_DATA / "mtd"
REAL_COUNTS = {"Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Uneven": 103, "Free": 150}
needs_real = pytest.mark.skipif(
    not REAL_MTD.is_dir(), reason=f"real MTD not available at {REAL_MTD}"
)


@pytest.fixture(scope="module")
def mtd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mtd_data.write(tmp_path_factory.mktemp("mtd"))


def _counts(ds: MTD) -> dict[str, int]:
    return dict(collections.Counter(r.defect_type for r in ds.records))


def test_fixture_counts_labels_and_category(mtd_root: Path) -> None:
    ds = MTD(str(mtd_root))
    assert _counts(ds) == mtd_data.COUNTS
    assert ds.categories == ["mtd"] and ds.name == "mtd"
    for rec in ds.records:
        assert rec.label == int(rec.defect_type != "Free")
        assert rec.image_path.suffix == ".jpg"  # the PNG masks beside them are not images
        assert (rec.mask_path is None) == (rec.defect_type == "Free")


def test_fixture_samples_have_native_size_masks(mtd_root: Path) -> None:
    ds = MTD(str(mtd_root))
    for i, rec in enumerate(ds.records):
        sample = ds[i]
        with Image.open(rec.image_path) as im:
            width, height = im.size
        assert sample["image"].shape == (3, height, width)
        assert sample["mask"].shape == (height, width)
        assert int(sample["label"]) == rec.label
        assert (sample["mask"].sum() > 0) == (rec.label == 1)


def test_fixture_resizes_to_model_input(mtd_root: Path) -> None:
    ds = MTD(str(mtd_root))
    ds.image_size, ds.mask_size = 32, 16
    sample = ds[0]
    assert sample["image"].shape == (3, 32, 32) and sample["mask"].shape == (16, 16)


def test_include_exclude_ids_and_types(mtd_root: Path) -> None:
    full = MTD(str(mtd_root))
    free = [r.image_path.stem for r in full.records if r.defect_type == "Free"]
    held_out = MTD(str(mtd_root), exclude_ids=free[:3])
    assert len(held_out) == len(full) - 3
    assert {r.image_path.stem for r in held_out.records}.isdisjoint(free[:3])
    only = MTD(str(mtd_root), include_ids=free[1:3])
    assert [r.image_path.stem for r in only.records] == free[1:3]
    cracks = MTD(str(mtd_root), defect_types=["Crack", "Free"], exclude_ids=free[:1])
    assert _counts(cracks) == {"Crack": 2, "Free": 3}


def test_bad_root_and_options_fail_clearly(mtd_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected <root>/MT_<Type>/Imgs"):
        MTD(str(tmp_path / "nowhere"))
    (tmp_path / "MT_Free").mkdir()  # no Imgs folder inside: not the MTD layout
    with pytest.raises(FileNotFoundError, match=r"no MT_<Type>/Imgs folders"):
        MTD(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"\['Scratch'\] not found"):
        MTD(str(mtd_root), defect_types=["Scratch"])
    with pytest.raises(ValueError, match="include_ids has 1 ids that match no image"):
        MTD(str(mtd_root), include_ids=["exp0_num_typo"])
    with pytest.raises(ValueError, match="no images left"):
        MTD(str(mtd_root), defect_types=["Fray"], exclude_ids=["exp0_num_fray000"])


def test_missing_defect_mask_names_the_file(tmp_path: Path) -> None:
    root = mtd_data.write(tmp_path / "mtd", {"Crack": 1, "Free": 1})
    mask = next((root / "MT_Crack" / "Imgs").glob("*.png"))
    mask.unlink()
    with pytest.raises(FileNotFoundError, match=f"mask {mask} for image .* is missing"):
        MTD(str(root))
    # A defect-free tile needs no mask: it is normal by definition.
    next((root / "MT_Free" / "Imgs").glob("*.png")).unlink()
    assert len(MTD(str(root), defect_types=["Free"])) == 1


def test_free_split_is_seeded_disjoint_and_sorted(mtd_root: Path) -> None:
    train, test = mtd_free_split(str(mtd_root), num_train=3, seed=0)
    assert len(train) == 3 and len(test) == 1
    assert train == sorted(train) and set(train).isdisjoint(test)
    free = {r.image_path.stem for r in MTD(str(mtd_root), defect_types=["Free"]).records}
    assert set(train) | set(test) == free
    assert mtd_free_split(str(mtd_root), 3, 0) == (train, test)
    splits = {tuple(mtd_free_split(str(mtd_root), 2, seed)[0]) for seed in range(8)}
    assert len(splits) > 1  # the seed matters
    with pytest.raises(ValueError, match=r"num_train must be in \[1, 3\]"):
        mtd_free_split(str(mtd_root), num_train=4)


@needs_real
def test_real_mtd_counts_and_split() -> None:
    ds = MTD(str(REAL_MTD))
    assert _counts(ds) == REAL_COUNTS
    assert sum(r.label for r in ds.records) == 392
    train, test = mtd_free_split(str(REAL_MTD), num_train=100, seed=0)
    held_out = MTD(str(REAL_MTD), exclude_ids=train)
    assert _counts(held_out) == {**REAL_COUNTS, "Free": 50}
    assert sorted(r.image_path.stem for r in held_out.records if r.label == 0) == test


# Four Uneven tiles ship an all-zero mask (checked on the shared copy): defective by their
# folder, but with no marked pixel. They stay defective (image label from the folder).
EMPTY_DEFECT_MASKS = {"exp3_num_45042", "exp4_num_124690", "exp4_num_352527", "exp4_num_45057"}


@needs_real
def test_real_mtd_masks_match_images() -> None:
    ds = MTD(str(REAL_MTD))
    empty = set()
    for rec in ds.records:
        mask_file = rec.image_path.with_suffix(".png")  # also shipped (empty) for MT_Free
        with Image.open(rec.image_path) as im, Image.open(mask_file) as m:
            assert m.size == im.size, rec.image_path
            mask = np.asarray(m.convert("L"))
        if rec.label == 0:
            assert mask.max() == 0, mask_file
        elif not (mask > 127).any():  # masks are mostly 0/255, with some soft edge values
            empty.add(rec.image_path.stem)
            assert rec.defect_type == "Uneven", mask_file
    assert empty == EMPTY_DEFECT_MASKS


@needs_real
def test_real_mtd_samples_load() -> None:
    ds = MTD(str(REAL_MTD))
    ds.image_size = 64
    first = {}
    for i, rec in enumerate(ds.records):
        if rec.image_path.stem not in EMPTY_DEFECT_MASKS:
            first.setdefault(rec.defect_type, i)
    assert len(first) == 6
    for defect, i in first.items():
        sample = ds[i]
        assert sample["image"].shape == (3, 64, 64), defect
        assert sample["image"].min() >= 0 and sample["image"].max() <= 1
        assert (sample["mask"].sum() > 0) == (defect != "Free"), defect
