"""The per-category evaluator and the model's image-score options."""

from __future__ import annotations

import math

import pytest
import torch

from anomalyvfm.metrics import aupro, binary_auroc
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
    assert ev.compute() == {"x": {"image_AUROC": 1.0}}
    with pytest.raises(ValueError, match="unknown category"):
        ev.update(
            torch.tensor([0.1]), torch.tensor([0]), ["y"], torch.rand(1, 4, 4), torch.zeros(1, 4, 4)
        )
    with pytest.raises(ValueError, match="differ"):
        ev.update(
            torch.tensor([0.1]), torch.tensor([0]), ["x"], torch.rand(1, 4, 4), torch.zeros(1, 5, 5)
        )


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
