"""FeatureDistanceFilter on tiny randomly initialised timm ViTs (CPU, offline)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from data_synthesis import FeatureDistanceFilter
from data_synthesis.filter import FilterResult
from tests.conftest import TINY_VIT

# One patch-14 (DINOv2 with registers) and one patch-16 (DINOv3, RoPE) family.
BACKBONES = {14: "vit_small_patch14_reg4_dinov2", 16: "vit_small_patch16_dinov3"}
SIZES = {14: 56, 16: 64}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Saved tiny state dicts, so that every filter built from them has the same weights."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("filter_ckpt")
    out = {}
    for patch, name in BACKBONES.items():
        torch.manual_seed(patch)
        src = timm.create_model(name, pretrained=False, img_size=SIZES[patch], **TINY_VIT)
        save_file(src.state_dict(), root / f"{patch}.safetensors")
        out[patch] = root / f"{patch}.safetensors"
    return out


def make_filter(ckpt: dict[int, Path], patch: int = 14, **kw: object) -> FeatureDistanceFilter:
    args: dict = {"image_size": SIZES[patch], "device": "cpu", "model_kwargs": TINY_VIT}
    args["checkpoint_path"] = str(ckpt[patch])
    args.update(kw)
    return FeatureDistanceFilter(BACKBONES[patch], **args)


def smooth_image(rng: np.random.Generator, h: int = 48, w: int = 60) -> np.ndarray:
    """A low-frequency image, like a photo, so resizing does not change it much."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    phase = rng.uniform(0, 2 * np.pi, 3)
    img = 0.5 + 0.3 * np.sin(3 * xx[..., None] + 2 * yy[..., None] + phase)
    return img.astype(np.float32)


