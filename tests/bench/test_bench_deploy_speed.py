"""Smoke test of the deployed-path speed benchmark (experiments/benchmarks/deploy_speed.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import child_env

SCRIPT = REPO / "experiments" / "benchmarks" / "deploy_speed.py"
PATHS = {"eager", "merged", "plain", "ort"}


@pytest.mark.slow
def test_times_every_path_of_both_tiny_backbones(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "speed.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tiny",
            "--repeats=2",
            "--threads=1",
            "--profile",
            f"--json={out}",
        ],
        capture_output=True,
        text=True,
        env=child_env(tmp_path, offline=True),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["threads"] == 1 and result["batch_size"] == 2 and result["tiny"] is True
    assert set(result["backbones"]) == {"vits14", "vitb16"}
    for key, entry in result["backbones"].items():
        # 2 blocks x (qkv + proj) carry DoRA adapters; the grid is 4 x 4 tokens.
        assert entry["adapted_linears"] == 4, key
        assert entry["image_size"] == (56 if key == "vits14" else 64)
        assert entry["onnx_mb"] > 0
        rates = entry["images_per_s"]
        assert set(rates) == PATHS and all(r > 0 for r in rates.values()), rates
        assert all(len(s) == 2 for s in entry["seconds_per_batch"].values())
        ratios = entry["ratios"]
        assert ratios["ort/eager"] == pytest.approx(rates["ort"] / rates["eager"], rel=1e-2)
        assert ratios["merged/plain"] == pytest.approx(rates["merged"] / rates["plain"], rel=1e-2)
        # --profile: one call of (a), (b) and (d), its time split by op.
        prof = entry["profile"]
        assert set(prof) == {"eager", "merged", "ort"}
        assert all(p["wall_s"] > 0 and p["op_s"] > 0 for p in prof.values()), prof
        calls = {p: sum(v["calls"] for v in prof[p]["top_ops"].values()) for p in prof}
        assert all(c > 0 for c in calls.values()), calls
    # The printed table has one row per backbone with both ratios.
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| vits14", "| vitb16"))]
    assert len(rows) == 2 and all(len(r.strip("|").split("|")) == 8 for r in rows), proc.stdout
