"""The per-category evaluator and the model's image-score options."""

from __future__ import annotations

import math

import pytest
import torch

from anomalyvfm.metrics import (
    aupro,
    binary_auroc,
    binary_average_precision,
    binary_f1_max,
)
from anomalyvfm.metrics.aupimo import aupimo
from anomalyvfm.metrics.compat import binned_aupro, threshold_loop_aupro
from anomalyvfm.metrics.evaluator import AnomalyEvaluator, mean_over


def test_per_category_results_equal_functional_metrics_on_each_subset() -> None:
    g = torch.Generator().manual_seed(0)
    n = 12
    cats = ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "a", "b"]
    labels = torch.tensor([0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1])
    masks = torch.zeros(n, 16, 16)
    for i in torch.nonzero(labels).flatten():
        masks[i, 4:9, 3:7] = 1
    maps = torch.rand(n, 16, 16, generator=g) + 0.4 * masks
    scores = torch.rand(n, generator=g) + 0.3 * labels
    ev = AnomalyEvaluator(["a", "b"])
    for chunk in (slice(0, 5), slice(5, 12)):  # several batches
        ev.update(scores[chunk], labels[chunk], cats[chunk], maps[chunk], masks[chunk])
    res = ev.compute()
    for c in ("a", "b"):
        sel = torch.tensor([x == c for x in cats])
        assert res[c]["image_AUROC"] == pytest.approx(float(binary_auroc(scores[sel], labels[sel])))
        assert res[c]["pixel_AUROC"] == pytest.approx(float(binary_auroc(maps[sel], masks[sel])))
        assert res[c]["pixel_AUPRO"] == pytest.approx(float(aupro(maps[sel], masks[sel] > 0, 0.3)))
        assert res[c]["image_AP"] == float(binary_average_precision(scores[sel], labels[sel]))
        assert res[c]["pixel_F1max"] == float(binary_f1_max(maps[sel], masks[sel]))
        assert "pixel_AUPIMO" not in res[c]  # opt-in
    mean = mean_over(res)
    assert mean["image_AUROC"] == pytest.approx(
        (res["a"]["image_AUROC"] + res["b"]["image_AUROC"]) / 2
    )


def test_image_level_dataset_skips_pixel_metrics_and_bad_input_fails() -> None:
    ev = AnomalyEvaluator(["x"], pixel_labels=False)
    ev.update(
        torch.tensor([0.1, 0.9]),
        torch.tensor([0, 1]),
        ["x", "x"],
        torch.rand(2, 4, 4),
        torch.zeros(2, 4, 4),
    )
    assert ev.compute() == {"x": {"image_AUROC": 1.0, "image_AP": 1.0, "image_F1max": 1.0}}
    assert ev.num_images == {"x": 2}
    with pytest.raises(ValueError, match="unknown category"):
        ev.update(
            torch.tensor([0.1]), torch.tensor([0]), ["y"], torch.rand(1, 4, 4), torch.zeros(1, 4, 4)
        )
    with pytest.raises(ValueError, match="differ"):
        ev.update(
            torch.tensor([0.1]), torch.tensor([0]), ["x"], torch.rand(1, 4, 4), torch.zeros(1, 5, 5)
        )


def test_empty_defect_masks_are_counted_over_batches_and_reset() -> None:
    ev = AnomalyEvaluator(["x"])
    masks = torch.zeros(3, 4, 4)
    masks[0, 1:3, 1:3] = 1
    args = (torch.tensor([0.2, 0.9, 0.8]), torch.tensor([0, 1, 1]), ["x"] * 3, torch.rand(3, 4, 4))
    ev.update(*args, masks, empty_masks=torch.tensor([False, True, True]))
    ev.update(*args, masks, empty_masks=torch.tensor([False, False, True]))
    ev.update(*args, masks)  # a batch without the flag adds nothing
    ev.compute()
    assert ev.num_empty_masks == 3 and ev.num_images == {"x": 9}
    ev.reset()
    ev.update(*args, masks, empty_masks=torch.tensor([False, False, True]))
    ev.compute()
    assert ev.num_empty_masks == 1


def test_mean_over_ignores_undefined_values() -> None:
    assert mean_over({"a": {"image_AUROC": math.nan}, "b": {"image_AUROC": 0.5}}) == {
        "image_AUROC": 0.5
    }


def test_image_score_options() -> None:
    from anomalyvfm.backbones.adapters import AdapterConfig
    from anomalyvfm.backbones.timm_backbone import BackboneConfig
    from anomalyvfm.models.anomalyvfm import AnomalyVFMModel, AnomalyVFMOutput
    from anomalyvfm.models.decoder import DecoderConfig

    out = AnomalyVFMOutput(torch.full((1, 1, 6, 6), -30.0), torch.zeros(1, 1, 6, 6), torch.zeros(1))
    out.anomaly_logits[0, 0, :5, :5] = (
        30.0  # a 5x5 patch saturates the 5x5 mean filter at one pixel
    )
    scores = {}
    for kind in ("head", "map_max", "mean"):
        model = AnomalyVFMModel(
            BackboneConfig(name="resnet18"),
            AdapterConfig(type="none"),
            DecoderConfig(),
            64,
            image_score=kind,  # type: ignore[arg-type]
        )
        scores[kind] = model.postprocess(out, (6, 6)).pred_score.item()
    assert scores["head"] == pytest.approx(0.5)
    assert scores["map_max"] == pytest.approx(1.0, abs=1e-6)
    assert scores["mean"] == pytest.approx(0.75, abs=1e-6)


