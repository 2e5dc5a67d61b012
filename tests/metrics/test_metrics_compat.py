"""Compatibility modes against direct transcriptions of the approximations they reproduce."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import Tensor

from anomalyvfm.metrics import (
    binary_auroc,
    binary_f1_max,
    binned_aupro,
    binned_auroc,
    binned_average_precision,
    metric_functions,
    threshold_loop_aupro,
)
from tests.metrics.metric_reference import (
    adversarial_masks,
    maps_for,
    ref_adeval_metrics,
    ref_threshold_loop_aupro,
)

# Our counting and the transcriptions' loops add the same numbers in other orders.
ATOL = 1e-9
UNEQUAL_SIZES = [(20, 30), (24, 24), (22, 26), (30, 20), (20, 21), (26, 22)]
BINNED = {
    "auroc": binned_auroc,
    "ap": binned_average_precision,
}


def tensors(arrays: list[np.ndarray]) -> list[Tensor]:
    return [torch.from_numpy(a) for a in arrays]


def realistic(seed: int, n: int = 16, size: int = 96) -> tuple[Tensor, Tensor]:
    """Smooth sigmoid maps after a 5x5 mean filter, as the reference evaluates them."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n):
        mask = np.zeros((size, size), dtype=bool)
        if i >= n // 2:
            blobs = ndimage.gaussian_filter(rng.normal(size=(size, size)), 4.0)
            mask = blobs > np.quantile(blobs, rng.uniform(0.93, 0.995))
        logit = 6 * ndimage.gaussian_filter(rng.normal(size=(size, size)), 2.0) - 3
        logit += 4 * ndimage.gaussian_filter(mask.astype(float), 1.5)
        probability = ndimage.uniform_filter(1 / (1 + np.exp(-logit)), 5, mode="constant")
        maps.append(probability.astype(np.float32))
        masks.append(mask)
    return torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(masks))


# --------------------------------------------------------------------------------------------
# The AnomalyVFM reference's histogram (ADEval)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["continuous", "ties", "unequal_sizes", "seven_bins"])
def test_binned_metrics_match_transcription(case: str) -> None:
    sizes = UNEQUAL_SIZES if case == "unequal_sizes" else None
    masks = adversarial_masks(sizes)
    maps = maps_for(masks, "ties" if case == "ties" else "continuous", seed=1)
    bins = 7 if case == "seven_bins" else 200
    expected = ref_adeval_metrics(maps, masks, bins)
    for name, function in BINNED.items():
        value = function(tensors(maps), tensors(masks), num_bins=bins)
        assert value.dtype == torch.float64 and value.ndim == 0
        assert float(value) == pytest.approx(expected[name], abs=ATOL), name
    for limit in (0.1, 0.3, 0.5):
        value = binned_aupro(tensors(maps), tensors(masks), limit, num_bins=bins)
        expected_aupro = ref_adeval_metrics(maps, masks, bins, limit)["aupro"]
        assert float(value) == pytest.approx(expected_aupro, abs=ATOL), limit


def test_scores_on_bin_edges_follow_the_float32_bin_formula() -> None:
    # Multiples of 1/8 between 0 and 1: many scores fall exactly on the 200 bin edges.
    masks = adversarial_masks()
    rng = np.random.default_rng(2)
    maps = [
        (rng.integers(0, 9, k.shape) / 8 + 0.25 * k).clip(0, 1).astype(np.float32) for k in masks
    ]
    expected = ref_adeval_metrics(maps, masks, 200)
    assert float(binned_auroc(tensors(maps), tensors(masks))) == pytest.approx(expected["auroc"])
    assert float(binned_aupro(tensors(maps), tensors(masks))) == pytest.approx(expected["aupro"])


def test_binned_curve_counts_the_maximum_twice_and_skips_the_origin() -> None:
    # One anomalous pixel at the maximum, two normal pixels, 2 bins. ADEval's points (FPR, TPR):
    # (0, 1/2) (the maximum counted in the last bin and again in the overflow bin), (1/2, 1),
    # (1, 1); the exact AUROC is 1.
    maps, masks = torch.tensor([[[0.0, 0.5, 1.0]]]), torch.tensor([[[0, 0, 1]]])
    assert float(binned_auroc(maps, masks, num_bins=2)) == pytest.approx(0.875)
    assert float(binary_auroc(maps, masks)) == 1.0


def test_binned_metrics_are_nan_when_undefined() -> None:
    masks = torch.from_numpy(np.stack(adversarial_masks()))
    constant = torch.full(masks.shape, 0.3)
    for function in (*BINNED.values(), binned_aupro):
        assert math.isnan(float(function(constant, masks)))
        assert math.isnan(float(function(torch.rand(masks.shape), torch.zeros_like(masks))))


