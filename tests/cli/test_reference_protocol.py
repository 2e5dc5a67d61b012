"""``anomalyvfm test --config eval/reference_protocol.yaml`` as a user runs it: the reference's
mask resize and fp16 autocast option reach the results' protocol record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import TINY, child_env

PROTOCOL = REPO / "experiments" / "configs" / "eval" / "reference_protocol.yaml"


@pytest.mark.slow  # about 25 s: a CLI subprocess evaluating the tiny model
def test_reference_protocol_reaches_the_results(tmp_path: Path, mvtec_root: Path) -> None:
    out = tmp_path / "results.json"
    cmd = [
        sys.executable,
        "-m",
        "anomalyvfm",
        "test",
        f"--config={TINY}",
        f"--config={PROTOCOL}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.callbacks+=ResultsWriter",
        f"--trainer.callbacks.path={out}",
        "--data.test_datasets+=MVTecAD",
        f"--data.test_datasets.root={mvtec_root}",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=child_env(tmp_path), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    protocol = json.loads(out.read_text())["protocol"]
    assert protocol["resolution"] == 96
    assert protocol["mask_resize"] == "bilinear_antialias" and protocol["mask_threshold"] == 0.5
    assert protocol["mean_filter_padding"] == "zeros"
    assert protocol["metric_mode"] == "reference_binned"
    # Asked for, but this run is on the CPU: recorded as not applied, and said once.
    assert protocol["eval_autocast"] == "fp16 unavailable on cpu"
    assert proc.stderr.count("model.eval_autocast=fp16 has no effect on cpu") == 1