def test_images_of_different_sizes_keep_their_regions() -> None:
    g = torch.Generator().manual_seed(1)
    shapes = [(10, 14), (12, 9), (330, 330), (7, 7)]  # AUPIMO needs ~1e5 normal pixels
    masks = [torch.zeros(s) for s in shapes]
    masks[0][2:5, 3:6] = 1
    masks[1][0:3, 0:2] = 1
    masks[1][8:10, 6:9] = 1  # two regions in one image
    maps = [torch.rand(s, generator=g) + 0.5 * m for s, m in zip(shapes, masks)]
    labels = torch.tensor([1, 1, 0, 0])
    scores = torch.tensor([0.9, 0.4, 0.5, 0.1])
    ev = AnomalyEvaluator(["c"], metrics=["pixel_AUROC", "pixel_AUPRO", "pixel_AUPIMO"])
    ev.update(scores[:2], labels[:2], ["c", "c"], maps[:2], masks[:2])
    ev.update(scores[2:], labels[2:], ["c", "c"], maps[2:], masks[2:])
    res = ev.compute()["c"]
    flat_maps = torch.cat([m.reshape(-1) for m in maps])
    flat_masks = torch.cat([m.reshape(-1) for m in masks])
    assert res["pixel_AUROC"] == float(binary_auroc(flat_maps, flat_masks))
    # The same images padded into one stack with zero-score, zero-mask padding would differ;
    # the list form is what the evaluator must match.
    assert res["pixel_AUPRO"] == pytest.approx(float(aupro(maps, masks, 0.3)), abs=1e-12)
    expected = float(aupimo(maps, masks))
    assert not math.isnan(expected)
    assert res["pixel_AUPIMO"] == pytest.approx(expected, abs=1e-12)
    assert set(res) == {"pixel_AUROC", "pixel_AUPRO", "pixel_AUPIMO"}


def test_pixel_level_only_set_has_no_image_metrics_and_modes_switch_aupro() -> None:
    g = torch.Generator().manual_seed(2)
    masks = torch.zeros(4, 16, 16)
    masks[:, 3:9, 4:10] = 1
    maps = torch.rand(4, 16, 16, generator=g) + 0.3 * masks
    results = {}
    for mode in ("exact", "reference_binned", "threshold_loop"):
        ev = AnomalyEvaluator(["p"], image_labels=False, metric_mode=mode)  # type: ignore[arg-type]
        ev.update(torch.rand(4), torch.ones(4, dtype=torch.long), ["p"] * 4, maps, masks)
        results[mode] = ev.compute()["p"]
        assert not any(name.startswith("image_") for name in results[mode])
    assert results["exact"]["pixel_AUPRO"] == float(aupro(maps, masks))
    assert results["reference_binned"]["pixel_AUPRO"] == float(binned_aupro(maps, masks))
    assert results["threshold_loop"]["pixel_AUPRO"] == float(threshold_loop_aupro(maps, masks))
    assert results["threshold_loop"]["pixel_AUROC"] == results["exact"]["pixel_AUROC"]
    with pytest.raises(ValueError, match="unknown metrics"):
        AnomalyEvaluator(["p"], metrics=["pixel_IoU"])  # type: ignore[list-item]


def test_mean_filter_padding_zeros_darkens_borders_like_the_reference() -> None:
    from anomalyvfm.backbones.adapters import AdapterConfig
    from anomalyvfm.backbones.timm_backbone import BackboneConfig
    from anomalyvfm.models.anomalyvfm import AnomalyVFMModel, AnomalyVFMOutput
    from anomalyvfm.models.decoder import DecoderConfig

    out = AnomalyVFMOutput(torch.full((1, 1, 8, 8), 30.0), torch.zeros(1, 1, 8, 8), torch.zeros(1))
    maps = {}
    for padding in ("replicate", "zeros"):
        model = AnomalyVFMModel(
            BackboneConfig(name="resnet18"),
            AdapterConfig(type="none"),
            DecoderConfig(),
            64,
            mean_filter_padding=padding,  # type: ignore[arg-type]
        )
        maps[padding] = model.postprocess(out, (8, 8)).anomaly_map[0]
    assert torch.allclose(maps["replicate"], torch.ones(8, 8))
    # A corner sees 3x3 of the 5x5 window inside the image, an edge pixel 3x5, the centre all.
    assert maps["zeros"][0, 0].item() == pytest.approx(9 / 25)
    assert maps["zeros"][0, 4].item() == pytest.approx(15 / 25)
    assert maps["zeros"][4, 4].item() == pytest.approx(1.0)
