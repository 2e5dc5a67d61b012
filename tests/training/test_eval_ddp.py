"""Evaluation under 2-process CPU DDP equals single-process evaluation, sample for sample.

Real subprocesses (``python -m anomalyvfm test``): Lightning starts the second rank itself, as
it does on a GPU node. The test set sizes do not divide by the world size or the batch size, and
one dataset is evaluated at each mask's original (varying) resolution, so padding, uneven shares
and variable-size maps are all exercised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from anomalyvfm.data.evaluation import ShardedEvalSampler, collate_eval
from tests.data.mtd import data as mtd_data
from tests.data.mvtec import data as mvtec_data
from tests.helpers import TINY


def run_test(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "anomalyvfm", "test", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An eval config over a 2-category MVTec fixture (15 images) and an MTD fixture (11)."""
    root = tmp_path_factory.mktemp("ddp_eval")
    mvtec = mvtec_data.write(root / "mvtec", num_good=3, num_bad=4, seed=3)
    (mvtec / "tile" / "test" / "good" / "002.png").unlink()  # odd totals
    counts = {"Free": 4, "Blowhole": 3, "Crack": 2, "Uneven": 2}
    mtd = mtd_data.write(root / "mtd", counts=counts, seed=5)
    cfg = {
        "data": {
            "init_args": {
                # Batch size 1: a CPU forward pass of a batch may round differently from the
                # same images in another batch, which is model numerics, not evaluation.
                "eval_batch_size": 1,
                "test_datasets": [
                    {"class_path": "MVTecAD", "init_args": {"root": str(mvtec)}},
                    {"class_path": "MTD", "init_args": {"root": str(mtd)}},
                ],
            }
        },
    }
    path = root / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def evaluate(suite: Path, out: Path, *extra: str) -> dict:
    result = run_test(
        [
            "--config",
            TINY,
            "--config",
            str(suite),
            f"--trainer.default_root_dir={out}",
            "--trainer.callbacks+=ResultsWriter",
            f"--trainer.callbacks.path={out / 'results.json'}",
            *extra,
        ],
        cwd=out.parent,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("resolution", ["original", "28"])
def test_two_process_ddp_equals_single_process(suite: Path, tmp_path: Path, resolution: str):
    extra = [f"--data.eval_mask_size={resolution}"]
    single = evaluate(suite, tmp_path / "single", *extra)
    ddp = evaluate(suite, tmp_path / "ddp", "--trainer.devices=2", "--trainer.strategy=ddp", *extra)
    assert ddp["datasets"] == single["datasets"]  # bit-identical metrics, every category
    assert ddp["mean"] == single["mean"]
    counts = {name: d.get("num_images") for name, d in single["datasets"].items()}
    assert counts == {"mvtec_ad": {"bottle": 7, "tile": 6}, "mtd": {"mtd": 11}}
    mtd = single["datasets"]["mtd"]["categories"]["mtd"]
    assert set(mtd) == {
        "image_AUROC",
        "image_AP",
        "image_F1max",
        "pixel_AUROC",
        "pixel_AP",
        "pixel_F1max",
        "pixel_AUPRO",
    }


def test_sharded_sampler_covers_every_index_once() -> None:
    data = list(range(11))
    shares = [list(ShardedEvalSampler(data, num_replicas=3, rank=r)) for r in range(3)]  # type: ignore[arg-type]
    assert sorted(i for s in shares for i in s) == data
    assert [len(ShardedEvalSampler(data, 3, r)) for r in range(3)] == [4, 4, 3]  # type: ignore[arg-type]


def test_collate_pads_masks_of_different_sizes() -> None:
    samples = [
        {"image": torch.zeros(3, 4, 4), "mask": torch.ones(2, 3), "label": torch.tensor(1)},
        {"image": torch.zeros(3, 4, 4), "mask": torch.zeros(3, 2), "label": torch.tensor(0)},
    ]
    batch = collate_eval(samples)
    assert batch["mask"].shape == (2, 3, 3)
    assert batch["mask_size"].tolist() == [[2, 3], [3, 2]]
    assert batch["mask"][0, :2, :3].eq(1).all() and batch["mask"][0, 2].eq(-1).all()
    assert batch["mask"][1, :, 2].eq(-1).all() and batch["mask"][1, :, :2].eq(0).all()
    same = collate_eval(samples[:1] * 2)
    assert same["mask"].shape == (2, 2, 3) and same["mask_size"].tolist() == [[2, 3], [2, 3]]
