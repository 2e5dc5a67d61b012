"""A real training run killed with SIGKILL resumes from its last checkpoint and ends exactly like
an uninterrupted run: same weights, optimizer state and sample order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from tests.conftest import REPO
from tests.helpers import TINY

MAX_STEPS = 6


class SlowSteps(pl.Callback):
    """Sleeps after every batch, so that the test can kill the run mid-way (timing only)."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: Any) -> None:
        time.sleep(self.seconds)


def fit_cmd(normal_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "anomalyvfm",
        "fit",
        "--config",
        TINY,
        f"--data.normal_dir={normal_dir}",
        "--data.train_length=8",  # 4 batches of 2 per epoch: 6 steps x 2 batches, 3 epochs
        f"--trainer.max_steps={MAX_STEPS}",
        f"--trainer.default_root_dir={out}",
        "--trainer.deterministic=true",
        "--trainer.callbacks+=ModelCheckpoint",
        f"--trainer.callbacks.dirpath={out / 'ckpt'}",
        "--trainer.callbacks.every_n_train_steps=1",
        "--trainer.callbacks.save_last=true",
        "--trainer.callbacks.save_top_k=-1",
        "--trainer.callbacks+=tests.helpers.RecordSamples",
        f"--trainer.callbacks.dirpath={out / 'samples'}",
        *extra,
    ]


def env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "disabled", "PYTHONPATH": path}


def run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]


def final_state(out: Path) -> dict[str, Any]:
    ckpt = torch.load(out / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == MAX_STEPS
    return ckpt


def last_step(out: Path) -> int:
    """Global step of ``last.ckpt`` (-1 while there is none); files are written atomically."""
    path = out / "ckpt" / "last.ckpt"
    if not path.is_file():
        return -1
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def samples(out: Path) -> dict[int, list[int]]:
    """Sample indices of rank 0's batches, by the global step at each batch's end."""
    by_step: dict[int, list[int]] = {}
    for line in (out / "samples" / "rank0.jsonl").read_text().splitlines():
        rec = json.loads(line)
        by_step.setdefault(rec["step"], []).extend(rec["index"])
    return by_step


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [3, 4])
def test_killed_run_resumes_to_the_same_result(
    normal_dir: Path, tmp_path: Path, kill_after: int
) -> None:
    """``kill_after`` 3 is mid-epoch (2 of epoch 1's 4 batches done), 4 an epoch's end."""
    reference = tmp_path / "reference"
    run(fit_cmd(normal_dir, reference), tmp_path)

    killed = tmp_path / "killed"
    cmd = fit_cmd(normal_dir, killed, "--trainer.callbacks+=tests.training.test_resume.SlowSteps")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while last_step(killed) < kill_after:
            assert proc.poll() is None, proc.stderr.read()[-4000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    interrupted = torch.load(killed / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert kill_after <= interrupted["global_step"] < MAX_STEPS

    # Batches after the checkpoint are redone by the resumed run: drop their records (the
    # checkpoint covers 2 micro-batches per step, as no epoch ends on a partial accumulation).
    log = killed / "samples" / "rank0.jsonl"
    kept = log.read_text().splitlines()[: 2 * interrupted["global_step"]]
    log.write_text("".join(line + "\n" for line in kept))
    run(fit_cmd(normal_dir, killed, "--ckpt_path=last"), tmp_path)

    ref, res = final_state(reference), final_state(killed)
    assert ref["state_dict"].keys() == res["state_dict"].keys()
    for key, value in ref["state_dict"].items():
        assert torch.equal(value, res["state_dict"][key]), key  # bit-identical weights
    ref_opt, res_opt = ref["optimizer_states"][0]["state"], res["optimizer_states"][0]["state"]
    for group, state in ref_opt.items():
        for name, value in state.items():
            assert torch.equal(value, res_opt[group][name]), (group, name)
    assert ref["epoch"] == res["epoch"]
    # The resumed run continued the sample order instead of restarting its epoch.
    assert samples(killed) == samples(reference)
    flat = [i for step in sorted(samples(reference)) for i in samples(reference)[step]]
    assert len(flat) == len(set(flat)) == MAX_STEPS * 2 * 2  # steps x accumulation x batch