def defect_pair(seed: int, h: int = 48, w: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normal, anomalous, box): noise pasted at rows 12:30, cols 18:40; box a bit larger."""
    rng = np.random.default_rng(seed)
    normal = smooth_image(rng, h, w)
    anomalous = normal.copy()
    anomalous[12:30, 18:40] = rng.random((18, 22, 3), dtype=np.float32)
    box = np.zeros((h, w), np.float32)
    box[8:34, 14:44] = 1.0
    return normal, anomalous, box


@pytest.mark.parametrize("upsample", ["features", "distance"])
def test_identical_images_have_zero_distance_and_are_dropped(checkpoints, upsample) -> None:
    filt = make_filter(checkpoints, upsample=upsample)
    image = smooth_image(np.random.default_rng(0))
    res = filt(image, image.copy(), np.ones(image.shape[:2], np.float32))
    assert isinstance(res, FilterResult)
    assert res.distance.shape == (48, 60) and res.distance.dtype == np.float32
    assert float(np.abs(res.distance).max()) < 1e-5
    assert not res.kept and res.mask.sum() == 0 and res.params["mask_pixels"] == 0


@pytest.mark.parametrize("patch", [14, 16])
@pytest.mark.parametrize("upsample", ["features", "distance"])
def test_mask_stays_in_box_and_distance_peaks_inside(checkpoints, patch, upsample) -> None:
    filt = make_filter(checkpoints, patch, threshold=0.0, upsample=upsample)
    normal, anomalous, box = defect_pair(1)
    res = filt(normal, anomalous, box)
    inside, outside = box > 0, box == 0
    # Attention spreads the change beyond the box: only the box keeps the mask inside it.
    assert (res.distance[outside] > 0).any()
    assert res.mask[outside].sum() == 0
    assert res.distance[inside].mean() > 2 * res.distance[outside].mean()
    assert res.mask.dtype == np.float32 and set(np.unique(res.mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(res.mask, ((res.distance > 0.0) & inside).astype(np.float32))
    assert res.kept and res.params == {
        "threshold": 0.0,
        "backbone": BACKBONES[patch],
        "mask_pixels": int(res.mask.sum()),
        "layer": -1,
        "image_size": SIZES[patch],
    }


def test_higher_threshold_gives_a_subset_mask(checkpoints) -> None:
    normal, anomalous, box = defect_pair(2)
    masks = [
        make_filter(checkpoints, threshold=t)(normal, anomalous, box).mask
        for t in (0.0, 0.05, 0.1, 0.2, 0.4, 2.0)
    ]
    for low, high in zip(masks, masks[1:], strict=False):
        assert not (high > low).any()
    counts = [int(m.sum()) for m in masks]
    assert counts[0] > counts[3] > 0 and counts[-1] == 0


def test_batched_equals_one_by_one_for_mixed_sizes(checkpoints) -> None:
    pairs = [defect_pair(s) for s in range(3)] + [defect_pair(3, 40, 72), defect_pair(4, 64, 50)]
    normals, anomalous, boxes = (list(x) for x in zip(*pairs, strict=True))
    batched = make_filter(checkpoints, batch_size=3).filter_batch(normals, anomalous, boxes)
    single = make_filter(checkpoints, batch_size=1)
    for (n, a, b), res in zip(pairs, batched, strict=True):
        one = single(n, a, b)
        assert res.distance.shape == n.shape[:2]
        np.testing.assert_allclose(res.distance, one.distance, atol=1e-5)
    stacked = single.distance(normals[:3], anomalous[:3])
    assert stacked.shape == (3, 48, 60)
    with pytest.raises(ValueError, match="different sizes"):
        single.distance(normals, anomalous)


def test_same_inputs_give_identical_arrays(checkpoints) -> None:
    normal, anomalous, box = defect_pair(5)
    filt = make_filter(checkpoints, 16, batch_size=2)
    first = filt.filter_batch([normal, anomalous], [anomalous, normal], [box, box])
    again = filt.filter_batch([normal, anomalous], [anomalous, normal], [box, box])
    # A copy sent to a worker process carries only the config and rebuilds the same model.
    clone = pickle.loads(pickle.dumps(filt)).filter_batch(
        [normal, anomalous], [anomalous, normal], [box, box]
    )
    for a, b, c in zip(first, again, clone, strict=True):
        np.testing.assert_array_equal(a.distance, b.distance)
        np.testing.assert_array_equal(a.distance, c.distance)
        np.testing.assert_array_equal(a.mask, b.mask)


def test_checkpoint_path_loads_the_saved_weights(checkpoints, tmp_path) -> None:
    src = timm.create_model(BACKBONES[14], pretrained=False, img_size=56, **TINY_VIT)
    state = src.state_dict()
    torch.save(state, tmp_path / "w.pth")
    from safetensors.torch import save_file

    save_file(state, tmp_path / "w.safetensors")
    normal, anomalous, _ = defect_pair(6)
    dists = []
    for file in ("w.pth", "w.safetensors"):
        filt = make_filter(checkpoints, checkpoint_path=str(tmp_path / file))
        dists.append(filt.distance([normal], [anomalous]))
        for key, value in state.items():
            assert torch.equal(filt.model.state_dict()[key], value), key
    np.testing.assert_array_equal(dists[0], dists[1])
    other = make_filter(checkpoints).distance([normal], [anomalous])
    assert np.abs(other - dists[0]).max() > 1e-3


def test_checkpoint_and_download_errors_name_the_fix(tmp_path) -> None:
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(FileNotFoundError, match="checkpoint_path .*missing.safetensors"):
        FeatureDistanceFilter(BACKBONES[14], checkpoint_path=str(missing))
    # Construction never downloads; the first use does, and offline it says what to set.
    filt = FeatureDistanceFilter(
        "vit_small_patch14_dinov2.lvd142m", model_kwargs=TINY_VIT, image_size=56, device="cpu"
    )
    image = smooth_image(np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="checkpoint_path"):
        filt(image, image)


def test_image_size_rounds_to_the_patch_size(checkpoints) -> None:
    assert make_filter(checkpoints, 14, image_size=60).input_size == 56
    assert make_filter(checkpoints, 16, image_size=90).input_size == 96
    res = make_filter(checkpoints, 16, image_size=90)(*defect_pair(7))
    assert res.params["image_size"] == 96 and res.distance.shape == (48, 60)


def test_bad_input_is_named(checkpoints) -> None:
    filt = make_filter(checkpoints)
    normal, anomalous, box = defect_pair(8)
    with pytest.raises(ValueError, match="pair 0: normal image"):
        filt(normal, anomalous[:40])
    with pytest.raises(ValueError, match="box_mask shape"):
        filt(normal, anomalous, box[:40])
    with pytest.raises(ValueError, match="2 normal images but 1"):
        filt.distance([normal, normal], [anomalous])
    with pytest.raises(ValueError, match="layer 5 out of range"):
        make_filter(checkpoints, layer=5).distance([normal], [anomalous])
    with pytest.raises(ValueError, match="dtype"):
        FeatureDistanceFilter(dtype="float64")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a timm vision transformer"):
        _ = FeatureDistanceFilter("resnet18", pretrained=False, device="cpu").model


@pytest.mark.parametrize("grid,size", [((4, 4), (48, 60)), ((4, 5), (3, 70)), ((5, 7), (101, 13))])
def test_feature_upsampling_equals_interpolate_then_cosine(grid, size) -> None:
    """The memory-light path equals upsampling C x H x W features, then a per-pixel cosine."""
    from torch.nn import functional as F

    from data_synthesis.upsample import upsampled_cosine

    gen = torch.Generator().manual_seed(0)
    fa, fb = torch.randn(16, *grid, generator=gen), torch.randn(16, *grid, generator=gen)
    ua, ub = (
        F.interpolate(f[None], size, mode="bilinear", align_corners=False)[0] for f in (fa, fb)
    )
    expected = F.cosine_similarity(ua, ub, dim=0)
    torch.testing.assert_close(upsampled_cosine(fa, fb, size), expected, atol=2e-6, rtol=0)


def test_naflexvit_backbone_is_read_through_its_embeds_module() -> None:
    """NaFlexVit (SigLIP 2 NaFlex) keeps its patch embedding under ``embeds``: the filter reads
    its patch size there, as the training backbone wrapper does, and compares its tokens."""
    torch.manual_seed(0)
    filt = FeatureDistanceFilter(
        "naflexvit_so400m_patch16_siglip",
        pretrained=False,
        model_kwargs=TINY_VIT,
        image_size=70,
        device="cpu",
        threshold=0.0,
    )
    assert not hasattr(filt.model, "patch_embed") and filt.input_size == 64
    normal, anomalous, box = defect_pair(3)
    res = filt(normal, anomalous, box)
    same = filt(normal, normal.copy(), box)
    assert float(np.abs(same.distance).max()) < 1e-5
    assert res.kept and res.distance[box > 0].mean() > res.distance[box == 0].mean()
