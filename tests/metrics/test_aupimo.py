"""Exact AUPIMO against its definition, edge cases, the module, and the paper's approximation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import Tensor

from anomalyvfm.metrics import AUPIMO, aupimo, per_image_aupimo
from tests.metrics.metric_reference import (
    MAP_KINDS,
    adversarial_masks,
    maps_for,
    ref_per_image_aupimo,
    ref_pimo_curves,
)

ATOL = 1e-9
UNEQUAL_SIZES = [(20, 30), (24, 24), (22, 26), (30, 20), (20, 21), (26, 22)]


def tensors(arrays: list[np.ndarray]) -> list[Tensor]:
    return [torch.from_numpy(a) for a in arrays]


def assert_matches(value: Tensor, expected: list[float]) -> None:
    assert value.dtype == torch.float64 and value.shape == (len(expected),)
    ours = value.numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    np.testing.assert_allclose(
        ours[~np.isnan(ours)], np.array(expected)[~np.isnan(ours)], atol=ATOL
    )


def blob_set(
    rng: np.random.Generator, normal: int, anomalous: int, size: int, normal_size: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normal images of ``normal_size``, anomalous ones of ``size`` with blob defects."""
    masks = [np.zeros((normal_size, normal_size), dtype=bool) for _ in range(normal)]
    for _ in range(anomalous):
        blobs = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3.0)
        masks.append(blobs > np.quantile(blobs, rng.uniform(0.9, 0.99)))
    maps = [(rng.normal(size=k.shape) + 3.0 * k).astype(np.float32) for k in masks]
    return maps, masks


# --------------------------------------------------------------------------------------------
# Against the definition
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MAP_KINDS)
def test_per_image_aupimo_matches_reference(kind: str) -> None:
    masks = adversarial_masks()
    maps = maps_for(masks, kind)
    curves = ref_pimo_curves(maps, masks)
    for bounds in ((1e-3, 1e-1), (0.01, 0.5), (0.05, 1.0)):
        value = per_image_aupimo(tensors(maps), tensors(masks), bounds)
        assert_matches(value, ref_per_image_aupimo(maps, masks, bounds, curves=curves))


def test_images_of_different_sizes() -> None:
    # The shared FPR is the mean of the normal images' FPRs, not the pooled pixel fraction.
    masks = adversarial_masks(UNEQUAL_SIZES)
    maps = maps_for(masks, "continuous", seed=1)
    curves = ref_pimo_curves(maps, masks)
    for bounds in ((1e-3, 0.1), (0.02, 0.3)):
        value = per_image_aupimo(tensors(maps), tensors(masks), bounds)
        assert_matches(value, ref_per_image_aupimo(maps, masks, bounds, curves=curves))


def test_default_bounds_on_a_set_large_enough_to_resolve_them() -> None:
    rng = np.random.default_rng(0)
    maps, masks = blob_set(rng, normal=2, anomalous=3, size=48, normal_size=256)
    normal_scores = np.concatenate([m.ravel() for m, k in zip(maps, masks) if not k.any()])
    # Thresholds below this one have shared FPR > 1e-4; the reference checks it.
    cut = float(np.quantile(normal_scores, 1 - 3e-4))
    expected = ref_per_image_aupimo(maps, masks, (1e-5, 1e-4), min_threshold=cut)
    value = per_image_aupimo(tensors(maps), tensors(masks))
    assert_matches(value, expected)
    assert np.nanmin(expected) > 0 and np.nanmax(expected) < 1  # a non-trivial case
    assert float(aupimo(tensors(maps), tensors(masks))) == pytest.approx(np.nanmean(expected))


# --------------------------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------------------------


def test_perfect_and_inverted_maps_score_one_and_zero() -> None:
    masks = adversarial_masks()
    maps = maps_for(masks, "perfect")
    perfect = per_image_aupimo(tensors(maps), tensors(masks), (1e-3, 0.1))
    inverted = per_image_aupimo([-torch.from_numpy(m) for m in maps], tensors(masks), (1e-3, 0.1))
    anomalous = [bool(k.any()) for k in masks]
    assert perfect[anomalous].tolist() == pytest.approx([1.0] * sum(anomalous), abs=1e-12)
    assert inverted[anomalous].tolist() == [0.0] * sum(anomalous)
    assert torch.isnan(perfect[[not a for a in anomalous]]).all()


def test_undefined_cases_are_nan() -> None:
    maps = torch.rand(4, 40, 40)
    normal = torch.zeros(4, 40, 40, dtype=torch.bool)
    defect = normal.clone()
    defect[:, 3:6, 3:6] = True
    assert torch.isnan(per_image_aupimo(maps, normal, (0.01, 0.1))).all()  # no anomalous image
    assert torch.isnan(per_image_aupimo(maps, defect, (0.01, 0.1))).all()  # no normal image
    assert math.isnan(float(aupimo(maps, normal, (0.01, 0.1))))
    # 3 normal images of 1600 pixels: the smallest shared FPR is 1 / 4800 > 1e-4.
    mixed = torch.cat([normal[:3], defect[:1]])
    assert math.isnan(float(aupimo(maps, mixed, (1e-5, 1e-4))))
    assert not math.isnan(float(aupimo(maps, mixed, (1 / 4800, 1e-2))))
    constant = torch.full_like(maps, 0.5)  # one threshold, whose shared FPR is already 1
    assert math.isnan(float(aupimo(constant, mixed, (0.01, 0.1))))


