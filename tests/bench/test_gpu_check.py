"""The prepared GPU proof (``make gpu-check``) runs end to end in its dry mode on the CPU.

The dry mode goes through every phase of the GPU run with tiny models of the same architectures:
the real CLI's fit and test, the speed benchmark, AUPRO, diffusion inpainting. So the command
that a GPU session runs once, with minutes of device time, cannot rot unnoticed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA

SCRIPT = REPO / "experiments" / "benchmarks" / "gpu_check.sh"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mtd").is_dir(), reason="needs ../shared/data")
def test_gpu_check_dry_runs_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_PACK": str(tmp_path / "no_pack"),  # no carried data or wheels: ../shared/data
        "GPU_WORK": str(tmp_path / "work"),
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(out), "--dry"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GPU check (dry, CPU)" in proc.stdout
    results = json.loads((out / "gpu_check.json").read_text())
    phases = results["phases"]
    assert list(phases) == ["env", "aupro", "fit", "test", "predict", "bench", "inpaint"]
    assert {name: rec["status"] for name, rec in phases.items()} == dict.fromkeys(phases, "ok")
    log = (out / "gpu_check.log").read_text()
    assert "===== phase fit" in log and "python -m anomalyvfm fit" in phases["fit"]["command"]
    # fit: the paper config through the real CLI, 2 optimizer steps, a checkpoint written.
    assert phases["fit"]["exit_code"] == 0 and phases["fit"]["optimizer_steps"] == 2
    assert phases["fit"]["checkpoint"].endswith("last.ckpt")
    assert "compiled_fit_failure" not in phases["fit"]
    # test: that checkpoint on MTD, MPDD and HeadCT; results.json with every dataset.
    test = phases["test"]["results_json"]
    assert set(test["datasets"]) == {"mtd", "mpdd", "headct"}
    assert test["protocol"]["metric_mode"] == "exact"
    # bench: both recipes measured, the test run timed for ours only.
    ref, ours = phases["bench"]["recipes"]
    assert (ref["recipe"], ours["recipe"]) == ("reference", "ours")
    assert ref["train_images_per_s"] > 0 and ours["infer_images_per_s"] > 0
    assert "eval_seconds" in ours and "eval_seconds" not in ref
    # AUPRO on the CPU (no CUDA here), a valid value.
    assert 0 <= phases["aupro"]["cpu"]["value"] <= 1 and "cuda" not in phases["aupro"]
    # inpainting: the defaults and the bf16 settings timed; compilation is CUDA-only.
    rates = [row["images_per_s"] for row in phases["inpaint"]["settings"]]
    assert all(r > 0 for r in rates[:3]) and rates[3] is None
    # predict: the fit checkpoint scored by Detector.predict, and exported to .pt2 and ONNX
    # (the exporter packages are installed here) with the files' outputs equal to PyTorch's.
    predict = phases["predict"]
    assert predict["predict_images_per_s"] > 0 and predict["precision"] == "32"
    for fmt in ("pt2", "onnx"):
        assert predict[fmt]["mb"] > 0
        assert predict[fmt]["score_max_abs_diff"] < 1e-4 and predict[fmt]["map_max_abs_diff"] < 1e-4


def test_gpu_check_refuses_a_data_folder_without_the_datasets(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.with_suffix(".py")), "--dry", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert f"--data {tmp_path} has no mtd/ folder" in proc.stdout
