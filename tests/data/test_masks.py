"""The one mask rule: every encoding of a binary mask reads the same everywhere it is read.

Each case writes a file with PIL/numpy whose anomalous region is rows 2-4, columns 3-6 of an
8x10 image, then checks the boolean mask that :func:`data_synthesis.io.read_mask`, an
evaluation dataset and an on-disk training set each read from it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalyvfm.data.datasets.folder import FolderDataset
from anomalyvfm.data.datasets.ksdd import labelled_record
from anomalyvfm.data.datasets.ondisk import OnDiskAnomalyDataset
from data_synthesis.io import read_mask
from data_synthesis.layout import read_item

HEIGHT, WIDTH = 8, 10
REGION = np.zeros((HEIGHT, WIDTH), bool)
REGION[2:5, 3:7] = True


def _grey(on: int, dtype: type = np.uint8) -> np.ndarray:
    return np.where(REGION, on, 0).astype(dtype)


def _rgb(colour: tuple[int, int, int]) -> np.ndarray:
    out = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    out[REGION] = colour
    return out


def _palette(path: Path) -> None:
    img = Image.fromarray(REGION.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 200, 30, 10] + [0] * 762)  # index 1 is a dark red
    img.save(path)


def _sixteen_bit(path: Path) -> None:
    Image.fromarray(_grey(1000, np.uint16)).save(path)  # 16-bit PNG with small values


def _rgba_transparent_background(path: Path) -> None:
    # White everywhere, but only the region is opaque: transparent pixels carry no mask.
    rgba = np.full((HEIGHT, WIDTH, 4), 255, np.uint8)
    rgba[..., 3] = np.where(REGION, 255, 0)
    Image.fromarray(rgba).save(path)


def _la(path: Path) -> None:
    la = np.stack([_grey(1), np.full((HEIGHT, WIDTH), 255, np.uint8)], axis=-1)
    Image.fromarray(la, mode="LA").save(path)


def _bitmap(path: Path) -> None:
    Image.fromarray(REGION).convert("1").save(path)


WRITERS: dict[str, Callable[[Path], None]] = {
    "zero_one_png": lambda p: Image.fromarray(_grey(1)).save(p),
    "zero_255_png": lambda p: Image.fromarray(_grey(255)).save(p),
    "zero_255_bmp": lambda p: Image.fromarray(_grey(255)).save(p.with_suffix(".bmp")),
    "red_on_black_rgb": lambda p: Image.fromarray(_rgb((255, 0, 0))).save(p),
    "dim_blue_rgb": lambda p: Image.fromarray(_rgb((0, 0, 3))).save(p),
    "palette_png": _palette,
    "sixteen_bit_png": _sixteen_bit,
    "rgba_transparent_background": _rgba_transparent_background,
    "la_zero_one": _la,
    "one_bit": _bitmap,
    "class_ids_tiff": lambda p: Image.fromarray(_grey(2)).save(p.with_suffix(".tif")),
}


def write_mask(kind: str, folder: Path, stem: str = "m") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    WRITERS[kind](path)
    written = [p for p in folder.iterdir() if p.stem == stem]
    assert len(written) == 1
    return written[0]


@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_binary_encoding_reads_as_its_region(kind: str, tmp_path: Path) -> None:
    mask = read_mask(write_mask(kind, tmp_path))
    assert mask.dtype == bool and mask.shape == (HEIGHT, WIDTH)
    assert np.array_equal(mask, REGION)


@pytest.mark.parametrize("kind", ["zero_one_png", "red_on_black_rgb", "palette_png", "one_bit"])
def test_evaluation_and_training_readers_agree(kind: str, tmp_path: Path) -> None:
    """The same file gives the same mask to an evaluation set and to the on-disk training set."""
    image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    # Evaluation: a folder set, masks matched by stem.
    for sub in ("normal", "abnormal"):
        (tmp_path / "eval" / sub).mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / "eval" / sub / "a.png")
    write_mask(kind, tmp_path / "eval" / "masks", "a")
    ds = FolderDataset("normal", "abnormal", "masks", root=str(tmp_path / "eval"))
    evaluated = ds[1]["mask"].numpy() > 0
    assert not bool(ds[1]["empty_mask"])
    # Training: the reference layout of an offline synthetic set.
    layout = tmp_path / "train"
    for sub in ("train/ok", "train/bad"):
        (layout / sub).mkdir(parents=True)
        Image.fromarray(image).save(layout / sub / "a.png")
    mask_file = write_mask(kind, layout / "ground_truth" / "bad", "a")
    trained = OnDiskAnomalyDataset(str(layout), image_size=WIDTH)
    _, from_layout = read_item(layout / "train" / "bad" / "a.png", mask_file)
    assert np.array_equal(evaluated, REGION)
    assert np.array_equal(from_layout > 0, REGION)
    assert int(trained[1]["label"]) == 1  # the anomalous item keeps its label: mask not empty
    # KolektorSDD-style labels (defective = mask has an anomalous pixel) follow the same rule.
    assert labelled_record(Path("img.png"), mask_file, "c", "ksdd").label == 1


def test_soft_mask_threshold_is_a_fraction_of_the_format_maximum(tmp_path: Path) -> None:
    soft = np.zeros((HEIGHT, WIDTH), np.uint8)
    soft[0, 0], soft[1, 1], soft[2, 2] = 40, 128, 255
    path = tmp_path / "soft.png"
    Image.fromarray(soft).save(path)
    assert read_mask(path).sum() == 3  # any non-zero value
    assert np.array_equal(np.argwhere(read_mask(path, 0.5)), [[1, 1], [2, 2]])  # above 127.5
    assert np.array_equal(np.argwhere(read_mask(path, 0.9)), [[2, 2]])
    # 16 bits: the same fractions of 65535.
    Image.fromarray(soft.astype(np.uint16) * 257).save(tmp_path / "soft16.png")
    assert np.array_equal(read_mask(tmp_path / "soft16.png", 0.5), read_mask(path, 0.5))


def test_jpeg_masks_are_cut_at_half_unless_a_threshold_is_given(tmp_path: Path) -> None:
    path = tmp_path / "mask.jpg"
    Image.fromarray(_grey(255)).save(path, quality=70)
    with Image.open(path) as im:
        raw = np.asarray(im)
    assert ((raw > 0) & ~REGION).any()  # compression leaves non-zero values outside the region
    assert np.array_equal(read_mask(path), REGION)
    assert read_mask(path, 0.0).sum() > REGION.sum()


def test_a_colour_mask_on_a_transparent_coloured_background(tmp_path: Path) -> None:
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    rgba[..., :3] = (0, 255, 0)  # green stored under alpha 0 is not a mask
    rgba[REGION] = (255, 0, 0, 128)  # half-transparent red is
    Image.fromarray(rgba).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), REGION)
    assert not read_mask(tmp_path / "m.png", 0.6).any()  # 255 * 128/255 = 128 < 0.6 * 255


def test_read_mask_errors_name_the_file(tmp_path: Path) -> None:
    path = write_mask("zero_255_png", tmp_path)
    with pytest.raises(ValueError, match=r"m\.png is 10x8, its image is 12x8"):
        read_mask(path, shape=(8, 12))
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_mask(tmp_path / "absent.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read mask .*text.png"):
        read_mask(tmp_path / "text.png")
    with pytest.raises(ValueError, match="threshold must be in"):
        read_mask(path, 127)


@pytest.mark.parametrize("threshold", [127, 1.0, -0.1, True])
def test_datasets_reject_a_threshold_outside_zero_one(threshold: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"folder: mask_threshold must be a fraction in \[0, 1\)"):
        FolderDataset(str(tmp_path), str(tmp_path), mask_threshold=threshold)


def test_defective_image_with_an_empty_mask_is_flagged(tmp_path: Path) -> None:
    image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    for sub in ("normal", "abnormal"):
        (tmp_path / sub).mkdir()
        Image.fromarray(image).save(tmp_path / sub / "a.png")
        Image.fromarray(image).save(tmp_path / sub / "b.png")
    (tmp_path / "masks").mkdir()
    Image.fromarray(_grey(255)).save(tmp_path / "masks" / "a.png")
    Image.fromarray(_grey(0)).save(tmp_path / "masks" / "b.png")
    ds = FolderDataset("normal", "abnormal", "masks", root=str(tmp_path))
    flags = [bool(ds[i]["empty_mask"]) for i in range(len(ds))]
    assert [r.label for r in ds.records] == [0, 0, 1, 1]
    assert flags == [False, False, False, True]  # normal images are never flagged
    image_level = FolderDataset("normal", "abnormal", root=str(tmp_path))
    assert not any(bool(image_level[i]["empty_mask"]) for i in range(len(image_level)))
