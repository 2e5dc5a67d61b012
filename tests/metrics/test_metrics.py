"""Exact metrics checked against slow references written straight from the definitions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import Tensor

from anomalyvfm.metrics import (
    AUPRO,
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryF1Max,
    aupro,
    binary_auroc,
    binary_average_precision,
    binary_f1_max,
)
from anomalyvfm.metrics.functional import _aupro
from tests.metrics import metric_reference as reference

# Both sides count in float64 from the same score values, so they agree far below this.
ATOL = 1e-9
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


# --------------------------------------------------------------------------------------------
# Slow references
# --------------------------------------------------------------------------------------------


def _flat(scores: Tensor, labels: Tensor) -> tuple[np.ndarray, np.ndarray]:
    return scores.double().numpy().ravel(), labels.numpy().ravel().astype(bool)


# Tensor front-ends of the loops in tests/metrics/metric_reference.py.
def ref_auroc(scores: Tensor, labels: Tensor) -> float:
    return reference.ref_auroc(*_flat(scores, labels))


def ref_average_precision(scores: Tensor, labels: Tensor) -> float:
    return reference.ref_average_precision(*_flat(scores, labels))


def ref_f1_max(scores: Tensor, labels: Tensor) -> float:
    return reference.ref_f1_max(*_flat(scores, labels))


def ref_aupro(
    maps: Tensor, masks: Tensor, fpr_limit: float, structure: np.ndarray = EIGHT_CONNECTED
) -> float:
    return reference.ref_aupro(
        list(maps.double().numpy()), list(masks.numpy()), fpr_limit, structure=structure
    )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def make_masks() -> Tensor:
    """6 masks of 24x24: two normal images, single pixels, several and diagonal regions, blobs."""
    masks = np.zeros((6, 24, 24), dtype=bool)
    masks[2, 3:9, 4:12] = True  # rectangle
    masks[2, 20, 20] = True  # one-pixel region
    masks[3, 1:4, 1:4] = True  # several regions ...
    masks[3, 10:12, 15:22] = True
    masks[3, 16:18, 2:4] = True  # ... and two blocks touching only diagonally (one region)
    masks[3, 18:21, 4:7] = True
    masks[4, 12, 12] = True  # image whose only region is one pixel
    blobs = ndimage.gaussian_filter(np.random.default_rng(7).normal(size=(24, 24)), 2.0)
    masks[5] = blobs > np.quantile(blobs, 0.85)
    return torch.from_numpy(masks)


def make_maps(masks: Tensor, kind: str, seed: int = 0) -> Tensor:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=masks.shape) + 1.5 * masks.numpy()
    if kind == "continuous":
        return torch.from_numpy(noise).float()
    if kind == "continuous64":
        return torch.from_numpy(noise)
    if kind == "ties":  # five score levels: every threshold is a large tie group
        return torch.from_numpy(np.digitize(noise, [-0.5, 0.5, 1.0, 2.0]).astype(np.float32))
    if kind == "two_levels":
        return torch.from_numpy((noise > 1.0).astype(np.float64))
    if kind == "constant":
        return torch.full(masks.shape, 0.25, dtype=torch.float32)
    raise ValueError(kind)


MAP_KINDS = ["continuous", "continuous64", "ties", "two_levels", "constant"]
FPR_LIMITS = [0.05, 0.3, 1.0]


@pytest.fixture(scope="module")
def masks() -> Tensor:
    return make_masks()


def make_binary(kind: str, n: int = 400, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.rand(n, generator=generator) < 0.3
    scores = torch.randn(n, generator=generator, dtype=torch.float64) + labels.double()
    if kind == "continuous":
        return scores.float(), labels
    if kind == "continuous64_int_labels_2d":
        return scores.reshape(20, -1), labels.long().reshape(20, -1)
    if kind == "ties":
        return torch.round(scores * 1.5), labels
    if kind == "constant":
        return torch.zeros(n), labels
    if kind == "perfect":
        return labels.float() * 3.0, labels
    raise ValueError(kind)


BINARY_KINDS = ["continuous", "continuous64_int_labels_2d", "ties", "constant", "perfect"]
BINARY_PAIRS: list[tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor, Tensor], float]]]
BINARY_PAIRS = [
    (binary_auroc, ref_auroc),
    (binary_average_precision, ref_average_precision),
    (binary_f1_max, ref_f1_max),
]
PAIR_IDS = ["auroc", "ap", "f1max"]


# --------------------------------------------------------------------------------------------
# Image-level metrics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BINARY_KINDS)
@pytest.mark.parametrize(("fast", "reference"), BINARY_PAIRS, ids=PAIR_IDS)
def test_binary_metrics_match_reference(kind: str, fast: Callable, reference: Callable) -> None:
    scores, labels = make_binary(kind)
    result = fast(scores, labels)
    assert result.dtype == torch.float64 and result.ndim == 0
    assert result.item() == pytest.approx(reference(scores, labels), abs=ATOL)


def test_binary_metrics_known_values() -> None:
    # Classic worked example: one of the four (pos, neg) pairs is misordered.
    scores, labels = torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])
    assert binary_auroc(scores, labels).item() == pytest.approx(0.75, abs=ATOL)
    assert binary_average_precision(scores, labels).item() == pytest.approx(5 / 6, abs=ATOL)
    assert binary_f1_max(scores, labels).item() == pytest.approx(0.8, abs=ATOL)
    # Constant scores: AUROC is chance, AP the prevalence, F1 that of predicting all positive.
    constant, prevalence = torch.zeros(4), 0.5
    assert binary_auroc(constant, labels).item() == pytest.approx(0.5, abs=ATOL)
    assert binary_average_precision(constant, labels).item() == pytest.approx(prevalence)
    assert binary_f1_max(constant, labels).item() == pytest.approx(2 * prevalence / 1.5)


def test_binary_metrics_undefined_are_nan() -> None:
    scores = torch.rand(10)
    for fn in (binary_auroc, binary_average_precision, binary_f1_max):
        assert torch.isnan(fn(scores, torch.zeros(10, dtype=torch.bool)))
        assert torch.isnan(fn(torch.empty(0), torch.empty(0, dtype=torch.bool)))
    assert torch.isnan(binary_auroc(scores, torch.ones(10, dtype=torch.bool)))
    # Without negatives precision is always 1, so AP and F1-max are well defined.
    assert binary_average_precision(scores, torch.ones(10)).item() == pytest.approx(1.0)
    assert binary_f1_max(scores, torch.ones(10)).item() == pytest.approx(1.0)


@pytest.mark.parametrize("fn", [binary_auroc, binary_average_precision, binary_f1_max])
def test_binary_metrics_validate_inputs(fn: Callable) -> None:
    with pytest.raises(ValueError, match="same shape"):
        fn(torch.rand(5), torch.ones(6))
    with pytest.raises(ValueError, match="binary"):
        fn(torch.rand(3), torch.tensor([0, 1, 2]))


# --------------------------------------------------------------------------------------------
# AUPRO
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fpr_limit", FPR_LIMITS)
@pytest.mark.parametrize("kind", MAP_KINDS)
def test_aupro_matches_reference(masks: Tensor, kind: str, fpr_limit: float) -> None:
    maps = make_maps(masks, kind)
    result = aupro(maps, masks, fpr_limit)
    assert result.dtype == torch.float64 and result.ndim == 0
    assert result.item() == pytest.approx(ref_aupro(maps, masks, fpr_limit), abs=ATOL)


def test_aupro_limit_inside_tie_group(masks: Tensor) -> None:
    maps = make_maps(masks, "ties")
    normal = maps[~masks]
    # Pick the tie group whose FPR step is widest and put the limit in its middle, so the
    # restricted sort must keep the whole group and the integration must interpolate inside it.
    levels = torch.unique(maps).flip(0)
    fprs = [0.0] + [float((normal >= t).double().mean()) for t in levels]
    low, high = max(zip(fprs[:-1], fprs[1:]), key=lambda step: step[1] - step[0])
    fpr_limit = (low + high) / 2
    assert low < fpr_limit < high and high - low > 0.1
    expected = ref_aupro(maps, masks, fpr_limit)
    assert aupro(maps, masks, fpr_limit).item() == pytest.approx(expected, abs=ATOL)
    assert _aupro(maps, masks, fpr_limit, restrict=False).item() == pytest.approx(expected)


def test_aupro_known_values(masks: Tensor) -> None:
    # Constant maps give the diagonal PRO = FPR, whose normalised area is limit / 2.
    constant = make_maps(masks, "constant")
    for fpr_limit in FPR_LIMITS:
        assert aupro(constant, masks, fpr_limit).item() == pytest.approx(fpr_limit / 2)
    # A perfect map detects every region completely before the first false positive.
    assert aupro(masks.float(), masks, 0.3).item() == pytest.approx(1.0)


def test_aupro_regions_are_eight_connected() -> None:
    # A 2x2 block and a pixel touching it diagonally form one 5-pixel region; only the block
    # scores high. 8-connected: curve (0,0) -> (0, 0.8) -> (1, 1), area 0.9. Two separate
    # regions would give PRO 0.5 at FPR 0 and area 0.75.
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[0, 2, 2] = True
    maps = torch.zeros(1, 4, 4)
    maps[0, :2, :2] = 3.0
    assert aupro(maps, masks, 1.0).item() == pytest.approx(0.9)
    assert ref_aupro(maps, masks, 1.0, structure=FOUR_CONNECTED) == pytest.approx(0.75)


def test_aupro_regions_never_span_images() -> None:
    # Rows touching across the image boundary must stay two regions of two different images.
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[0, 4, :3] = True
    masks[1, 0, 1:] = True
    maps = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(3)) + masks
    for fpr_limit in FPR_LIMITS:
        expected = ref_aupro(maps, masks, fpr_limit)
        assert aupro(maps, masks, fpr_limit).item() == pytest.approx(expected, abs=ATOL)


def test_aupro_undefined_is_nan(masks: Tensor) -> None:
    maps = make_maps(masks, "continuous")
    assert torch.isnan(aupro(maps, torch.zeros_like(masks)))
    assert torch.isnan(aupro(maps, torch.ones_like(masks)))


def test_aupro_validates_inputs(masks: Tensor) -> None:
    maps = make_maps(masks, "continuous")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        aupro(maps[0], masks[0])
    with pytest.raises(ValueError, match="same shape"):
        aupro(maps[:, :20], masks)
    with pytest.raises(ValueError, match="binary"):
        aupro(maps, masks.long() * 2)
    for bad_limit in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fpr_limit"):
            aupro(maps, masks, bad_limit)


@pytest.mark.parametrize("fpr_limit", [0.001, 0.05, 0.3, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("kind", ["continuous", "ties", "two_levels", "constant"])
def test_aupro_restricted_sort_equals_full_sort(kind: str, fpr_limit: float) -> None:
    # Larger than the reference cases: only the two fast paths are compared here.
    generator = torch.Generator().manual_seed(11)
    masks = torch.rand(12, 48, 48, generator=generator) > 0.97
    masks = torch.from_numpy(ndimage.binary_dilation(masks.numpy(), iterations=2))
    masks[:4] = False  # some all-normal images
    maps = make_maps(masks, kind, seed=5)
    restricted = _aupro(maps, masks, fpr_limit, restrict=True)
    full = _aupro(maps, masks, fpr_limit, restrict=False)
    assert torch.equal(restricted, full)
    # The sort-free path (the public aupro) sums the same trapezoids in another order.
    assert float(aupro(maps, masks, fpr_limit)) == pytest.approx(float(full), abs=1e-13)
    as_lists = list(maps), list(masks)
    assert float(aupro(*as_lists, fpr_limit)) == pytest.approx(float(full), abs=1e-13)


@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_aupro_sort_free_path_on_images_of_different_sizes(kind: str) -> None:
    generator = torch.Generator().manual_seed(12)
    shapes = [(30, 41), (17, 17), (48, 25), (9, 60), (33, 33)]
    masks = [torch.rand(s, generator=generator) > 0.96 for s in shapes]
    masks = [torch.from_numpy(ndimage.binary_dilation(m.numpy())) for m in masks]
    masks[1][:] = False
    maps = [make_maps(m[None], kind, seed=i)[0] for i, m in enumerate(masks)]
    flat_maps = torch.cat([m.reshape(-1) for m in maps])
    for limit in (0.01, 0.3, 1.0):
        # The slow path labels each image on its own too; both must agree to rounding.
        slow = _aupro(maps, masks, limit, restrict=False)
        assert float(aupro(maps, masks, limit)) == pytest.approx(float(slow), abs=1e-13)
    assert flat_maps.numel() == sum(h * w for h, w in shapes)


def test_label_anomalous_matches_full_image_labelling() -> None:
    from anomalyvfm.metrics._pro_curve import label_anomalous

    generator = torch.Generator().manual_seed(13)
    masks = (torch.rand(6, 40, 50, generator=generator) > 0.9).numpy()
    masks[2] = False  # an all-normal image
    masks[3, 0, 0] = masks[3, 39, 49] = True  # regions in opposite corners of the bounding box
    anomalous, regions, sizes = label_anomalous(list(masks))
    full, count = ndimage.label(
        masks, structure=np.pad(np.ones((1, 3, 3), bool), ((1, 1), (0, 0), (0, 0)))
    )
    flat = full.reshape(-1)
    assert anomalous.tolist() == np.flatnonzero(flat).tolist()
    assert sizes.numel() == count + 1 and int(sizes[0]) == int((flat == 0).sum())
    # Same partition into regions (numbering may differ): a bijection between the labels.
    pairs = set(zip(regions.tolist(), flat[anomalous.numpy()].tolist()))
    assert len(pairs) == count == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    assert sorted(sizes[1:].tolist()) == sorted(np.bincount(flat)[1:].tolist())


# --------------------------------------------------------------------------------------------
# Properties shared by all metrics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transform",
    [torch.sigmoid, lambda x: x**3, lambda x: 2.0 * x - 7.0],
    ids=["sigmoid", "cube", "affine"],
)
def test_metrics_invariant_to_monotone_transform(masks: Tensor, transform: Callable) -> None:
    maps = make_maps(masks, "continuous64")
    transformed = transform(maps)
    # Guard: the transform must not merge distinct scores through rounding.
    assert torch.unique(transformed).numel() == torch.unique(maps).numel()
    for fn in (binary_auroc, binary_average_precision, binary_f1_max):
        assert fn(transformed, masks).item() == pytest.approx(fn(maps, masks).item(), abs=1e-12)
    for fpr_limit in FPR_LIMITS:
        assert aupro(transformed, masks, fpr_limit).item() == pytest.approx(
            aupro(maps, masks, fpr_limit).item(), abs=1e-12
        )


# --------------------------------------------------------------------------------------------
# Metric modules
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric_cls", "fn"),
    [
        (BinaryAUROC, binary_auroc),
        (BinaryAveragePrecision, binary_average_precision),
        (BinaryF1Max, binary_f1_max),
    ],
    ids=PAIR_IDS,
)
def test_binary_metric_modules_accumulate_chunks(metric_cls: type, fn: Callable) -> None:
    scores, labels = make_binary("ties", n=300)
    metric = metric_cls()
    # Chunks of different sizes and shapes must give the value of the whole set.
    metric.update(scores[:50].reshape(5, 10), labels[:50].reshape(5, 10))
    metric.update(scores[50:51], labels[50:51].long())
    metric.update(scores[51:], labels[51:])
    assert metric.compute().item() == pytest.approx(fn(scores, labels).item(), abs=1e-12)
    metric.reset()
    metric.update(scores[:100], labels[:100])
    assert metric.compute().item() == pytest.approx(fn(scores[:100], labels[:100]).item())
    assert metric.higher_is_better and not metric.is_differentiable
    assert not metric.full_state_update


@pytest.mark.parametrize("fpr_limit", [0.05, 0.3])
def test_aupro_module_accumulates_chunks(masks: Tensor, fpr_limit: float) -> None:
    maps = make_maps(masks, "ties")
    metric = AUPRO(fpr_limit=fpr_limit)
    for start, stop in [(0, 2), (2, 3), (3, 6)]:
        metric.update(maps[start:stop], masks[start:stop].long())
    expected = aupro(maps, masks, fpr_limit).item()
    assert metric.compute().item() == pytest.approx(expected, abs=1e-12)


def test_metric_modules_validate_inputs(masks: Tensor) -> None:
    with pytest.raises(ValueError, match="same shape"):
        BinaryAUROC().update(torch.rand(4), torch.ones(5))
    with pytest.raises(ValueError, match="binary"):
        BinaryF1Max().update(torch.rand(3), torch.tensor([0.0, 0.5, 1.0]))
    metric = AUPRO()
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        metric.update(torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        metric.update(torch.rand(2, 8, 8), torch.zeros(2, 8, 9))
    with pytest.raises(ValueError, match="binary"):
        metric.update(torch.rand(2, 8, 8), torch.full((2, 8, 8), 3))
    with pytest.raises(ValueError, match="fpr_limit"):
        AUPRO(fpr_limit=0.0)


def test_aupro_module_takes_images_of_different_sizes() -> None:
    # The evaluator at `original` resolution feeds images at their own sizes; batches of one
    # size and of several sizes mix, and the value is the functional one on the same images.
    gen = torch.Generator().manual_seed(3)
    sizes = [(8, 8), (9, 12), (8, 8), (16, 5)]
    maps = [torch.rand(s, generator=gen) for s in sizes]
    masks = [torch.zeros(s, dtype=torch.bool) for s in sizes]
    for k, (h, w) in zip(masks, sizes):
        k[h // 4 : h // 2, w // 4 : w // 2 + 1] = True
    metric = AUPRO(fpr_limit=0.3)
    metric.update(torch.stack(maps[:1]), torch.stack(masks[:1]))
    metric.update(maps[1:], masks[1:])
    expected = aupro(maps, masks, 0.3)
    assert float(metric.compute()) == pytest.approx(float(expected), abs=1e-12)
    same = AUPRO()
    same.update(torch.stack([maps[0], maps[2]]), torch.stack([masks[0], masks[2]]))
    assert float(same.compute()) == pytest.approx(
        float(aupro(torch.stack([maps[0], maps[2]]), torch.stack([masks[0], masks[2]]))),
        abs=1e-12,
    )


@pytest.mark.filterwarnings("ignore:.*compute.*:UserWarning")
def test_metric_modules_without_data_are_nan() -> None:
    for metric in (BinaryAUROC(), BinaryAveragePrecision(), BinaryF1Max(), AUPRO()):
        assert torch.isnan(metric.compute())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_metrics_on_cuda_match_cpu(masks: Tensor) -> None:
    maps = make_maps(masks, "ties")
    for fn in (binary_auroc, binary_average_precision, binary_f1_max):
        on_gpu = fn(maps.cuda(), masks.cuda())
        assert on_gpu.device.type == "cuda"
        assert on_gpu.item() == pytest.approx(fn(maps, masks).item(), abs=1e-12)
    for fpr_limit in FPR_LIMITS:
        on_gpu = aupro(maps.cuda(), masks.cuda(), fpr_limit)
        assert on_gpu.device.type == "cuda"
        assert on_gpu.item() == pytest.approx(aupro(maps, masks, fpr_limit).item(), abs=1e-12)
