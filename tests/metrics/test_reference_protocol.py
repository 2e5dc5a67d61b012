"""The reference evaluation protocol end to end on fixed maps and masks: masks resized through
the datamodule (nearest, or the reference's antialiased bilinear cut at 0.5), maps through the
model's zero-padded mean filter, metrics in ``reference_binned`` mode; against the authors'
evaluation steps re-implemented here (torch's antialiased bilinear resize then ``> 0.5``, an
``AvgPool2d(5, 1, 2)``, ADEval's 200-bin histogram transcribed in ``metric_reference``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from anomalyvfm.backbones.adapters import AdapterConfig
from anomalyvfm.backbones.timm_backbone import BackboneConfig
from anomalyvfm.data.datamodules.anomaly import AnomalyDataModule
from anomalyvfm.data.datasets.mvtec import MVTecAD
from anomalyvfm.metrics.evaluator import AnomalyEvaluator
from anomalyvfm.models.anomalyvfm import AnomalyVFMModel, AnomalyVFMOutput
from anomalyvfm.models.decoder import DecoderConfig
from tests.conftest import TINY_VIT
from tests.metrics.metric_reference import ref_adeval_metrics

SIZE = 192  # original mask size: exactly twice the 96x96 evaluation grid
GRID = 96


def _masks() -> list[np.ndarray]:
    """Defect masks: large regions, and defects too small for the bilinear rule at 96x96."""
    masks = [np.zeros((SIZE, SIZE), bool) for _ in range(4)]
    masks[0][40:80, 30:60] = True  # a large region, kept by both rules
    masks[0][120, 20:150] = True  # a 1-pixel scratch: vanishes under bilinear + 0.5
    masks[1][51:53, 101:103] = True  # a 2x2 dot between grid cells: vanishes
    masks[1][150, 150] = True  # a single pixel: vanishes
    masks[2][10:180, 91] = True  # only a 1-pixel line: the whole mask vanishes
    masks[3][100:109, 100:109] = True  # 9x9 square, kept
    masks[3][20, 170] = True  # single pixel, vanishes
    return masks


def _write_dataset(root: Path) -> tuple[list[int], list[np.ndarray]]:
    """One MVTec-layout category: 2 good images then the 4 defective ones, in listing order."""
    rng = np.random.default_rng(0)
    cat = root / "c"
    for sub in ("test/good", "test/bad", "ground_truth/bad"):
        (cat / sub).mkdir(parents=True, exist_ok=True)
    labels, masks = [], []
    for i, mask in enumerate(_masks()):
        Image.fromarray((rng.uniform(0, 1, (SIZE, SIZE, 3)) * 255).astype(np.uint8)).save(
            cat / f"test/bad/{i:03d}.png"
        )
        mask_file = cat / f"ground_truth/bad/{i:03d}_mask.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_file)
        labels.append(1)
        masks.append(mask)
    for i in range(2):
        Image.fromarray((rng.uniform(0, 1, (SIZE, SIZE, 3)) * 255).astype(np.uint8)).save(
            cat / f"test/good/{i:03d}.png"
        )
        labels.append(0)
        masks.append(np.zeros((SIZE, SIZE), bool))
    return labels, masks


def _datamodule_masks(root: Path, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks and labels of every image, as the datamodule's evaluation set delivers them."""
    ds = MVTecAD(str(root))
    AnomalyDataModule(
        image_size=56,
        eval_mask_size=GRID,
        eval_mask_resize=method,  # type: ignore[arg-type]
        test_datasets=[ds],
    )
    samples = [ds[i] for i in range(len(ds))]
    return torch.stack([s["mask"] for s in samples]), torch.stack([s["label"] for s in samples])


def _reference_masks(root: Path) -> torch.Tensor:
    """The authors' mask transform: grey / 255, torchvision's bilinear antialiased resize, > 0.5
    (their dataset classes list files sorted; normal images get an all-zero mask)."""
    files = sorted((root / "c" / "ground_truth" / "bad").glob("*.png"))
    grey = [np.asarray(Image.open(f).convert("L"), np.float32) / 255.0 for f in files]
    grey += [np.zeros((SIZE, SIZE), np.float32)] * 2  # the good images, listed after "bad"
    stack = torch.from_numpy(np.stack(grey))[:, None]
    resized = F.interpolate(stack, (GRID, GRID), mode="bilinear", antialias=True)
    return torch.where(resized > 0.5, 1.0, 0.0)[:, 0]


