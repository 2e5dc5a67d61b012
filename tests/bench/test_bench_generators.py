"""Smoke tests of the generator speed benchmark (experiments/benchmarks/generators.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "experiments" / "benchmarks" / "generators.py"
NAMES = (
    "noise (procedural)",
    "noise (dtd folder)",
    "cutpaste (perlin)",
    "cutpaste (box)",
    "cutpaste (polygon)",
)


def _run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_quick_run_prints_a_row_per_generator(tmp_path) -> None:
    # A texture folder of one image keeps the dtd row independent of the shared data.
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 80, 10)).save(tmp_path / "tex.png")
    out = _run("--quick", "--dtd", str(tmp_path))
    assert "| generator (64x64) |" in out
    for name in NAMES:
        row = re.search(rf"^\| {re.escape(name)} \| ([0-9.]+) \| ([0-9.]+) \|", out, re.M)
        assert row is not None, f"no row for {name} in:\n{out}"
        assert float(row.group(1)) > 0 and float(row.group(2)) > 0


@pytest.mark.slow
def test_inpaint_section_without_gpu_and_on_cpu() -> None:
    out = _run("--quick", "--inpaint")  # conftest hides CUDA from subprocesses too
    assert "no GPU: not measured" in out
    # The timing code itself, on a toy-width pipeline of the SD-1.5 layout, on CPU.
    spec = importlib.util.spec_from_file_location("bench_generators", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.inpaint_section(device="cpu")
    rows = [line for line in table.splitlines() if line.startswith("| fp32") or "bf16" in line]
    assert len(rows) == 5  # fp16 is skipped on CPU
    for line in rows:
        assert float(line.rstrip(" |").rsplit("|", 1)[1]) > 0


def test_rev_compares_a_git_revision_with_the_tree(tmp_path) -> None:
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 80, 10)).save(tmp_path / "tex.png")
    out = _run("--quick", "--rev", "HEAD", "--dtd", str(tmp_path))
    assert "| generator (64x64) | HEAD: img/s per core | this tree: img/s per core |" in out
    for name in NAMES:
        row = re.search(rf"^\| {re.escape(name)} \| ([0-9.]+) \| ([0-9.]+) \|", out, re.M)
        assert row is not None, f"no row for {name} in:\n{out}"
        assert float(row.group(1)) > 0 and float(row.group(2)) > 0
