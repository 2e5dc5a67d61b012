"""The exported detector's resize benchmark runs end to end on real MTD images at a tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED_DATA

SCRIPT = REPO / "experiments" / "benchmarks" / "export_resize.py"


@pytest.mark.slow
def test_export_resize_benchmark_reports_small_consistent_differences() -> None:
    if not (SHARED_DATA / "mtd").is_dir():
        pytest.skip("the real MTD data is not available here")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--per-class", "1", "--sizes", "56"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["images"] == 6 and row["image_size"] == 56
    # The two resizes differ by the data path's uint8 rounding: under one grey level.
    assert 0 < row["max_abs_pixel_diff_grey_levels"] <= 1.0
    # The ONNX file run on full-size pixels moves the score as the PyTorch in-graph path does.
    assert row["onnx_max_abs_diff"] == pytest.approx(row["head_max_abs_diff"], abs=1e-4)
    assert row["head_max_abs_diff"] < 0.05