def _fixed_logits(masks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder-resolution (96x96) anomaly logits that partly follow the full masks, and image
    logits."""
    rng = np.random.default_rng(3)
    logits = []
    for mask in masks:
        noise = 5 * ndimage.gaussian_filter(rng.normal(size=(GRID, GRID)), 2.0)
        signal = 3 * ndimage.gaussian_filter(mask[1::2, 1::2].astype(float), 1.0)
        logits.append((noise + signal - 1.5).astype(np.float32))
    image = torch.tensor([2.0, 0.5, -0.3, 1.0, -1.0, 0.2])
    return torch.from_numpy(np.stack(logits))[:, None], image


def _reference_maps(logits: torch.Tensor) -> torch.Tensor:
    """The authors' map: sigmoid, nearest resize to the mask size (a no-op at 96), then their
    ``nn.AvgPool2d(5, 1, 2)`` (zero padding counted)."""
    maps = F.interpolate(logits.sigmoid(), (GRID, GRID))
    return nn.AvgPool2d((5, 5), 1, 2)(maps)[:, 0]


def _f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """scikit-learn's precision_recall_curve F1 maximum (the reference's pixel F1), vectorised."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # the last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision, recall = tp / (tp + fp), tp / y.sum()
    return float(np.max(2 * precision * recall / (precision + recall + 1e-10)))


def _ours(masks: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, image: torch.Tensor):
    model = AnomalyVFMModel(
        BackboneConfig(name="vit_small_patch14_dinov2", model_kwargs=dict(TINY_VIT)),
        AdapterConfig(type="none"),
        DecoderConfig(),
        image_size=56,
        mean_filter_padding="zeros",
    )
    out = AnomalyVFMOutput(logits, torch.zeros_like(logits), image)
    pred = model.postprocess(out, (GRID, GRID))
    evaluator = AnomalyEvaluator(["c"], metric_mode="reference_binned")
    evaluator.update(pred.pred_score, labels, ["c"] * len(labels), pred.anomaly_map, masks)
    return evaluator.compute()["c"], pred.anomaly_map


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], list]:
    root = tmp_path_factory.mktemp("protocol")
    labels, masks = _write_dataset(root)
    return root, labels, masks


def test_bilinear_mask_resize_and_binned_metrics_give_the_reference_values(dataset) -> None:
    root, _, full_masks = dataset
    masks, labels = _datamodule_masks(root, "bilinear_antialias")
    expected_masks = _reference_masks(root)
    assert torch.equal(masks, expected_masks)
    # The small defects are gone: image 1 and 2 have no anomalous pixel left, 0 and 3 one
    # region each.
    regions = [ndimage.label(m.numpy(), np.ones((3, 3)))[1] for m in masks[:4]]
    assert regions == [1, 0, 0, 1]

    logits, image = _fixed_logits(full_masks)
    ours, maps = _ours(masks, labels, logits, image)
    ref_maps = _reference_maps(logits)
    assert torch.allclose(maps, ref_maps, atol=1e-6)
    ref_list = [m.numpy() for m in ref_maps]
    expected = ref_adeval_metrics(ref_list, [m.numpy() for m in expected_masks])
    assert ours["pixel_AUROC"] == pytest.approx(expected["auroc"], abs=1e-6)
    assert ours["pixel_AP"] == pytest.approx(expected["ap"], abs=1e-6)
    assert ours["pixel_AUPRO"] == pytest.approx(expected["aupro"], abs=1e-6)
    f1 = _f1_max(ref_maps.numpy().astype(np.float64).ravel(), expected_masks.numpy().ravel() > 0)
    assert ours["pixel_F1max"] == pytest.approx(f1, abs=1e-5)


def test_nearest_mask_resize_keeps_small_defects_and_changes_the_values(dataset) -> None:
    root, _, full_masks = dataset
    nearest, labels = _datamodule_masks(root, "nearest")
    # At an exact factor of 2, nearest neighbour takes the pixel at (2i + 1, 2j + 1).
    expected_masks = torch.from_numpy(np.stack([m[1::2, 1::2] for m in full_masks])).float()
    assert torch.equal(nearest, expected_masks)
    bilinear, _ = _datamodule_masks(root, "bilinear_antialias")
    assert nearest[1:3].sum() > 0 and bilinear[1:3].sum() == 0  # small defects kept / gone
    logits, image = _fixed_logits(full_masks)
    ours_nearest, _ = _ours(nearest, labels, logits, image)
    ours_bilinear, _ = _ours(bilinear, labels, logits, image)
    ref_list = [m.numpy() for m in _reference_maps(logits)]
    expected = ref_adeval_metrics(ref_list, [m.numpy() for m in expected_masks])
    assert ours_nearest["pixel_AUROC"] == pytest.approx(expected["auroc"], abs=1e-6)
    assert ours_nearest["pixel_AUPRO"] == pytest.approx(expected["aupro"], abs=1e-6)
    for metric in ("pixel_AUROC", "pixel_AP", "pixel_AUPRO"):
        assert abs(ours_nearest[metric] - ours_bilinear[metric]) > 1e-3, metric
    # Image metrics do not depend on the masks.
    assert ours_nearest["image_AUROC"] == ours_bilinear["image_AUROC"]


def test_mask_resize_options_are_checked() -> None:
    with pytest.raises(ValueError, match="data.eval_mask_resize must be one of"):
        AnomalyDataModule(eval_mask_resize="bicubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data.eval_mask_threshold must be in \(0, 1\)"):
        AnomalyDataModule(eval_mask_threshold=1.0)
