"""Training under 2-process CPU DDP through the real CLI.

The run uses :class:`EffectiveBatchSize`, records every rank's sample indices with
``tests.helpers.RecordSamples`` (named by class path, so the CLI subprocess imports it), and
its checkpoint is then evaluated by ``anomalyvfm test`` in one process and in two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anomalyvfm.callbacks import EffectiveBatchSize
from anomalyvfm.data import EpochSampler
from tests.conftest import REPO
from tests.helpers import TINY


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "WANDB_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "anomalyvfm", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def eval_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.data.mvtec import data as mvtec_data

    root = tmp_path_factory.mktemp("ddp_train_eval")
    mvtec = mvtec_data.write(root / "mvtec", num_good=3, num_bad=3, seed=4)
    cfg = {
        "data": {
            "init_args": {
                # Batch-independent CPU numerics; see tests/training/test_eval_ddp.py.
                "eval_batch_size": 1,
                "test_datasets": [{"class_path": "MVTecAD", "init_args": {"root": str(mvtec)}}],
            }
        }
    }
    path = root / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_two_process_ddp_training(normal_dir: Path, eval_suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "fit"
    fit = run_cli(
        [
            "fit",
            "--config",
            TINY,
            f"--data.normal_dir={normal_dir}",
            "--data.train_length=16",  # 8 per rank, 4 batches: the 3 x 2 batches cross epochs
            f"--trainer.default_root_dir={out}",
            "--trainer.devices=2",
            "--trainer.strategy=ddp",
            "--trainer.max_steps=3",
            "--trainer.callbacks+=EffectiveBatchSize",
            "--trainer.callbacks.total=8",  # 2 ranks x micro-batch 2 x 2 accumulation
            "--trainer.callbacks+=tests.helpers.RecordSamples",
            f"--trainer.callbacks.dirpath={out / 'samples'}",
            "--trainer.callbacks+=ModelCheckpoint",
            f"--trainer.callbacks.dirpath={out / 'ckpt'}",
            "--trainer.callbacks.filename=final",
        ],
        cwd=tmp_path,
    )
    assert fit.returncode == 0, fit.stderr[-4000:]

    ranks = [read_jsonl(out / "samples" / f"rank{r}.jsonl") for r in (0, 1)]
    for r in (0, 1):
        assert json.loads((out / "samples" / f"rank{r}.json").read_text()) == {
            "world_size": 2,
            "accumulate": 2,
        }
        assert len(ranks[r]) == 6  # 3 optimizer steps x 2 micro-batches, each of 2 samples
    seen = [[i for rec in recs for i in rec["index"]] for recs in ranks]
    assert all(len(s) == len(set(s)) == 12 for s in seen)
    assert not set(seen[0]) & set(seen[1])  # the ranks never drew the same sample
    # Exactly the sampler's shares: epoch 0 (indices 0..15) then the start of epoch 1.
    for r in (0, 1):
        sampler = EpochSampler(16, seed=0, num_replicas=2, rank=r)
        assert seen[r] == (sampler.indices(0) + sampler.indices(1))[:12]

    ckpt = out / "ckpt" / "final.ckpt"
    assert ckpt.is_file()
    results = {}
    for name, extra in (("single", []), ("ddp", ["--trainer.devices=2", "--trainer.strategy=ddp"])):
        res_dir = tmp_path / name
        test = run_cli(
            [
                "test",
                "--config",
                TINY,
                "--config",
                str(eval_suite),
                f"--trainer.default_root_dir={res_dir}",
                "--trainer.callbacks+=ResultsWriter",
                f"--trainer.callbacks.path={res_dir / 'results.json'}",
                f"--ckpt_path={ckpt}",
                *extra,
            ],
            cwd=tmp_path,
        )
        assert test.returncode == 0, test.stderr[-4000:]
        results[name] = json.loads((res_dir / "results.json").read_text())
    assert results["ddp"]["datasets"] == results["single"]["datasets"]
    assert results["ddp"]["mean"] == results["single"]["mean"]
    assert results["single"]["datasets"]["mvtec_ad"]["num_images"] == {"bottle": 6, "tile": 6}


def test_effective_batch_size_must_divide(normal_dir: Path, tmp_path: Path) -> None:
    fit = run_cli(
        [
            "fit",
            "--config",
            TINY,
            f"--data.normal_dir={normal_dir}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.callbacks+=EffectiveBatchSize",
            "--trainer.callbacks.total=5",
        ],
        cwd=tmp_path,
    )
    assert fit.returncode != 0
    assert "EffectiveBatchSize total=5 is not a multiple of" in fit.stderr
    assert "data.batch_size 2" in fit.stderr


def test_sampler_shares_are_disjoint_unpadded_and_resumable() -> None:
    shares = [EpochSampler(11, seed=3, num_replicas=3, rank=r) for r in range(3)]
    epoch0 = [list(s) for s in shares]
    assert [len(s) for s in epoch0] == [3, 3, 3]  # equal shares, the 2 left over unused
    flat = [i for s in epoch0 for i in s]
    assert len(set(flat)) == 9 and set(flat) <= set(range(11))
    s = shares[1]
    s.set_epoch(1)
    assert list(s) == s.indices(1) and min(s.indices(1)) >= 11
    s.resume(1, 2)
    assert list(s) == s.indices(1)[2:]
    assert list(s) == s.indices(1)  # the resume position applies to one iteration only
    s.resume(1, 3)  # the end of epoch 1: continue with epoch 2
    assert s.epoch == 2 and list(s) == s.indices(2)
    with pytest.raises(ValueError, match="at least one index per rank"):
        EpochSampler(2, num_replicas=3)
    assert EffectiveBatchSize(32).total == 32
