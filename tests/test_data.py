"""Datasets, the online synthetic training set and the datamodule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomalyvfm.data import MPDD, AnomalyDataModule, MVTecAD, OnlineAnomalyDataset
from data_synthesis import CutPasteGenerator, NoiseTextureGenerator
from tests.conftest import SHARED_DATA


def online(normal_dir: Path, **kw) -> OnlineAnomalyDataset:
    gens = [NoiseTextureGenerator(), CutPasteGenerator()]
    return OnlineAnomalyDataset(str(normal_dir), gens, image_size=48, **kw)


def test_online_samples_are_reproducible_per_index_and_distinct(normal_dir: Path) -> None:
    a, b = online(normal_dir, seed=3), online(normal_dir, seed=3)
    for i in (0, 5, 123):
        sa, sb = a[i], b[i]
        assert torch.equal(sa["image"], sb["image"]) and torch.equal(sa["mask"], sb["mask"])
    # Different indices (hence different workers/ranks under a sampler) give different images.
    # All anomalous: two normal samples of the same one of 8 source files would be equal.
    anomalous = online(normal_dir, seed=3, anomaly_ratio=1.0)
    images = [anomalous[i]["image"] for i in range(12)]
    assert len({img.sum().item() for img in images}) == 12
    assert not torch.equal(online(normal_dir, seed=4)[5]["image"], a[5]["image"])


def test_online_samples_have_consistent_labels_and_ratio(normal_dir: Path) -> None:
    ds = online(normal_dir, seed=0)
    samples = [ds[i] for i in range(60)]
    for s in samples:
        assert s["image"].shape == (3, 48, 48) and s["mask"].shape == (48, 48)
        assert s["image"].min() >= 0.0 and s["image"].max() <= 1.0
        assert int(s["label"]) == int(s["mask"].sum() > 0)
    frac = sum(int(s["label"]) for s in samples) / len(samples)
    assert 0.3 < frac < 0.7
    assert all(
        int(s["label"]) == 0 for s in (online(normal_dir, anomaly_ratio=0.0)[i] for i in range(8))
    )


def test_online_dataset_rejects_bad_options(normal_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weights"):
        online(normal_dir, weights=[1.0])
    with pytest.raises(ValueError, match="anomaly_ratio"):
        online(normal_dir, anomaly_ratio=1.5)
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        online(tmp_path / "no_such_folder")


def test_mvtec_layout(mvtec_root: Path) -> None:
    ds = MVTecAD(str(mvtec_root))
    assert ds.categories == ["bottle", "tile"] and len(ds) == 12
    ds.image_size, ds.mask_size = 32, 16
    bad = next(i for i, r in enumerate(ds.records) if r.label == 1)
    sample = ds[bad]
    assert sample["image"].shape == (3, 32, 32) and sample["mask"].shape == (16, 16)
    assert sample["mask"].sum() > 0 and sample["category"] == "bottle"
    good = ds[next(i for i, r in enumerate(ds.records) if r.label == 0)]
    assert int(good["label"]) == 0 and good["mask"].sum() == 0
    assert len(MVTecAD(str(mvtec_root), categories=["tile"])) == 6


def test_mvtec_wrong_root_and_category_fail_clearly(mvtec_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist; expected <root>/<category>/test"):
        MVTecAD(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="has no category folders"):
        MVTecAD(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"categories \['cable'\] not found"):
        MVTecAD(str(mvtec_root), categories=["cable"])


def test_mask_of_wrong_size_names_the_file(mvtec_root: Path, tmp_path: Path) -> None:
    import shutil

    from PIL import Image

    root = tmp_path / "broken"
    shutil.copytree(mvtec_root / "tile", root / "tile")
    mask = root / "tile/ground_truth/broken/000_mask.png"
    Image.new("L", (10, 10)).save(mask)
    ds = MVTecAD(str(root))
    idx = next(i for i, r in enumerate(ds.records) if r.mask_path == mask)
    with pytest.raises(ValueError, match="000_mask.png is 10x10"):
        ds[idx]


@pytest.mark.skipif(not (SHARED_DATA / "mpdd").is_dir(), reason="../shared/data/mpdd is absent")
def test_real_mpdd_metal_plate_reads() -> None:
    ds = MPDD(str(SHARED_DATA / "mpdd"))
    labels = [r.label for r in ds.records]
    assert ds.categories == ["metal_plate"] and labels.count(0) == 80 and labels.count(1) == 81
    ds.image_size, ds.mask_size = 64, 64
    sample = ds[labels.index(1)]
    assert sample["mask"].sum() > 0 and sample["image"].shape == (3, 64, 64)


def test_datamodule_sets_eval_resolution_and_builds_loaders(normal_dir, mvtec_root) -> None:
    dm = AnomalyDataModule(
        normal_dir=str(normal_dir),
        generators=[CutPasteGenerator()],
        image_size=48,
        batch_size=4,
        num_workers=0,
        eval_mask_size=24,
        test_datasets=[MVTecAD(str(mvtec_root))],
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 48, 48) and batch["mask"].shape == (4, 48, 48)
    test_batch = next(iter(dm.test_dataloader()[0]))
    assert test_batch["image"].shape[-2:] == (48, 48) and test_batch["mask"].shape[-2:] == (24, 24)
    with pytest.raises(ValueError, match="normal_dir"):
        AnomalyDataModule().setup("fit")
