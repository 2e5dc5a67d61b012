"""The medical benchmark readers on tiny copies of their distributed layouts.

Image-level sets (HeadCT, BrainMRI, Br35H) have labels and no masks; pixel-level sets (ISIC,
CVC-ClinicDB, CVC-ColonDB, Kvasir, Endo, TN3K) have masks and no meaningful image labels, and
an evaluation through the real task leaves their image metrics out.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from anomalyvfm.data.datamodules.anomaly import AnomalyDataModule
from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.br35h import Br35H
from anomalyvfm.data.datasets.brainmri import BrainMRI
from anomalyvfm.data.datasets.cvc_clinicdb import CVCClinicDB
from anomalyvfm.data.datasets.cvc_colondb import CVCColonDB
from anomalyvfm.data.datasets.endo import Endo
from anomalyvfm.data.datasets.headct import HeadCT
from anomalyvfm.data.datasets.isic import ISIC
from anomalyvfm.data.datasets.kvasir import Kvasir
from anomalyvfm.data.datasets.tn3k import TN3K
from tests.data.br35h import data as br35h_data
from tests.data.brainmri import data as brainmri_data
from tests.data.cvc_clinicdb import data as clinicdb_data
from tests.data.cvc_colondb import data as colondb_data
from tests.data.endo import data as endo_data
from tests.data.headct import data as headct_data
from tests.data.isic import data as isic_data
from tests.data.kvasir import data as kvasir_data
from tests.data.tn3k import data as tn3k_data
from tests.helpers import one_torch_thread, tiny_task


@dataclass(frozen=True)
class SegSpec:
    """A pixel-level set: its reader, fixture writer, and how file stems map to writing order."""

    cls: Callable[..., EvalDataset]
    writer: ModuleType
    count: int
    category: str
    mask_dir: str  # relative to the root, for the missing-mask test
    layout_hint: str  # a piece of the expected-layout text in error messages
    index_of: Callable[[str], int]
    expected_names: Callable[[], list[str]]


def _isic_index(stem: str) -> int:
    return isic_data.image_ids(9).index(int(stem.split("_")[1]))


SEG = {
    "isic": SegSpec(
        ISIC,
        isic_data,
        9,
        "isic",
        "ISBI2016_ISIC_Part1_Test_GroundTruth",
        "ISBI2016_ISIC_Part1_Test_Data/<name>.<ext>",
        _isic_index,
        lambda: [f"ISIC_{i:07d}.jpg" for i in isic_data.image_ids(9)],
    ),
    "cvc_clinicdb": SegSpec(
        CVCClinicDB,
        clinicdb_data,
        12,
        "cvc_clinicdb",
        "Ground Truth",
        "<root>/Original/<name>.<ext>",
        lambda stem: int(stem) - 1,
        # The one listing order is plain name order: "10.tif" before "2.tif".
        lambda: ["1.tif", "10.tif", "11.tif", "12.tif"] + [f"{n}.tif" for n in range(2, 10)],
    ),
    "cvc_colondb": SegSpec(
        CVCColonDB,
        colondb_data,
        11,
        "cvc_colondb",
        "masks",
        "<root>/images/<name>.<ext>",
        lambda stem: int(stem) - 1,
        lambda: ["1.png", "10.png", "11.png"] + [f"{n}.png" for n in range(2, 10)],
    ),
    "kvasir": SegSpec(
        Kvasir,
        kvasir_data,
        8,
        "kvasir",
        "masks",
        "<root>/images/<name>.<ext>",
        lambda stem: kvasir_data.image_ids(8).index(stem),
        lambda: sorted(f"{i}.jpg" for i in kvasir_data.image_ids(8)),
    ),
    "endo": SegSpec(
        Endo,
        endo_data,
        7,
        "endo",
        "masks",
        "<root>/images/<name>.<ext>",
        lambda stem: endo_data.image_ids(7).index(stem),
        lambda: sorted(f"{i}.jpg" for i in endo_data.image_ids(7)),
    ),
    "tn3k": SegSpec(
        TN3K,
        tn3k_data,
        10,
        "tn3k",
        "test-mask",
        "<root>/test-image/<name>.<ext>",
        int,
        lambda: [f"{n:04d}.jpg" for n in range(10)],
    ),
}


@pytest.fixture(scope="module")
def seg_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("medical_seg")
    return {name: spec.writer.write(base / name) for name, spec in SEG.items()}


def _box_mask(spec: SegSpec, stem: str, shape: tuple[int, ...]) -> torch.Tensor:
    y0, y1, x0, x1 = spec.writer.lesion_box(spec.index_of(stem))
    expected = torch.zeros(shape)
    expected[y0:y1, x0:x1] = 1
    return expected


@pytest.mark.parametrize("name", list(SEG))
def test_segmentation_set_reads_every_pair(name: str, seg_roots: dict[str, Path]) -> None:
    spec = SEG[name]
    ds = spec.cls(str(seg_roots[name]))
    ds.check_files()  # the start-up check passes on every layout as distributed
    assert len(ds) == spec.count and ds.name == name and ds.categories == [spec.category]
    assert ds.pixel_labels and not ds.image_labels  # image metrics are excluded
    names = [r.image_path.name for r in ds.records]
    assert names == spec.expected_names()
    assert names == [r.image_path.name for r in spec.cls(str(seg_roots[name])).records]
    for i, rec in enumerate(ds.records):
        assert rec.label == 1 and rec.mask_path is not None
        sample = ds[i]
        height, width = sample["image"].shape[1:]
        # JPEG masks (Kvasir, TN3K, Endo) binarise to exactly the written box at half of 255.
        assert torch.equal(sample["mask"], _box_mask(spec, rec.image_path.stem, (height, width)))
        assert bool(sample["has_mask"]) and int(sample["label"]) == 1


@pytest.mark.parametrize("name", list(SEG))
def test_segmentation_wrong_root_names_root_and_layout(name: str, tmp_path: Path) -> None:
    spec = SEG[name]
    nowhere = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        spec.cls(str(nowhere))
    assert f"root {nowhere} does not exist" in str(err.value)
    assert spec.layout_hint in str(err.value)
    (tmp_path / "unrelated").mkdir()
    with pytest.raises(FileNotFoundError, match=f"root {tmp_path} is not in the {name} layout"):
        spec.cls(str(tmp_path))


@pytest.mark.parametrize("name", list(SEG))
def test_segmentation_missing_mask_names_the_file(name: str, tmp_path: Path) -> None:
    spec = SEG[name]
    root = spec.writer.write(tmp_path / name)
    masks = sorted((root / spec.mask_dir).iterdir())
    masks[0].unlink()
    with pytest.raises(FileNotFoundError, match=f"mask {re.escape(str(masks[0]))} for image"):
        spec.cls(str(root))
    for other in masks[1:]:
        other.unlink()
    (root / spec.mask_dir).rmdir()
    with pytest.raises(FileNotFoundError, match=f"mask folder {re.escape(str(masks[0].parent))}"):
        spec.cls(str(root))


def test_segmentation_variants_splits_and_mirrors(tmp_path: Path) -> None:
    isic = isic_data.write(tmp_path / "isic", num=4, split="Training")
    assert len(ISIC(str(isic), split="train")) == 4
    with pytest.raises(FileNotFoundError, match="ISBI2016_ISIC_Part1_Test_Data"):
        ISIC(str(isic))  # the test folders are not there
    with pytest.raises(ValueError, match="split must be one of"):
        ISIC(str(isic), split="val")  # type: ignore[arg-type]
    tn3k = tn3k_data.write(tmp_path / "tn3k", num_test=3, num_trainval=5)
    assert len(TN3K(str(tn3k))) == 3 and len(TN3K(str(tn3k), split="trainval")) == 5
    # The Kaggle mirror of CVC-ClinicDB keeps PNG copies in PNG/Original + PNG/Ground Truth.
    mirror = clinicdb_data.write(tmp_path / "clinicdb", num=3, mirror="PNG")
    assert [r.image_path.name for r in CVCClinicDB(str(mirror)).records] == [
        "1.png",
        "2.png",
        "3.png",
    ]
    # Endo copies with PNG masks read the same.
    endo = endo_data.write(tmp_path / "endo", num=3, mask_ext=".png")
    ds = Endo(str(endo))
    assert {r.mask_path.suffix for r in ds.records if r.mask_path} == {".png"}
    assert all(ds[i]["mask"].sum() > 0 for i in range(len(ds)))


# -- image-level sets -------------------------------------------------------------------------


def test_headct_reads_labels_csv_with_its_spaced_header(tmp_path: Path) -> None:
    root = headct_data.write(tmp_path / "headct", num=10)
    assert (root / "labels.csv").read_text().splitlines()[0] == "id, hemorrhage"
    ds = HeadCT(str(root))
    assert ds.name == "headct" and ds.categories == ["headct"]
    assert not ds.pixel_labels and ds.image_labels
    assert [r.image_path.name for r in ds.records] == [f"{i:03d}.png" for i in range(10)]
    assert [r.label for r in ds.records] == [1] * 5 + [0] * 5
    assert collections.Counter(r.defect_type for r in ds.records) == {"hemorrhage": 5, "good": 5}
    sample = ds[0]
    assert sample["mask"].shape == sample["image"].shape[1:] and sample["mask"].sum() == 0
    assert not bool(sample["has_mask"]) and int(sample["label"]) == 1


def test_headct_accepts_jpeg_copies_and_the_kaggle_nesting(tmp_path: Path) -> None:
    jpg = headct_data.write(tmp_path / "jpg", num=4, ext=".jpg")
    assert [r.image_path.suffix for r in HeadCT(str(jpg)).records] == [".jpg"] * 4
    nested = headct_data.write(tmp_path / "nested", num=4)
    (nested / "head_ct").rename(tmp_path / "images")
    (nested / "head_ct").mkdir()
    (tmp_path / "images").rename(nested / "head_ct" / "head_ct")
    assert len(HeadCT(str(nested))) == 4


def test_headct_errors_name_the_file(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"root {nowhere} does not exist; expected .*"):
        HeadCT(str(nowhere))
    root = headct_data.write(tmp_path / "headct", num=6)
    (root / "head_ct" / "004.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"head_ct/004.png \(id 4 of .*labels.csv\)"):
        HeadCT(str(root))
    csv = root / "labels.csv"
    csv.write_text("id, hemorrhage\n0,1\n1,2\n")
    with pytest.raises(ValueError, match=r"labels.csv line 3: label 2 is not 0 or 1"):
        HeadCT(str(root))
    csv.write_text("id, hemorrhage\n0,1\n0,0\n")
    with pytest.raises(ValueError, match=r"line 3: id 0 is repeated"):
        HeadCT(str(root))
    csv.write_text("name,label\n0,1\n")
    with pytest.raises(ValueError, match=r"needs columns 'id' and 'hemorrhage'"):
        HeadCT(str(root))
    csv.write_text("id, hemorrhage\n0,1\n1,0\n")
    with pytest.raises(ValueError, match=r"3 images in .* have no row in .*, e.g. 002.png"):
        HeadCT(str(root))
    csv.unlink()
    with pytest.raises(FileNotFoundError, match=f"root {root} has no labels.csv; expected"):
        HeadCT(str(root))


@pytest.mark.parametrize("wrapped", [False, True])
def test_brainmri_reads_mixed_names_and_extensions(tmp_path: Path, wrapped: bool) -> None:
    ds = BrainMRI(str(brainmri_data.write(tmp_path, wrapped=wrapped)))
    assert not ds.pixel_labels and ds.image_labels and ds.categories == ["brainmri"]
    names = [r.image_path.name for r in ds.records]
    assert names == ["1 no.jpeg", "N1.JPG", "no 10.jpg", "no 2.jpg"] + [
        "Y1.jpg",
        "Y10.JPG",
        "Y2.jpg",
        "Y20.jpeg",
        "y3.png",
    ]  # .DS_Store left out; plain code-point order (upper case first, "10" before "2")
    assert [r.label for r in ds.records] == [0] * 4 + [1] * 5
    assert all(r.mask_path is None for r in ds.records)
    assert int(ds[5]["label"]) == 1 and ds[5]["mask"].sum() == 0


def test_br35h_leaves_out_the_unlabelled_pred_folder(tmp_path: Path) -> None:
    root = br35h_data.write(tmp_path, num_no=12, num_yes=11, num_pred=3)
    ds = Br35H(str(root))
    assert len(ds) == 23 and ds.categories == ["br35h"]
    assert collections.Counter(r.label for r in ds.records) == {0: 12, 1: 11}
    assert not any("pred" in r.image_path.parts for r in ds.records)
    # Plain name order: "no10" and "no11" come before "no2".
    assert [r.image_path.name for r in ds.records][:5] == [
        "no0.jpg",
        "no1.jpg",
        "no10.jpg",
        "no11.jpg",
        "no2.jpg",
    ]


@pytest.mark.parametrize("cls", [BrainMRI, Br35H])
def test_two_folder_sets_fail_clearly(cls: Callable[[str], EvalDataset], tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    with pytest.raises(
        FileNotFoundError, match=f"root {nowhere} does not exist; expected <root>/no/"
    ):
        cls(str(nowhere))
    (tmp_path / "no").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no no/ and yes/ folders; expected"):
        cls(str(tmp_path))
    (tmp_path / "yes").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no images in .*/no; expected"):
        cls(str(tmp_path))


# -- evaluation -------------------------------------------------------------------------------


def test_evaluation_drops_image_metrics_of_pixel_level_sets(tmp_path: Path) -> None:
    """Kvasir (pixel level) and BrainMRI (image level) through the real task and trainer."""
    kvasir = Kvasir(str(kvasir_data.write(tmp_path / "kvasir")))
    brain = BrainMRI(str(brainmri_data.write(tmp_path / "brain")))
    pl.seed_everything(0, verbose=False)
    task = tiny_task(56)
    dm = AnomalyDataModule(
        image_size=56, eval_mask_size=28, num_workers=0, test_datasets=[kvasir, brain]
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with one_torch_thread():
        trainer.test(task, datamodule=dm, verbose=False)
    polyp, tumour = task.results["kvasir"]["kvasir"], task.results["brainmri"]["brainmri"]
    assert not any(m.startswith("image_") for m in polyp)
    assert {"pixel_AUROC", "pixel_AUPRO"} <= set(polyp)
    assert "image_AUROC" in tumour and not any(m.startswith("pixel_") for m in tumour)
    assert task.eval_counts == {"kvasir": {"kvasir": 8}, "brainmri": {"brainmri": 9}}
    assert all(0 <= v <= 1 for v in (*polyp.values(), *tumour.values()))
    assert not np.isnan(task.overall_mean["pixel_AUROC"])
    assert "image_AUROC" in task.overall_mean  # from BrainMRI only
