"""Albumentations pipelines of the generators, the colour rule, and training-pair augmentation."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
import yaml

from anomalyvfm.data import AnomalyDataModule, OnlineAnomalyDataset
from data_synthesis import CutPasteGenerator, NoiseTextureGenerator
from data_synthesis.augment import CUTPASTE_AUGMENT, NOISE_TEXTURE_AUGMENT, build_pipeline
from data_synthesis.base import is_grayscale
from data_synthesis.io import list_images, load_image
from tests.conftest import SHARED_DATA

DTD = SHARED_DATA / "dtd"
MTD_FREE = SHARED_DATA / "mtd" / "MT_Free" / "Imgs"
needs_data = pytest.mark.skipif(
    not (DTD.is_dir() and MTD_FREE.is_dir()), reason="shared dtd or mtd data is absent"
)
INVERT = [{"__class_fullname__": "InvertImg", "p": 1.0}]


def colour_image(shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    rgb = np.stack([xs / shape[1], ys / shape[0], 0.5 + 0.4 * np.sin(xs / 4)], axis=-1)
    return rgb.astype(np.float32)


def test_default_pipelines_are_albumentations_dicts_that_round_trip() -> None:
    for spec, names in (
        (NOISE_TEXTURE_AUGMENT, ["D4", "SomeOf"]),
        (CUTPASTE_AUGMENT, ["ColorJitter"]),
    ):
        pipeline = build_pipeline(spec)
        assert [type(t).__name__ for t in pipeline.transforms] == names
        again = A.from_dict(A.to_dict(pipeline))
        assert [type(t).__name__ for t in again.transforms] == names
    some_of = build_pipeline(NOISE_TEXTURE_AUGMENT).transforms[1]
    assert some_of.n == 3 and len(some_of.transforms) == 7


def test_a_pipeline_from_yaml_replaces_the_default_and_is_seeded() -> None:
    spec = yaml.safe_load(
        """
        transform:
          __class_fullname__: Compose
          p: 1.0
          transforms:
            - {__class_fullname__: InvertImg, p: 1.0}
        """
    )
    img = colour_image()
    inverted = CutPasteGenerator(mask_type="box", rotation=False, augment=spec)
    plain = CutPasteGenerator(mask_type="box", rotation=False, augment=None)
    a, b = inverted(img, np.random.default_rng(3)), plain(img, np.random.default_rng(3))
    assert np.array_equal(a.mask, b.mask) and a.mask.any()
    inside = a.mask > 0
    # The same patch, pasted inverted: bilinear resampling is linear, so 1 - x commutes with it.
    assert np.allclose(a.image[inside], 1.0 - b.image[inside], atol=1e-5)
    assert np.array_equal(a.image[~inside], img[~inside])
    # The shorthand list gives the same pipeline.
    listed = CutPasteGenerator(mask_type="box", rotation=False, augment=INVERT)
    assert listed(img, np.random.default_rng(3)).image.tobytes() == a.image.tobytes()


def test_every_transform_of_the_default_texture_pipeline_is_seeded_per_call() -> None:
    # The same seed twice gives the same texture (even with a shared generator object, after
    # other calls), and transforms do not share one random stream.
    gen = NoiseTextureGenerator(texture_dir=str(DTD)) if DTD.is_dir() else None
    if gen is None:
        pytest.skip(f"texture folder {DTD} is absent")
    img = colour_image()
    first = gen(img, np.random.default_rng(11))
    gen(img, np.random.default_rng(12))
    assert gen(img, np.random.default_rng(11)).image.tobytes() == first.image.tobytes()


def test_a_bad_pipeline_is_a_one_line_error_naming_the_option() -> None:
    with pytest.raises(ValueError, match=r"CutPasteGenerator\.augment is not a valid"):
        CutPasteGenerator(augment=[{"__class_fullname__": "NoSuchTransform", "p": 1.0}])
    with pytest.raises(ValueError, match=r"data\.augment must be an albumentations dict"):
        AnomalyDataModule(augment="flip")  # type: ignore[arg-type]


@needs_data
@pytest.mark.parametrize("kind", ["noise", "cutpaste"])
def test_anomalies_on_grayscale_mtd_tiles_stay_grayscale(kind: str) -> None:
    tiles = [p for p in list_images(MTD_FREE, recursive=False) if p.suffix == ".jpg"][:3]
    texture = load_image(list_images(DTD)[0], (64, 64))
    assert not is_grayscale(texture)

    def make(faithful: bool):
        if kind == "noise":
            return NoiseTextureGenerator(texture_dir=str(DTD), color_faithful=faithful)
        return CutPasteGenerator(mask_type="box", source_dir=str(DTD), color_faithful=faithful)

    spreads = {True: [], False: []}
    for i, path in enumerate(tiles):
        tile = load_image(path, (128, 128))
        assert is_grayscale(tile)
        for faithful in (True, False):
            out = make(faithful)(tile, np.random.default_rng(i))
            inside = out.mask > 0
            assert inside.any() and out.params["grayscale"] is faithful
            pixels = out.image[inside]
            spreads[faithful].append(float((pixels.max(axis=1) - pixels.min(axis=1)).max()))
    assert max(spreads[True]) < 1e-6  # every anomalous pixel is gray
    assert max(spreads[False]) > 0.1  # the rule off: DTD colours come through
    # A colour image keeps coloured anomalies with the rule on.
    out = make(True)(colour_image((128, 128)), np.random.default_rng(0))
    assert out.params["grayscale"] is False


def test_training_augmentation_is_off_by_default_and_moves_the_mask(normal_dir: Path) -> None:
    gens = [CutPasteGenerator(mask_type="box")]
    common = {"normal_dir": str(normal_dir), "generators": gens, "image_size": 48}
    common.update(anomaly_ratio=1.0, check_files="off", train_length=10, seed=5)
    off = AnomalyDataModule(**common).build_train_dataset()
    assert isinstance(off, OnlineAnomalyDataset)
    plain = OnlineAnomalyDataset(str(normal_dir), gens, None, 1.0, 48, 10, 5, "off")
    for i in range(3):
        assert torch.equal(off[i]["image"], plain[i]["image"])
        assert torch.equal(off[i]["mask"], plain[i]["mask"])
    flip = [{"__class_fullname__": "HorizontalFlip", "p": 1.0}]
    flipped = AnomalyDataModule(**common, augment=flip).build_train_dataset()
    for i in range(3):
        s, ref = flipped[i], plain[i]
        assert ref["mask"].any() and int(s["label"]) == 1
        assert torch.allclose(s["image"], ref["image"].flip(-1), atol=1e-6)
        assert torch.equal(s["mask"], ref["mask"].flip(-1))
    # A geometric transform that is not a flip: the mask follows the image, seeded per index.
    shift = {
        "__class_fullname__": "Affine",
        "p": 1.0,
        "translate_px": {"x": [7, 7], "y": [0, 0]},
        "interpolation": 0,
        "border_mode": 0,
    }
    shifted = AnomalyDataModule(**common, augment=[shift]).build_train_dataset()
    s, ref = shifted[0], plain[0]
    assert torch.equal(s["mask"][:, 7:], ref["mask"][:, :-7])
    assert torch.allclose(s["image"][:, :, 7:], ref["image"][:, :, :-7], atol=1e-6)
    assert torch.equal(shifted[0]["image"], s["image"])
