"""One image I/O path: the same files give the same pixels and the same order everywhere.

Training (the datamodule's normal images, an on-disk synthetic set), synthesis (the pipeline's
normals stage, the preview) and evaluation (folder and MVTec AD layouts) all read, list and
resize images through ``data_synthesis.io``; these tests feed them the same awkward files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalyvfm.data import AnomalyDataModule, FolderDataset, MVTecAD, OnDiskAnomalyDataset
from anomalyvfm.data.datasets.medical_common import MASK_EXTENSIONS
from data_synthesis import CutPasteGenerator
from data_synthesis.io import (
    IMAGE_EXTENSIONS,
    decode_image,
    list_images,
    load_image,
    resize_image,
)
from data_synthesis.layout import read_layout
from data_synthesis.preview import dataset_samples
from data_synthesis.stages import NormalsStage

# The files, in the one listing order: plain code-point order of the names, so "10_" comes
# before "2_" and upper case before lower case (a natural or case-folding sort would differ).
ORDER = ["10_rgb.png", "2_gray.JPG", "Palette.png", "alpha.png", "exif.jpg", "gray16.png"]
EXIF_ORIENTATION = 0x0112


def write_images(folder: Path) -> list[Path]:
    """8-bit RGB, grey JPEG, palette, RGBA, a rotated-by-EXIF JPEG and 16-bit grey, odd sizes.

    Also a hidden file, a text file and a folder with an image's name, which are not images.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)

    def rgb(h: int, w: int) -> np.ndarray:
        # Smooth plus noise: JPEG and palette quantisation keep some structure to resize.
        yy, xx = np.mgrid[0:h, 0:w]
        base = 127 + 80 * np.sin(xx[..., None] / 5.0 + yy[..., None] / 7.0 + np.arange(3))
        return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)

    Image.fromarray(rgb(37, 53)).save(folder / "10_rgb.png")
    Image.fromarray(rgb(41, 29)[..., 1]).save(folder / "2_gray.JPG", format="JPEG", quality=90)
    Image.fromarray(rgb(27, 39)).convert("P").save(folder / "Palette.png")
    rgba = np.concatenate([rgb(45, 31), rng.integers(0, 256, (45, 31, 1), np.uint8)], axis=2)
    rgba[:5, :5, 3] = 0  # fully transparent corner
    Image.fromarray(rgba, mode="RGBA").save(folder / "alpha.png")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees to display"
    Image.fromarray(rgb(23, 47)).save(folder / "exif.jpg", exif=exif, quality=90)
    gray16 = rng.integers(0, 65536, (33, 47), dtype=np.uint16)
    Image.fromarray(gray16).save(folder / "gray16.png")
    (folder / ".hidden.png").write_bytes((folder / "10_rgb.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / "dir.png").mkdir()
    return [folder / name for name in ORDER]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("one_io") / "images")


def reference(path: Path, size: int) -> torch.Tensor:
    """The one rule: decode, resize at the decoded precision, convert to float, to CHW."""
    return torch.from_numpy(load_image(path, (size, size)).transpose(2, 0, 1).copy())


def stored(path: Path, mode: str | None = None) -> np.ndarray:
    """The file's stored pixels as Pillow gives them (converted to ``mode`` when given)."""
    with Image.open(path) as img:
        return np.asarray(img.convert(mode) if mode else img)


def test_decoding_rules_for_every_kind_of_file(images: list[Path]) -> None:
    files = dict(zip(ORDER, images, strict=True))
    rgb8 = decode_image(files["10_rgb.png"])
    assert rgb8.dtype == np.uint8 and rgb8.shape == (37, 53, 3)
    assert np.array_equal(rgb8, stored(files["10_rgb.png"]))
    gray = decode_image(files["2_gray.JPG"])  # grey replicated to three channels
    assert gray.dtype == np.uint8 and gray.shape == (41, 29, 3)
    assert np.array_equal(gray[..., 0], stored(files["2_gray.JPG"]))
    assert np.array_equal(gray[..., 0], gray[..., 2])
    palette = decode_image(files["Palette.png"])  # palette expanded to its colours
    assert stored(files["Palette.png"]).ndim == 2  # stored as palette indices
    assert palette.dtype == np.uint8
    assert np.array_equal(palette, stored(files["Palette.png"], "RGB"))
    alpha = decode_image(files["alpha.png"])  # composited on black, in float
    raw = stored(files["alpha.png"]).astype(np.float32) / 255.0
    assert alpha.dtype == np.float32 and alpha.shape == (45, 31, 3)
    np.testing.assert_allclose(alpha, raw[..., :3] * raw[..., 3:], atol=1e-7)
    assert (alpha[:5, :5] == 0).all()
    gray16 = decode_image(files["gray16.png"])  # 16 bits scaled by 1/65535, in float
    raw16 = stored(files["gray16.png"]).astype(np.float64) / 65535.0
    assert gray16.dtype == np.float32 and gray16.shape == (33, 47, 3)
    np.testing.assert_allclose(gray16[..., 1], raw16, atol=1e-7)
    assert gray16.max() > 254.5 / 255  # finer than 8 bits: not a multiple of 1/255
    assert not np.allclose(gray16 * 255, np.round(gray16 * 255), atol=1e-3)


def test_exif_orientation_is_not_applied(images: list[Path]) -> None:
    """Pixels are used as stored, as masks and the header size checks see them."""
    path = images[ORDER.index("exif.jpg")]
    with Image.open(path) as img:
        assert img.getexif()[EXIF_ORIENTATION] == 6 and img.size == (47, 23)
    assert np.array_equal(decode_image(path), stored(path, "RGB"))
    assert load_image(path).shape == (23, 47, 3)


@pytest.mark.parametrize("size", [24, 61])  # shrink and enlarge
def test_resize_rule_by_decoded_precision(images: list[Path], size: int) -> None:
    """8-bit files are resized in uint8 then divided by 255; float files plane by plane."""
    for path in images:
        decoded = decode_image(path)
        loaded = load_image(path, (size, size))
        assert loaded.dtype == np.float32 and loaded.shape == (size, size, 3)
        if decoded.dtype == np.uint8:
            pil = Image.fromarray(decoded).resize((size, size), Image.Resampling.BILINEAR)
            assert np.array_equal(loaded, np.asarray(pil).astype(np.float32) / 255.0)
        else:
            planes = [
                np.asarray(
                    Image.fromarray(decoded[..., c]).resize((size, size), Image.Resampling.BILINEAR)
                )
                for c in range(3)
            ]
            assert np.array_equal(loaded, np.stack(planes, axis=-1))
            assert np.array_equal(loaded, resize_image(decoded, (size, size)))


def synthetic_layout(root: Path, images: list[Path]) -> Path:
    """The files as both the normal and the anomalous images of an on-disk synthetic set."""
    for sub in ("train/ok", "train/bad", "ground_truth/bad"):
        (root / sub).mkdir(parents=True)
    for path in images:
        shutil.copy(path, root / "train/ok" / path.name)
        shutil.copy(path, root / "train/bad" / path.name)
        with Image.open(path) as img:
            mask = np.zeros((img.height, img.width), np.uint8)
        mask[2:9, 3:12] = 255
        Image.fromarray(mask).save(root / "ground_truth/bad" / f"{path.stem}.png")
    return root


def mvtec_layout(root: Path, images: list[Path]) -> Path:
    """The files as the normal and the defective test images of one MVTec AD category."""
    category = root / "widget"
    for sub in ("test/good", "test/broken", "ground_truth/broken"):
        (category / sub).mkdir(parents=True)
    for path in images:
        shutil.copy(path, category / "test/good" / path.name)
        shutil.copy(path, category / "test/broken" / path.name)
        with Image.open(path) as img:
            mask = Image.new("L", img.size, 0)
        mask.paste(255, (1, 1, 6, 6))
        mask.save(category / "ground_truth/broken" / f"{path.stem}_mask.png")
    return root


@pytest.mark.parametrize("size", [24, 61])
def test_every_path_gives_the_same_tensors_and_order(
    images: list[Path], tmp_path: Path, size: int
) -> None:
    folder = images[0].parent
    expected = {p.name: reference(p, size) for p in images}
    paths: dict[str, list[tuple[str, torch.Tensor]]] = {}
    orders: dict[str, list[str]] = {"list_images": [p.name for p in list_images(folder)]}

    # Training: the datamodule's online source, normal samples only.
    online = AnomalyDataModule(
        normal_dir=str(folder),
        generators=[CutPasteGenerator()],
        anomaly_ratio=0.0,
        image_size=size,
        num_workers=0,
    )
    online.setup("fit")
    train = online.train_dataset
    assert train is not None
    orders["training"] = [p.name for p in train.files]  # type: ignore[attr-defined]
    drawn = [train[i] for i in range(60)]
    paths["training"] = [(s["path"], s["image"]) for s in drawn]
    assert {Path(p).name for p, _ in paths["training"]} == set(ORDER)  # every file drawn

    # Training: an on-disk synthetic set, through the datamodule too.
    layout = synthetic_layout(tmp_path / "synthetic", images)
    ondisk = AnomalyDataModule(synthetic_dirs=[str(layout)], image_size=size, num_workers=0)
    ondisk.setup("fit")
    disk = ondisk.train_dataset
    assert isinstance(disk, OnDiskAnomalyDataset)
    orders["ondisk normals"] = [p.name for p in disk.layout.normals]
    orders["ondisk anomalies"] = [p.name for p, _ in disk.layout.anomalies]
    samples = [disk[i] for i in range(len(disk))]
    paths["ondisk normals"] = [(s["path"], s["image"]) for s in samples if "/ok/" in s["path"]]
    paths["ondisk anomalies"] = [(s["path"], s["image"]) for s in samples if "/bad/" in s["path"]]

    # Evaluation: a folder set and an MVTec AD category, configured by the datamodule.
    for sub in ("normal", "abnormal"):
        shutil.copytree(folder, tmp_path / "folder" / sub)
    folder_set = FolderDataset("normal", "abnormal", root=str(tmp_path / "folder"))
    mvtec = MVTecAD(str(mvtec_layout(tmp_path / "mvtec", images)))
    evaluation = AnomalyDataModule(
        image_size=size, num_workers=0, eval_batch_size=64, test_datasets=[folder_set, mvtec]
    )
    evaluation.setup("test")
    for name, ds in (("folder", folder_set), ("mvtec", mvtec)):
        for label, kind in ((0, "normal"), (1, "anomalous")):
            key = f"{name} {kind}"
            picked = [i for i, r in enumerate(ds.records) if r.label == label]
            orders[key] = [ds.records[i].image_path.name for i in picked]
            paths[key] = [(ds[i]["path"], ds[i]["image"]) for i in picked]
    batch = next(iter(evaluation.test_dataloader()[1]))  # the loader collates the same tensors
    assert torch.equal(batch["image"], torch.stack([mvtec[i]["image"] for i in range(12)]))

    # Synthesis: the pipeline's normals stage and the preview of an on-disk set.
    stage = NormalsStage(tmp_path / "out", seed=0, source_dir=str(folder), image_size=size)
    orders["pipeline normals"] = [p.name for p in stage.files]
    paths["pipeline normals"] = [
        (str(stage.files[i]), torch.from_numpy(stage.load(i)["image"].transpose(2, 0, 1).copy()))
        for i in range(len(stage.files))
    ]
    pairs = read_layout(layout).pairs()
    orders["preview pairs"] = [normal.name for normal, _, _ in pairs]
    previewed = dataset_samples(layout, num=len(pairs), seed=0, size=size)
    chosen = np.random.default_rng(0).permutation(len(pairs))  # the preview's draw of pairs
    paths["preview"] = [
        (str(pairs[k][0]), torch.from_numpy(image.transpose(2, 0, 1).copy()))
        for k, sample in zip(chosen.tolist(), previewed, strict=True)
        for image in sample[:2]  # the normal and the anomalous image (a copy of the same file)
    ]

    for where, order in orders.items():
        assert order == ORDER, where
    for where, got in paths.items():
        for path, tensor in got:
            name = Path(path).name
            assert tensor.dtype == torch.float32 and tensor.shape == (3, size, size), where
            assert torch.equal(tensor, expected[name]), (where, name)


def test_listing_order_is_by_relative_path_component_by_component(tmp_path: Path) -> None:
    """Recursive listing (training folders, textures, pipeline sources) uses the same order."""
    root = tmp_path / "nested"
    for rel in ("a-c.png", "a/b.png", "a/B.png", "Z/1.webp", "a/2/x.tif", "a/10/x.TIFF"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 3)).save(root / rel, format="PNG")
    (root / "a" / "._b.png").write_bytes(b"resource fork")
    (root / "docs").mkdir()
    (root / "docs" / "readme.txt").write_text("no image here")
    listed = [p.relative_to(root).as_posix() for p in list_images(root)]
    # "a" sorts before "a-c.png" as a whole component; "10" before "2" in plain order.
    assert listed == ["Z/1.webp", "a/10/x.TIFF", "a/2/x.tif", "a/B.png", "a/b.png", "a-c.png"]
    assert [p.name for p in list_images(root, recursive=False)] == ["a-c.png"]
    stage = NormalsStage(tmp_path / "out", seed=0, source_dir=str(root))
    assert [p.relative_to(root).as_posix() for p in stage.files] == listed
    with pytest.raises(ValueError, match="no images .* found in .*docs"):
        list_images(root / "docs")
    assert list_images(root / "docs", allow_empty=True) == []


def test_one_extension_list() -> None:
    """Mask lookups try every image extension, and nothing else."""
    assert set(MASK_EXTENSIONS) == IMAGE_EXTENSIONS
    assert len(MASK_EXTENSIONS) == len(IMAGE_EXTENSIONS)
    assert {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"} == IMAGE_EXTENSIONS
