"""Exact image and pixel metrics, functional and as modules, against the slow references."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import Tensor
from torchmetrics import Metric

from anomalyvfm.metrics import (
    AUPIMO,
    ImageAUROC,
    ImageAveragePrecision,
    ImageF1Max,
    PixelAUROC,
    PixelAveragePrecision,
    PixelF1Max,
    aupro,
    binary_auroc,
    binary_average_precision,
    binary_f1_max,
    metric_functions,
)
from tests.metrics.metric_reference import (
    MAP_KINDS,
    adversarial_masks,
    maps_for,
    pooled,
    ref_aupro,
    ref_auroc,
    ref_average_precision,
    ref_f1_max,
    ref_pro_curve,
)

# Both sides count exactly and accumulate in float64; 1e-6 is the agreement the README promises.
ATOL = 1e-9
EXACT = metric_functions("exact")
BINARY = {"AUROC": ref_auroc, "AP": ref_average_precision, "F1max": ref_f1_max}
UNEQUAL_SIZES = [(20, 30), (24, 24), (22, 26), (30, 20), (20, 21), (26, 22)]


def tensors(arrays: list[np.ndarray]) -> list[Tensor]:
    return [torch.from_numpy(a) for a in arrays]


def close(value: Tensor, expected: float) -> bool:
    assert value.dtype == torch.float64 and value.ndim == 0
    if math.isnan(expected):
        return math.isnan(float(value))
    return abs(float(value) - expected) <= ATOL


def image_case(kind: str, n: int = 300, seed: int = 0) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    scores = rng.normal(size=n) + labels
    if kind == "ties":
        scores = np.round(scores * 1.5)
    elif kind == "constant":
        scores = np.zeros(n)
    elif kind == "perfect":
        scores = labels * 3.0
    elif kind == "one_class":
        labels = np.zeros(n, dtype=bool)
    elif kind == "tiny":
        scores, labels = np.array([0.3, 0.3, 0.9]), np.array([False, True, True])
    return torch.from_numpy(scores).float(), torch.from_numpy(labels).long()


# --------------------------------------------------------------------------------------------
# Image level
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["continuous", "ties", "constant", "perfect", "one_class", "tiny"])
@pytest.mark.parametrize("name", ["AUROC", "AP", "F1max"])
def test_image_metrics_match_reference(kind: str, name: str) -> None:
    scores, labels = image_case(kind)
    expected = BINARY[name](scores.numpy(), labels.numpy())
    assert close(EXACT[f"image_{name}"](scores, labels), expected)


@pytest.mark.parametrize(
    ("module", "function"),
    [
        (ImageAUROC, binary_auroc),
        (ImageAveragePrecision, binary_average_precision),
        (ImageF1Max, binary_f1_max),
    ],
)
def test_image_modules_fed_in_chunks_equal_functional(module: type, function: Callable) -> None:
    scores, labels = image_case("ties", n=301)
    metric = module()
    for chunk in (slice(0, 100), slice(100, 101), slice(101, 301)):
        metric.update(scores[chunk], labels[chunk])
    metric.update(scores[7], labels[7])  # a 0-dim score is one image
    full = function(torch.cat([scores, scores[7:8]]), torch.cat([labels, labels[7:8]]))
    assert float(metric.compute()) == float(full)
    metric.reset()
    assert math.isnan(float(metric.compute()))


def test_image_modules_reject_maps_and_non_binary_labels() -> None:
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        ImageAUROC().update(torch.rand(2, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="binary"):
        ImageF1Max().update(torch.rand(3), torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="same shape"):
        ImageAveragePrecision().update(torch.rand(3), torch.tensor([0, 1]))


# --------------------------------------------------------------------------------------------
# Pixel level
# --------------------------------------------------------------------------------------------


def pixel_expected(name: str, maps: list[np.ndarray], masks: list[np.ndarray], limit: float):
    if name == "AUPRO":
        return ref_aupro(maps, masks, limit)
    return BINARY[name](*pooled(maps, masks))


@pytest.mark.parametrize("kind", MAP_KINDS)
@pytest.mark.parametrize("name", ["AUROC", "AP", "F1max", "AUPRO"])
def test_pixel_metrics_match_reference(kind: str, name: str) -> None:
    masks = adversarial_masks()
    maps = maps_for(masks, kind)
    stack = torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(masks))
    value = EXACT[f"pixel_{name}"](*stack)
    assert close(value, pixel_expected(name, maps, masks, 0.3))


@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_aupro_at_other_fpr_limits(kind: str) -> None:
    masks = adversarial_masks()
    maps = maps_for(masks, kind, seed=3)
    curve = ref_pro_curve(maps, masks)
    stack = torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(masks))
    for limit in (0.001, 0.01, 0.05, 0.3, 0.77, 1.0):
        value = metric_functions("exact", limit)["pixel_AUPRO"](*stack)
        assert close(value, ref_aupro(maps, masks, limit, curve)), limit


@pytest.mark.parametrize("name", ["AUROC", "AP", "F1max"])
def test_pixel_metrics_on_images_of_different_sizes(name: str) -> None:
    masks = adversarial_masks(UNEQUAL_SIZES)
    maps = maps_for(masks, "continuous", seed=1)
    value = EXACT[f"pixel_{name}"](
        [torch.from_numpy(m) for m in maps], list(map(torch.from_numpy, masks))
    )
    assert close(value, pixel_expected(name, maps, masks, 0.3))


@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_aupro_on_images_of_different_sizes(limit: float) -> None:
    masks = adversarial_masks(UNEQUAL_SIZES)
    maps = maps_for(masks, "ties", seed=4)
    as_list = [torch.from_numpy(m) for m in maps], [torch.from_numpy(k) for k in masks]
    assert close(aupro(*as_list, limit), ref_aupro(maps, masks, limit))
    assert close(EXACT["pixel_AUPRO"](*as_list), ref_aupro(maps, masks, 0.3))


def test_pixel_aupro_accepts_a_list_of_equal_size_maps() -> None:
    masks = adversarial_masks()
    maps = maps_for(masks, "continuous", seed=2)
    as_list = [torch.from_numpy(m) for m in maps], [torch.from_numpy(k) for k in masks]
    assert close(EXACT["pixel_AUPRO"](*as_list), ref_aupro(maps, masks, 0.3))


def test_all_normal_and_all_anomalous_pixels_give_nan() -> None:
    normal = torch.zeros(3, 8, 8, dtype=torch.bool)
    maps = torch.rand(3, 8, 8)
    for name in ("pixel_AUROC", "pixel_AP", "pixel_F1max", "pixel_AUPRO"):
        assert math.isnan(float(EXACT[name](maps, normal)))
    for name in ("pixel_AUROC", "pixel_AUPRO"):
        assert math.isnan(float(EXACT[name](maps, ~normal)))


def test_exact_pixel_metrics_ignore_monotone_transforms() -> None:
    masks = adversarial_masks()
    maps = torch.from_numpy(np.stack(maps_for(masks, "continuous64", seed=4)))
    target = torch.from_numpy(np.stack(masks))
    for name in ("pixel_AUROC", "pixel_AP", "pixel_F1max", "pixel_AUPRO"):
        a, b = EXACT[name](maps, target), EXACT[name](torch.sigmoid(3 * maps) * 7 - 2, target)
        assert float(a) == pytest.approx(float(b), abs=1e-12)


@pytest.mark.parametrize(
    ("module", "name"),
    [(PixelAUROC, "pixel_AUROC"), (PixelAveragePrecision, "pixel_AP"), (PixelF1Max, "pixel_F1max")],
)
def test_pixel_modules_fed_in_chunks_equal_functional(module: type, name: str) -> None:
    masks = adversarial_masks(UNEQUAL_SIZES)
    maps = [torch.from_numpy(m) for m in maps_for(masks, "ties", seed=5)]
    gts = [torch.from_numpy(k) for k in masks]
    metric = module()
    metric.update(maps[:2], gts[:2])  # a list of (H_i, W_i) maps
    metric.update(maps[2][None], gts[2][None])  # a (1, H, W) tensor
    metric.update(maps[3:], gts[3:])
    assert float(metric.compute()) == float(EXACT[name](maps, gts))


def test_pixel_modules_validate_their_input() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        PixelAUROC().update(torch.rand(4), torch.zeros(4))
    with pytest.raises(ValueError, match="mask has shape"):
        PixelF1Max().update(torch.rand(2, 4, 4), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="binary"):
        PixelAveragePrecision().update(torch.rand(1, 2, 2), torch.full((1, 2, 2), 0.5))


def test_registry_modes_and_names() -> None:
    names = {"image_AUROC", "image_AP", "image_F1max", "pixel_AUROC", "pixel_AP"}
    names |= {"pixel_F1max", "pixel_AUPRO", "pixel_AUPIMO"}
    for mode in ("exact", "reference_binned", "threshold_loop"):
        assert set(metric_functions(mode)) == names  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown metric mode"):
        metric_functions("binned")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Larger random cases
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("limit", [0.1, 0.3])
def test_aupro_on_larger_random_sets(seed: int, limit: float) -> None:
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(10):
        blobs = ndimage.gaussian_filter(rng.normal(size=(48, 40)), 2.0)
        masks.append(blobs > np.quantile(blobs, rng.uniform(0.85, 1.0)))
    maps = [np.round(rng.normal(size=k.shape) + k, 1).astype(np.float32) for k in masks]
    stack = torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(masks))
    value = metric_functions("exact", limit)["pixel_AUPRO"](*stack)
    assert close(value, ref_aupro(maps, masks, limit))
    for name in ("AUROC", "AP", "F1max"):
        assert close(EXACT[f"pixel_{name}"](*stack), pixel_expected(name, maps, masks, limit))


# --------------------------------------------------------------------------------------------
# GPU
# --------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["exact", "reference_binned", "threshold_loop"])
def test_metrics_on_gpu_equal_cpu(mode: str) -> None:
    masks = adversarial_masks()
    maps = torch.from_numpy(np.stack(maps_for(masks, "continuous", seed=6)))
    target = torch.from_numpy(np.stack(masks))
    scores, labels = image_case("continuous")
    for name, fn in metric_functions(mode, fpr_bounds=(1e-2, 1e-1)).items():  # type: ignore[arg-type]
        args = (scores, labels) if name.startswith("image") else (maps, target)
        cpu = fn(*args)
        gpu = fn(*(a.cuda() for a in args))
        assert gpu.device.type == "cuda", name
        assert float(gpu) == pytest.approx(float(cpu), abs=1e-9), name


# --------------------------------------------------------------------------------------------
# DDP
# --------------------------------------------------------------------------------------------


def _ddp_metrics() -> dict[str, Metric]:
    return {
        "image_auroc": ImageAUROC(),
        "image_f1": ImageF1Max(),
        "pixel_ap": PixelAveragePrecision(),
        "aupimo": AUPIMO((0.01, 0.5), return_average=False),
    }


def _ddp_data() -> tuple[Tensor, Tensor, list[Tensor], list[Tensor]]:
    scores, labels = image_case("ties", n=13)
    masks = adversarial_masks(UNEQUAL_SIZES)
    return scores, labels, tensors(maps_for(masks, "ties", seed=8)), tensors(masks)


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", f"file://{init_file}", rank=rank, world_size=2)
    scores, labels, maps, masks = _ddp_data()
    metrics = _ddp_metrics()
    # Uneven shares: rank 0 gets 4 scores and 1 image, rank 1 the rest.
    image_part, pixel_part = (
        (slice(0, 4), slice(0, 1)) if rank == 0 else (slice(4, 13), slice(1, 6))
    )
    for name, metric in metrics.items():
        if name.startswith("image"):
            metric.update(scores[image_part], labels[image_part])
        else:
            metric.update(maps[pixel_part], masks[pixel_part])
    results = {name: metric.compute() for name, metric in metrics.items()}
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_modules_under_two_process_ddp_equal_single_process(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(
        _ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True
    )
    scores, labels, maps, masks = _ddp_data()
    for rank in (0, 1):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        single = _ddp_metrics()
        for name, metric in single.items():
            if name.startswith("image"):
                metric.update(scores, labels)
            else:
                metric.update(maps, masks)
            expected = metric.compute()
            torch.testing.assert_close(results[name], expected, equal_nan=True, rtol=0, atol=0)