def test_monotone_transforms_do_not_change_aupimo() -> None:
    masks = adversarial_masks(UNEQUAL_SIZES)
    maps = tensors(maps_for(masks, "continuous64", seed=2))
    first = per_image_aupimo(maps, tensors(masks), (1e-3, 0.3))
    second = per_image_aupimo([torch.sigmoid(4 * m) * 3 for m in maps], tensors(masks), (1e-3, 0.3))
    torch.testing.assert_close(first, second, equal_nan=True, atol=1e-12, rtol=0)


def test_invalid_arguments_are_rejected() -> None:
    maps, masks = torch.rand(2, 8, 8), torch.zeros(2, 8, 8)
    for bounds in ((0.0, 0.1), (1e-4, 1e-5), (0.1, 1.5)):
        with pytest.raises(ValueError, match="fpr_bounds"):
            aupimo(maps, masks, bounds)
    with pytest.raises(ValueError, match="mask has shape"):
        aupimo([torch.rand(8, 8)], [torch.zeros(8, 9)])
    with pytest.raises(ValueError, match="fpr_bounds"):
        AUPIMO(fpr_bounds=(0.2, 0.1))


# --------------------------------------------------------------------------------------------
# Module
# --------------------------------------------------------------------------------------------


def test_module_fed_in_chunks_equals_functional() -> None:
    masks = adversarial_masks(UNEQUAL_SIZES)
    maps, gts = tensors(maps_for(masks, "ties", seed=3)), tensors(masks)
    mean, per_image = AUPIMO(fpr_bounds=(0.05, 0.5)), AUPIMO((0.05, 0.5), return_average=False)
    for metric in (mean, per_image):
        metric.update(maps[:2], gts[:2])
        metric.update(maps[2][None], gts[2][None])
        metric.update(maps[3:], gts[3:])
    expected = per_image_aupimo(maps, gts, (0.05, 0.5))
    torch.testing.assert_close(per_image.compute(), expected, equal_nan=True, rtol=0, atol=0)
    assert float(mean.compute()) == float(aupimo(maps, gts, (0.05, 0.5)))
    assert not math.isnan(float(mean.compute()))


@pytest.mark.filterwarnings("ignore:.*compute.*:UserWarning")
def test_module_without_data_is_nan() -> None:
    assert math.isnan(float(AUPIMO().compute()))
    assert AUPIMO(return_average=False).compute().numel() == 0


# --------------------------------------------------------------------------------------------
# The paper's approximation converges to the exact value
# --------------------------------------------------------------------------------------------


def linspace_aupimo(
    maps: list[np.ndarray], masks: list[np.ndarray], bounds: tuple[float, float], steps: int
) -> np.ndarray:
    """AUPIMO as in the paper's code: ``steps`` thresholds linearly spaced over the normal
    images' scores, the bounds snapped to the nearest shared FPR, trapezoid in log FPR."""
    anomalous = [bool(k.any()) for k in masks]
    normal = [np.sort(m.ravel()) for m, a in zip(maps, anomalous) if not a]
    low = min(n[0] for n in normal)
    high = max(n[-1] for n in normal)
    thresholds = np.linspace(low, high, steps)
    shared = np.mean([1 - np.searchsorted(n, thresholds) / n.size for n in normal], axis=0)
    i_low = int(np.argmin(np.abs(shared - bounds[1])))  # thresholds ascend as the FPR falls
    i_high = int(np.argmin(np.abs(shared - bounds[0])))
    x = np.log(shared[i_low : i_high + 1][::-1])
    out = np.full(len(maps), np.nan)
    for i, (m, k) in enumerate(zip(maps, masks)):
        if anomalous[i]:
            defect = np.sort(m[k])
            tpr = 1 - np.searchsorted(defect, thresholds[i_low : i_high + 1]) / defect.size
            y = tpr[::-1]
            out[i] = np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / np.log(bounds[1] / bounds[0])
    return out


def test_linspace_approximation_of_the_paper_converges_to_exact() -> None:
    rng = np.random.default_rng(1)
    maps, masks = blob_set(rng, normal=2, anomalous=3, size=64, normal_size=128)
    exact = per_image_aupimo(tensors(maps), tensors(masks), (1e-3, 1e-1)).numpy()
    coarse = linspace_aupimo(maps, masks, (1e-3, 1e-1), 3_000)
    fine = linspace_aupimo(maps, masks, (1e-3, 1e-1), 300_000)
    anomalous = ~np.isnan(exact)
    error_fine = np.abs(fine - exact)[anomalous]
    error_coarse = np.abs(coarse - exact)[anomalous]
    assert error_fine.max() < 2e-3
    assert error_fine.max() < error_coarse.max()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_default_bounds_on_larger_sets(seed: int) -> None:
    rng = np.random.default_rng(10 + seed)
    maps, masks = blob_set(rng, normal=4, anomalous=8, size=96, normal_size=200)
    maps = [np.round(m, 2) for m in maps]  # ties across normal and defect pixels
    normal_scores = np.concatenate([m.ravel() for m, k in zip(maps, masks) if not k.any()])
    cut = float(np.quantile(normal_scores, 1 - 2e-4))
    expected = ref_per_image_aupimo(maps, masks, (1e-5, 1e-4), min_threshold=cut)
    assert_matches(per_image_aupimo(tensors(maps), tensors(masks)), expected)
