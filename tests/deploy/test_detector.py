"""The Detector API: same numbers as ``anomalyvfm test``, calibration rules, save and reload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from anomalyvfm import Detector
from anomalyvfm.backbones.timm_models import WeightsUnavailableError
from anomalyvfm.deploy import calibration as cal
from anomalyvfm.deploy.detector import CALIBRATION_KEY, file_sha256
from tests.helpers import TINY, child_env


def _anomalyvfm_test(tmp_path: Path, ckpt: Path, images: Path, *callback: str) -> None:
    """``python -m anomalyvfm test`` of ``ckpt`` on the folder ``images`` (normal) and its
    ``sub`` folder (anomalous) with the callback options ``callback``, in a subprocess."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "anomalyvfm",
            "test",
            f"--config={TINY}",
            f"--ckpt_path={ckpt}",
            f"--trainer.default_root_dir={tmp_path}",
            "--data.test_datasets+=FolderDataset",
            f"--data.test_datasets.normal_dir={images}",
            f"--data.test_datasets.abnormal_dir={images / 'sub'}",
            *callback,
        ],
        capture_output=True,
        text=True,
        env=child_env(tmp_path, offline=True),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_scores_and_maps_equal_those_of_anomalyvfm_test(
    tmp_path: Path, trained_ckpt: Path, mixed_images: Path
) -> None:
    dump = tmp_path / "test_outputs.pt"
    _anomalyvfm_test(
        tmp_path,
        trained_ckpt,
        mixed_images,
        "--trainer.callbacks+=tests.helpers.DumpTestOutputs",
        f"--trainer.callbacks.path={dump}",
    )
    tested = torch.load(dump, weights_only=True)
    assert len(tested["path"]) == 5
    detector = Detector.from_checkpoint(trained_ckpt)
    preds = detector.predict(tested["path"], batch_size=2)
    for path, score, low, pred in zip(
        tested["path"], tested["pred_score"], tested["low_map"], preds, strict=True
    ):
        size = Image.open(path).size[::-1]
        expected = F.interpolate(low[None, None], size, mode="bilinear", align_corners=False)[0, 0]
        assert pred.path == path
        assert pred.anomaly_map.shape == size and pred.anomaly_map.dtype == np.float32
        assert abs(pred.score - float(score)) < 1e-5, path
        np.testing.assert_allclose(pred.anomaly_map, expected.numpy(), atol=1e-5, rtol=0)
        assert pred.mask.dtype == bool and np.array_equal(pred.mask, pred.anomaly_map > 0.5)
        assert pred.label == (pred.score > 0.5) and not pred.calibrated
        assert pred.image_threshold == pred.pixel_threshold == 0.5


def test_pil_images_and_arrays_score_as_their_files(trained_ckpt: Path, mixed_images: Path) -> None:
    detector = Detector.from_checkpoint(trained_ckpt)
    files = ["rgb.png", "grey.png", "alpha.png", "deep.png"]
    arrays = [np.asarray(Image.open(mixed_images / f)) for f in files]
    assert arrays[1].ndim == 2 and arrays[2].shape[2] == 4 and arrays[3].dtype == np.uint16
    pils = [Image.open(mixed_images / f) for f in files]
    by_file = detector.predict([mixed_images / f for f in files], batch_size=4)
    for other in (detector.predict(arrays, batch_size=3), detector.predict(pils)):
        for a, b in zip(by_file, other, strict=True):
            assert abs(a.score - b.score) < 1e-6
            np.testing.assert_allclose(a.anomaly_map, b.anomaly_map, atol=1e-6)
    # One array alone is one input; float arrays are [0, 1] values.
    single = detector.predict(arrays[0].astype(np.float32) / 255.0)
    assert len(single) == 1 and abs(single[0].score - by_file[0].score) < 1e-5


