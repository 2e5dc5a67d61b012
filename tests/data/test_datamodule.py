"""Datasets, the online synthetic training set and the datamodule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomalyvfm.data import MPDD, AnomalyDataModule, MVTecAD, OnlineAnomalyDataset
from data_synthesis import CutPasteGenerator, NoiseTextureGenerator
from tests.conftest import SHARED_DATA
from tests.helpers import write_layout


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


# --- On-disk synthetic datasets, mixing, seeding and bad input -------------------------------


def test_ondisk_dataset_uses_both_images_of_each_pair(tmp_path: Path) -> None:
    from anomalyvfm.data import OnDiskAnomalyDataset

    ds = OnDiskAnomalyDataset(str(write_layout(tmp_path / "ds", mask_suffix=True)), 16)
    assert len(ds) == 8
    samples = [ds[i] for i in range(8)]
    normals = [s for s in samples if "train/ok" in s["path"]]
    anomalous = [s for s in samples if "train/bad" in s["path"]]
    assert len(normals) == len(anomalous) == 4
    assert all(int(s["label"]) == 0 and s["mask"].sum() == 0 for s in normals)
    assert all(int(s["label"]) == 1 and s["mask"].sum() > 0 for s in anomalous)
    assert samples[0]["image"].shape == (3, 16, 16) and samples[4]["mask"].shape == (16, 16)
    # Epoch-offset indices wrap around to the same files.
    assert torch.equal(ds[8 + 5]["image"], samples[5]["image"])
    normal, bad, mask = ds.preview_triple(1)
    assert normal.shape == bad.shape == (16, 16, 3) and mask.shape == (16, 16)
    assert (bad[mask > 0] > normal[mask > 0]).all()


def test_ondisk_layout_problems_name_the_file(tmp_path: Path) -> None:
    from PIL import Image

    from anomalyvfm.data import OnDiskAnomalyDataset

    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        OnDiskAnomalyDataset(str(tmp_path / "nowhere"))
    root = write_layout(tmp_path / "a")
    (root / "ground_truth/bad/002.png").unlink()
    with pytest.raises(ValueError, match=r"1 image\(s\) in train/bad without a mask.*002.png"):
        OnDiskAnomalyDataset(str(root))
    Image.new("L", (32, 32)).save(root / "ground_truth/bad/002.png")
    Image.new("L", (32, 32)).save(root / "ground_truth/bad/777_mask.png")
    with pytest.raises(ValueError, match=r"1 mask\(s\) without an image.*777_mask.png"):
        OnDiskAnomalyDataset(str(root))
    (root / "ground_truth/bad/777_mask.png").unlink()
    Image.new("L", (10, 12)).save(root / "ground_truth/bad/001.png")
    with pytest.raises(ValueError, match=r"mask .*001.png is 10x12, its image .*001.png is 32x32"):
        OnDiskAnomalyDataset(str(root))
    import shutil

    shutil.rmtree(root / "ground_truth")
    with pytest.raises(FileNotFoundError, match="lacks .*ground_truth/bad"):
        OnDiskAnomalyDataset(str(root))
    root = write_layout(tmp_path / "b")
    for f in (root / "train/ok").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="no images .* found in .*train/ok"):
        OnDiskAnomalyDataset(str(root))


def write_odd_images(folder: Path) -> dict[str, Path]:
    """Grayscale, RGBA, 16-bit, a truncated PNG and a non-image with a .png name."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    files = {k: folder / f"{k}.png" for k in ("gray", "rgba", "gray16", "truncated", "junk")}
    Image.fromarray((rng.uniform(0, 1, (40, 40)) * 255).astype(np.uint8)).save(files["gray"])
    rgba = (rng.uniform(0, 1, (40, 40, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(files["rgba"])
    gray16 = (rng.uniform(0, 1, (40, 40)) * 65535).astype(np.uint16)
    Image.fromarray(gray16).save(files["gray16"])
    assert Image.open(files["gray16"]).mode == "I;16"
    Image.fromarray((rng.uniform(0, 1, (40, 40, 3)) * 255).astype(np.uint8)).save(
        files["truncated"]
    )
    data = files["truncated"].read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["junk"].write_bytes(b"not an image at all")
    return files


def test_unreadable_sources_are_skipped_counted_and_reported(tmp_path: Path) -> None:
    files = write_odd_images(tmp_path / "odd")
    with pytest.warns(UserWarning, match=r"skipping 2 unreadable file\(s\): .*junk.png"):
        ds = online(tmp_path / "odd", anomaly_ratio=1.0)
    assert {p.name for p, _ in ds.skipped} == {"junk.png", "truncated.png"}
    assert {p.name for p in ds.files} == {"gray.png", "rgba.png", "gray16.png"}
    for i in range(12):  # every mode loads as (3, H, W) in [0, 1]
        image = ds[i]["image"]
        assert image.shape == (3, 48, 48) and image.min() >= 0.0 and image.max() <= 1.0
    assert {ds[i]["path"] for i in range(12)} == {str(files[k]) for k in ("gray", "rgba", "gray16")}


def test_unchecked_unreadable_file_is_skipped_at_read_time(tmp_path: Path) -> None:
    write_odd_images(tmp_path / "odd")
    ds = online(tmp_path / "odd", check="off")
    assert len(ds.files) == 5
    with pytest.warns(UserWarning, match="skipping unreadable training image"):
        paths = {ds[i]["path"] for i in range(20)}
    assert not any("junk" in p or "truncated" in p for p in paths)
    assert {p.name for p in ds.read_failures} == {"junk.png", "truncated.png"}


def test_folders_without_usable_images_fail_naming_the_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images .* found in .*empty"):
        online(tmp_path / "empty")
    files = write_odd_images(tmp_path / "bad")
    for k in ("gray", "rgba", "gray16"):
        files[k].unlink()
    with pytest.raises(ValueError, match=r"no readable image in .*bad: 2 unreadable"):
        online(tmp_path / "bad")


def test_weighted_mix_of_online_and_ondisk_sources(normal_dir: Path, tmp_path: Path) -> None:
    root = write_layout(tmp_path / "ds")
    dm = AnomalyDataModule(
        normal_dir=str(normal_dir),
        generators=[CutPasteGenerator()],
        synthetic_dirs=[str(root)],
        source_weights=[1.0, 3.0],
        image_size=32,
        num_workers=0,
        train_length=400,
    )
    dm.setup("fit")
    ds = dm.train_dataset
    assert ds is not None and len(ds) == 400
    from_disk = [str(root) in ds[i]["path"] for i in range(400)]
    assert 0.68 < sum(from_disk) / 400 < 0.82
    assert torch.equal(ds[17]["image"], dm.build_train_dataset()[17]["image"])
    with pytest.raises(ValueError, match="source_weights has 1 entries for 2 sources"):
        AnomalyDataModule(
            normal_dir=str(normal_dir), synthetic_dirs=[str(root)], source_weights=[1.0]
        ).setup("fit")
    only_disk = AnomalyDataModule(synthetic_dirs=[str(root)], image_size=32)
    only_disk.setup("fit")
    assert len(only_disk.train_dataset) == 8  # type: ignore[arg-type]


def _keys(batch: dict) -> list[bytes]:
    return [img.numpy().tobytes() for img in batch["image"]]


def test_workers_ranks_and_epochs_never_repeat_a_sample(normal_dir: Path) -> None:
    from torch.utils.data import DataLoader, DistributedSampler

    from anomalyvfm.data import EpochSampler

    ds = online(normal_dir, seed=5, anomaly_ratio=1.0, length=16)
    loader = DataLoader(ds, batch_size=2, num_workers=2, sampler=EpochSampler(16, seed=5))
    by_workers = [k for batch in loader for k in _keys(batch)]
    assert len(by_workers) == len(set(by_workers)) == 16
    serial = [ds[i]["image"].numpy().tobytes() for i in range(16)]
    assert set(by_workers) == set(serial)  # worker processes reproduce (seed, index) exactly

    per_rank = []
    for rank in (0, 1):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=5)
        per_rank.append({ds[i]["image"].numpy().tobytes() for i in sampler})
    assert len(per_rank[0]) == len(per_rank[1]) == 8 and not per_rank[0] & per_rank[1]

    epochs = EpochSampler(16, seed=5)
    seen = []
    for epoch in (0, 1):
        epochs.set_epoch(epoch)
        seen.append({ds[i]["image"].numpy().tobytes() for i in epochs})
    assert not seen[0] & seen[1] and seen[0] == set(serial)
    again = online(normal_dir, seed=5, anomaly_ratio=1.0, length=16)
    assert again[21]["image"].numpy().tobytes() == ds[21]["image"].numpy().tobytes()
    assert torch.equal(again[21]["mask"], ds[21]["mask"])


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "I;16"])
def test_load_image_resized_matches_resizing_the_float_image(tmp_path: Path, mode: str) -> None:
    """8-bit opaque images are resized in uint8 (fast path): within one grey level of the float
    route; alpha and 16-bit images take the float route unchanged."""
    import numpy as np
    from PIL import Image

    from data_synthesis.io import load_image, resize_image

    rng = np.random.default_rng(0)
    rgb = (rng.random((90, 120, 3)) * 255).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray((rng.random((90, 120)) * 65535).astype(np.uint16))
    else:
        img = Image.fromarray(rgb).convert("RGBA" if mode == "RGBA" else mode)
    path = tmp_path / f"{mode.replace(';', '')}.png"
    img.save(path)
    for size in ((48, 64), (160, 200)):  # shrink and enlarge
        fast = load_image(path, size)
        slow = resize_image(load_image(path), size)
        assert fast.shape == (*size, 3) and fast.dtype == np.float32
        assert fast.min() >= 0.0 and fast.max() <= 1.0
        diff = np.abs(fast - slow).max()
        if mode in ("RGBA", "I;16"):
            assert diff == 0.0
        else:
            assert diff <= 1.0 / 255 + 1e-6
            # Rounding to the nearest level: half a level at most on average, and unbiased.
            assert np.abs(fast - slow).mean() < 0.5 / 255
            assert abs((fast - slow).mean()) < 0.1 / 255


def test_auto_workers_share_the_cores_among_the_node_ranks(normal_dir: Path) -> None:
    import os

    from anomalyvfm.data.datamodules.anomaly import auto_workers

    cores = len(os.sched_getaffinity(0))
    assert auto_workers(1) == max(cores - 1, 0)
    assert auto_workers(cores) == 0 and auto_workers(2 * cores) == 0
    dm = AnomalyDataModule(normal_dir=str(normal_dir), num_workers="auto", image_size=56)
    assert dm.workers == max(cores - 1, 0)
    assert AnomalyDataModule(normal_dir=str(normal_dir), num_workers=3).workers == 3
    with pytest.raises(ValueError, match="data.num_workers"):
        AnomalyDataModule(normal_dir=str(normal_dir), num_workers=-1)