def test_binned_metrics_differ_slightly_from_exact() -> None:
    maps, masks = realistic(0)
    exact = metric_functions("exact")
    for name, function in [
        ("pixel_AUROC", binned_auroc),
        ("pixel_AP", binned_average_precision),
        ("pixel_AUPRO", binned_aupro),
    ]:
        gap = abs(float(function(maps, masks)) - float(exact[name](maps, masks)))
        assert 0 < gap < 3e-3, name


# --------------------------------------------------------------------------------------------
# The 200-threshold AUPRO loop
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["continuous", "continuous64", "ties", "unequal_sizes"])
def test_threshold_loop_matches_transcription(case: str) -> None:
    sizes = UNEQUAL_SIZES if case == "unequal_sizes" else None
    masks = adversarial_masks(sizes)
    maps = maps_for(masks, "continuous" if case == "unequal_sizes" else case, seed=3)
    for limit, steps in ((0.3, 200), (0.1, 50), (0.6, 120)):
        value = threshold_loop_aupro(tensors(maps), tensors(masks), limit, steps)
        assert value.dtype == torch.float64 and value.ndim == 0
        expected = ref_threshold_loop_aupro(maps, masks, limit, steps)
        assert float(value) == pytest.approx(expected, abs=ATOL, nan_ok=True), (limit, steps)


def test_threshold_loop_is_nan_when_undefined() -> None:
    masks = torch.from_numpy(np.stack(adversarial_masks()))
    assert math.isnan(float(threshold_loop_aupro(torch.full(masks.shape, 0.3), masks)))
    assert math.isnan(float(threshold_loop_aupro(torch.rand(masks.shape), masks & False)))
    # Two levels: a single kept point below the limit, so no area.
    assert math.isnan(float(threshold_loop_aupro(masks.float(), masks)))


def test_threshold_loop_differs_from_exact_and_depends_on_the_score_scale() -> None:
    maps, masks = realistic(1)
    exact = metric_functions("exact")["pixel_AUPRO"]
    gap = abs(float(threshold_loop_aupro(maps, masks)) - float(exact(maps, masks)))
    assert 1e-4 < gap < 1e-2
    # A monotone transform moves the 200 thresholds but not the exact value.
    squashed = maps.double() ** 4
    assert float(exact(squashed, masks)) == pytest.approx(float(exact(maps, masks)), abs=1e-12)
    moved = abs(
        float(threshold_loop_aupro(squashed, masks)) - float(threshold_loop_aupro(maps, masks))
    )
    assert moved > 1e-4


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_modes_use_the_approximations_of_their_source() -> None:
    maps, masks = realistic(2, n=6, size=48)
    scores, labels = maps.amax(dim=(1, 2)), masks.flatten(1).any(1).long()
    exact = metric_functions("exact", 0.2)
    binned = metric_functions("reference_binned", 0.2)
    loop = metric_functions("threshold_loop", 0.2, num_thresholds=50)
    for name in ("image_AUROC", "image_AP", "image_F1max"):
        for mode in (binned, loop):
            assert float(mode[name](scores, labels)) == float(exact[name](scores, labels))
    assert float(binned["pixel_AUROC"](maps, masks)) == float(binned_auroc(maps, masks))
    assert float(binned["pixel_AP"](maps, masks)) == float(binned_average_precision(maps, masks))
    assert float(binned["pixel_AUPRO"](maps, masks)) == float(binned_aupro(maps, masks, 0.2))
    # The reference computes pixel F1-max exactly (scikit-learn), and so does this mode.
    assert float(binned["pixel_F1max"](maps, masks)) == float(binary_f1_max(maps, masks))
    assert float(loop["pixel_AUPRO"](maps, masks)) == float(
        threshold_loop_aupro(maps, masks, 0.2, 50)
    )
    for name in ("pixel_AUROC", "pixel_AP", "pixel_F1max"):
        assert float(loop[name](maps, masks)) == float(exact[name](maps, masks))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_larger_sets_match_transcriptions(seed: int) -> None:
    maps, masks = realistic(10 + seed, n=8, size=64)
    map_list, mask_list = list(maps.numpy()), list(masks.numpy())
    expected = ref_adeval_metrics(map_list, mask_list, 200)
    assert float(binned_auroc(maps, masks)) == pytest.approx(expected["auroc"], abs=ATOL)
    assert float(binned_aupro(maps, masks)) == pytest.approx(expected["aupro"], abs=ATOL)
    loop = ref_threshold_loop_aupro(map_list, mask_list)
    assert float(threshold_loop_aupro(maps, masks)) == pytest.approx(loop, abs=ATOL)
