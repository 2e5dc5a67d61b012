"""The AUPRO benchmark script runs end to end at a tiny size and reports agreeing values."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "experiments" / "benchmarks" / "aupro.py"


def run_bench(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--num", "12", "--size", "40", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def values(table: str) -> dict[str, float]:
    rows = re.findall(r"^\| (\w+)\s+\|\s+([0-9.]+) \|\s+([0-9.]+) \|", table, re.MULTILINE)
    return {case: float(value) for case, value, _ in rows}


@pytest.mark.slow
@pytest.mark.parametrize("maps", ["random", "realistic"])
def test_benchmark_cases_agree(maps: str) -> None:
    anomalib = os.environ.get("ANOMALYVFM_ANOMALIB_PYTHON")  # a separate venv, if there is one
    extra = ["--anomalib-python", anomalib] if anomalib else []
    table = run_bench("--maps", maps, *extra)
    found = values(table)
    assert found["ours"] == pytest.approx(found["previous"], abs=1e-12)
    # The 200-threshold loop approximates: close, not equal.
    assert found["loop"] == pytest.approx(found["ours"], abs=0.05)
    assert "cuda: no GPU: not measured" in table
    if anomalib:
        assert found["anomalib"] == pytest.approx(found["ours"], abs=1e-6)
    else:
        assert re.search(r"\| anomalib\s+\| not measured", table)