def test_bad_inputs_are_named(trained_ckpt: Path, tmp_path: Path) -> None:
    detector = Detector.from_checkpoint(trained_ckpt)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        detector.predict([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match=r"input 1: .*\(H, W, 3\)"):
        detector.predict([np.zeros((8, 8), np.uint8), np.zeros((8, 8, 2), np.uint8)])
    with pytest.raises(ValueError, match="int64"):
        detector.predict(np.zeros((8, 8), np.int64))
    with pytest.raises(ValueError, match="batch_size"):
        detector.predict(np.zeros((8, 8), np.uint8), batch_size=0)
    with pytest.raises(ValueError, match="needs labels"):
        detector.calibrate([np.zeros((8, 8), np.uint8)], rule="f1")
    with pytest.raises(ValueError, match="target_fpr"):
        detector.calibrate([np.zeros((8, 8), np.uint8)], target_fpr=1.5)
    with pytest.raises(FileNotFoundError, match="no such file"):
        Detector.from_checkpoint(tmp_path / "none.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt cannot be read"):
        Detector.from_checkpoint(tmp_path / "junk.ckpt")


def _normals(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Normal images of one texture at several brightness and noise levels."""
    out = []
    for _ in range(n):
        base, noise = rng.uniform(0.3, 0.6), rng.uniform(0.02, 0.2)
        img = np.clip(base + rng.normal(0, noise, (48, 48, 3)), 0, 1)
        out.append((img * 255).astype(np.uint8))
    return out


def test_calibration_on_normals_keeps_the_held_out_fpr_near_target(trained_ckpt: Path) -> None:
    detector = Detector.from_checkpoint(trained_ckpt)
    # The one-step model's image head scores every image alike (to 1e-6); the map maximum
    # varies with the image, so it stands in for the image score here.
    detector.model.image_score = "map_max"
    rng = np.random.default_rng(0)
    calibration, held_out = _normals(rng, 100), _normals(rng, 100)
    result = detector.calibrate(calibration, target_fpr=0.1, batch_size=25)
    assert result.rule == "fpr" and result.num_images == result.num_normal == 100
    assert result.num_pixels == 100 * 48 * 48
    calib_preds = detector.predict(calibration, batch_size=50)
    assert sum(p.label for p in calib_preds) <= 10  # never more than the target on its own set
    preds = detector.predict(held_out, batch_size=50)
    assert all(p.calibrated for p in preds)
    image_fpr = np.mean([p.label for p in preds])
    pixel_fpr = np.mean([p.mask.mean() for p in preds])
    calib_pixel_fpr = np.mean([p.mask.mean() for p in calib_preds])
    assert 0.02 <= image_fpr <= 0.2, image_fpr
    assert 0.095 <= calib_pixel_fpr <= 0.1, calib_pixel_fpr
    assert 0.07 <= pixel_fpr <= 0.13, pixel_fpr


def test_fpr_threshold_on_many_scores() -> None:
    rng = np.random.default_rng(1)
    scores = rng.beta(2, 5, 20_000)
    t = cal.fpr_threshold(scores[:10_000], 0.01)
    assert np.mean(scores[:10_000] > t) <= 0.01
    assert abs(np.mean(scores[10_000:] > t) - 0.01) < 0.003
    histogram = cal.PixelHistogram()
    histogram.add(scores[:10_000])
    pt = histogram.fpr_threshold(0.01)
    assert 0.0095 <= np.mean(scores[:10_000] > pt) <= 0.01


def _f1(scores: np.ndarray, labels: np.ndarray, t: float) -> float:
    predicted = scores > t
    tp = (predicted & labels).sum()
    return 2 * tp / (predicted.sum() + labels.sum())


def test_f1_rule_picks_the_f1_max_threshold() -> None:
    # Normals up to 0.5 with one outlier at 0.85; anomalies from 0.3 up. The best split keeps
    # the outlier as a false positive and misses the anomaly at 0.3: above 0.45 is anomalous.
    scores = np.array([0.1, 0.2, 0.25, 0.35, 0.4, 0.5, 0.85, 0.3, 0.6, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1], bool)
    t = cal.f1_threshold(scores, labels)
    best = max(_f1(scores, labels, c) for c in np.linspace(0, 1, 10_001))
    assert _f1(scores, labels, t) == pytest.approx(best)
    assert t == pytest.approx(0.55)  # half-way between 0.5 and 0.6
    # Miss rate: at most one of five anomalies missed -> the threshold lies just below 0.6.
    assert cal.miss_rate_threshold(scores, labels, 0.2) == pytest.approx(0.55)
    assert cal.miss_rate_threshold(scores, labels, 0.0) == pytest.approx(0.275)


def test_labelled_calibration_rules_on_the_detector(trained_ckpt: Path) -> None:
    detector = Detector.from_checkpoint(trained_ckpt)
    detector.model.image_score = "map_max"
    rng = np.random.default_rng(2)
    images = _normals(rng, 12)
    labels = [0] * 6 + [1] * 6
    masks: list[np.ndarray | None] = [None] * 6
    for img in images[6:]:
        img[10:30, 10:30] = 255  # a bright square
        mask = np.zeros((48, 48), bool)
        mask[10:30, 10:30] = True
        masks.append(mask)
    scores = np.array([p.score for p in detector.predict(images)])
    result = detector.calibrate(images, labels=labels, masks=masks, rule="f1")
    assert result.rule == "f1" and (result.num_normal, result.num_anomalous) == (6, 6)
    assert result.image_threshold == cal.f1_threshold(scores, np.array(labels, bool))
    assert 0 <= result.pixel_threshold <= 1
    missed = detector.calibrate(
        images, labels=labels, rule="miss_rate", max_miss_rate=0.0, batch_size=5
    )
    assert missed.rule == "miss_rate" and missed.max_miss_rate == 0.0
    assert all(p.label for p in detector.predict(images[6:]))
    with pytest.raises(ValueError, match="max_miss_rate"):
        detector.calibrate(images, labels=labels, rule="miss_rate")


def test_save_and_reload_keep_thresholds_and_weights(tmp_path: Path, trained_ckpt: Path) -> None:
    detector = Detector.from_checkpoint(trained_ckpt)
    rng = np.random.default_rng(3)
    images = _normals(rng, 10)
    before = detector.predict(images)
    assert not detector.calibrated and detector.describe()["rule"] is None
    assert detector.checkpoint_sha256 == file_sha256(trained_ckpt)
    result = detector.calibrate(images, target_fpr=0.2)
    saved = detector.save(tmp_path / "calibrated.ckpt")
    reloaded = Detector.from_checkpoint(saved)
    assert reloaded.calibrated and reloaded.calibration == result
    assert reloaded.image_threshold == result.image_threshold
    assert reloaded.pixel_threshold == result.pixel_threshold
    assert reloaded.describe()["calibration"]["num_images"] == 10
    original = torch.load(trained_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    stored = torch.load(saved, map_location="cpu", weights_only=True)
    assert stored[CALIBRATION_KEY]["rule"] == "fpr"
    assert set(stored["state_dict"]) == set(original)
    assert all(torch.equal(stored["state_dict"][k], v) for k, v in original.items())
    after = reloaded.predict(images)
    for a, b in zip(before, after, strict=True):
        assert a.score == b.score and np.array_equal(a.anomaly_map, b.anomaly_map)
        assert b.calibrated and b.label == (b.score > result.image_threshold)
    # The calibrated file is still a checkpoint the Lightning task loads.
    from anomalyvfm.tasks import AnomalyVFM

    assert AnomalyVFM.load_from_checkpoint(saved, weights_only=True).hparams["image_size"] == 56


def _with_backbone(ckpt_path: Path, tmp_path: Path, **backbone: object) -> Path:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["backbone"].update(backbone)
    path = tmp_path / "sourced.ckpt"
    torch.save(ckpt, path)
    return path


def test_backbone_comes_from_its_recorded_source(
    tmp_path: Path, trained_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    weights = tmp_path / "vit.safetensors"
    src = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, img_size=56, depth=2, embed_dim=32,
        num_heads=2,
    )  # fmt: skip
    save_file(src.state_dict(), weights)
    moved = _with_backbone(trained_ckpt, tmp_path, checkpoint_path=str(tmp_path / "gone.st"))
    with pytest.raises(FileNotFoundError, match=r"model\.backbone\.checkpoint_path .*gone\.st"):
        Detector.from_checkpoint(moved)
    detector = Detector.from_checkpoint(moved, backbone_checkpoint=weights)
    assert detector.predict(np.zeros((20, 20), np.uint8))[0].anomaly_map.shape == (20, 20)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    pretrained = _with_backbone(
        trained_ckpt, tmp_path, name="vit_small_patch14_dinov2.lvd142m", pretrained=True
    )
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE") as err:
        Detector.from_checkpoint(pretrained)
    assert "model.backbone.checkpoint_path" in str(err.value)


def test_import_stays_light_and_detector_is_lazy(tmp_path: Path) -> None:
    import anomalyvfm
    from anomalyvfm.deploy import detector

    assert anomalyvfm.Detector is detector.Detector
    code = "import sys, anomalyvfm; print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=child_env(tmp_path, offline=True),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"]


@pytest.mark.slow
def test_results_of_test_record_a_calibrated_checkpoint(
    tmp_path: Path, trained_ckpt: Path, mixed_images: Path
) -> None:
    detector = Detector.from_checkpoint(trained_ckpt)
    calibration = detector.calibrate(list(mixed_images.glob("*.png")), target_fpr=0.2)
    calibrated = detector.save(tmp_path / "calibrated.ckpt")
    results = tmp_path / "results.json"
    _anomalyvfm_test(
        tmp_path,
        calibrated,
        mixed_images,
        "--trainer.callbacks+=ResultsWriter",
        f"--trainer.callbacks.path={results}",
    )
    record = json.loads(results.read_text())["model"]
    assert record["checkpoint"] == str(calibrated)
    assert record["checkpoint_sha256"] == file_sha256(calibrated) != file_sha256(trained_ckpt)
    assert record["backbone"] == "vit_small_patch14_dinov2" and record["calibrated"] is True
    assert record["image_threshold"] == calibration.image_threshold
    assert record["pixel_threshold"] == calibration.pixel_threshold
    assert record["threshold_rule"] == "fpr"
