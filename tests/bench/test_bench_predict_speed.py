"""Smoke test of the detector speed benchmark (experiments/benchmarks/predict_speed.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import child_env

SCRIPT = REPO / "experiments" / "benchmarks" / "predict_speed.py"


@pytest.mark.slow
def test_prints_cpu_images_per_second_of_the_tiny_checkpoint(tmp_path: Path) -> None:
    # Without --ckpt the script trains its own tiny checkpoint (one fit step).
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--images=8", "--batch-size=4", "--size=64"],
        capture_output=True,
        text=True,
        env=child_env(tmp_path, offline=True),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8 images of 64x64, batch 4" in proc.stdout
    rate = re.search(r"cpu\s+32:\s+([0-9.]+) images/s", proc.stdout)
    assert rate is not None and float(rate.group(1)) > 0, proc.stdout
