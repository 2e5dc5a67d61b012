"""``anomalyvfm export`` and :meth:`Detector.export` as a user runs them: a calibrated checkpoint
becomes one ONNX file whose outputs and thresholds are the detector's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from anomalyvfm import Detector
from tests.helpers import child_env

COMMAND = [sys.executable, "-m", "anomalyvfm"]


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        env=child_env(tmp, offline=True),
        timeout=300,
    )


@pytest.mark.slow
def test_export_command_writes_the_calibrated_detector(trained_ckpt: Path, tmp_path: Path) -> None:
    detector = Detector.from_checkpoint(trained_ckpt)
    size = detector.image_size
    rng = np.random.default_rng(0)
    normals = [rng.integers(90, 110, (size, size, 3), dtype=np.uint8) for _ in range(6)]
    calibration = detector.calibrate(normals, target_fpr=0.2)
    calibrated = detector.save(tmp_path / "calibrated.ckpt")

    out = tmp_path / "det.onnx"
    proc = _run(tmp_path, "export", "--ckpt_path", str(calibrated), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"exported onnx to {out}" in proc.stdout and "calibrated" in proc.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert meta["calibrated"] is True and meta["rule"] == "fpr"
    assert meta["image_threshold"] == calibration.image_threshold
    assert meta["pixel_threshold"] == calibration.pixel_threshold
    assert meta["checkpoint_sha256"] == Detector.from_checkpoint(calibrated).checkpoint_sha256

    # Images at the model's size: the graph's resize is an identity, as the data path's is, so
    # the file gives the detector's own scores, maps and decisions.
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(3)]
    expected = detector.predict(images)
    batch = np.stack([im.astype(np.float32) / 255 for im in images]).transpose(0, 3, 1, 2)
    score, label, amap, mask = session.run(None, {"images": batch})
    np.testing.assert_allclose(score, [p.score for p in expected], atol=1e-4, rtol=0)
    np.testing.assert_allclose(amap, np.stack([p.anomaly_map for p in expected]), atol=1e-4)
    assert label.tolist() == [p.label for p in expected]
    agree = np.mean(mask == np.stack([p.mask for p in expected]))
    assert agree > 0.999  # pixels within 1e-4 of the threshold may flip

    # The same through the Python API, as a .pt2 file (format from the suffix).
    pt2 = detector.export(tmp_path / "det.pt2")
    program = torch.export.load(str(pt2)).module()
    with torch.no_grad():
        p_score, _, p_map, _ = program(torch.from_numpy(batch))
    np.testing.assert_allclose(p_score.numpy(), score, atol=1e-5, rtol=0)
    np.testing.assert_allclose(p_map.numpy(), amap, atol=1e-5, rtol=0)


def test_export_refuses_an_unknown_suffix_in_one_line(trained_ckpt: Path, tmp_path: Path) -> None:
    proc = _run(tmp_path, "export", "--ckpt_path", str(trained_ckpt), "--output", "det.txt")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and "det.txt" in lines[0] and "*.onnx" in lines[0]
    with pytest.raises(ValueError, match=r"\*\.onnx or \*\.pt2"):
        Detector.from_checkpoint(trained_ckpt).export(tmp_path / "det.bin")
