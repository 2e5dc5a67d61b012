"""A real offline W&B run read back from its transaction log: group, tags, config, history.

Offline runs keep everything in ``run-<id>.wandb`` (what ``wandb sync`` uploads): a LevelDB-style
log of ``wandb.proto`` ``Record`` messages. The reader below follows that format (7-byte file
header, 32 KiB blocks, records split into FULL/FIRST/MIDDLE/LAST chunks) and decodes each record
with wandb's own protobuf classes.
"""

from __future__ import annotations

import csv
import json
import math
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import TINY, run

BLOCK = 32 * 1024
CHUNK_HEADER = 7  # crc32c (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """The ``wandb.proto`` records of a ``.wandb`` transaction log, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = 7, b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if left < CHUNK_HEADER or (kind == 0 and length == 0):  # block trailer / padding
            pos += left
            continue
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    """What an offline run recorded, folded from its records."""

    project: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, run_dir: Path) -> OfflineRun:
        out = cls()
        for rec in records(next(run_dir.glob("run-*.wandb"))):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                out.project, out.group, out.tags = rec.run.project, rec.run.run_group, []
                out.tags = list(rec.run.tags)
                out.config.update(
                    {_key(i): json.loads(i.value_json) for i in rec.run.config.update}
                )
            elif kind == "config":
                out.config.update({_key(i): json.loads(i.value_json) for i in rec.config.update})
            elif kind == "history":
                out.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
            elif kind == "summary":
                out.summary.update({_key(i): json.loads(i.value_json) for i in rec.summary.update})
                for item in rec.summary.remove:
                    out.summary.pop(_key(item), None)
        return out

    def series(self, key: str) -> list[float]:
        return [row[key] for row in self.history if key in row]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    # The tiny config switches logging off; without that key the CLI's default loggers apply.
    config = yaml.safe_load(Path(TINY).read_text())
    del config["trainer"]["logger"]
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def _finish_and_read(tmp: Path, seen: set[Path]) -> OfflineRun:
    import wandb

    wandb.finish()  # the CLI leaves the run open (a process exit finishes it); flush it now
    new = sorted(set(tmp.glob("**/wandb/offline-run-*")) - seen)
    assert len(new) == 1, new
    seen.add(new[0])
    # W&B's service process may still be flushing the file when finish() returns on a busy
    # machine: read again until the record log decodes and holds the run record.
    for _ in range(40):
        try:
            run = OfflineRun.read(new[0])
            if run.project:
                return run
        except Exception:  # a record cut mid-write
            pass
        time.sleep(0.25)
    return OfflineRun.read(new[0])


def test_fit_and_test_runs_read_back_from_offline_files(offline: Path, normal_dir, mvtec_root):
    tmp, seen = offline, set()
    common = [
        "--config",
        str(tmp / "tiny.yaml"),
        f"--data.normal_dir={normal_dir}",
        f"--trainer.default_root_dir={tmp}",
        "--data.val_datasets+=MVTecAD",
        f"--data.val_datasets.root={mvtec_root}",
        "--data.val_datasets.categories=[bottle]",
    ]
    # One optimizer step per epoch (2 batches, accumulation 2): validation after each step.
    fit = run("fit", *common, "--trainer.log_every_n_steps=1", "--trainer.limit_train_batches=2")
    logged = _finish_and_read(tmp, seen)

    assert logged.project == "anomalyvfm"
    assert logged.group == "vit_small_patch14_dinov2"  # backbone, pretrained tag dropped
    assert logged.tags == ["dora", "rank-4", "dinov2"]
    # The fully resolved config, flattened to dotted keys (what sweeps set).
    assert logged.config["model.init_args.adapter.rank"] == 4
    assert logged.config["data.init_args.image_size"] == 56
    assert logged.config["image_size"] == 56  # the model's hparams (linked from data.image_size)
    assert logged.config["trainer.max_steps"] == 2
    assert logged.config["data.init_args.val_datasets"][0]["init_args"]["root"] == str(mvtec_root)
    # train/loss history equals what the task logged (the CSV logger saw the same values).
    metrics_csv = next(tmp.rglob("metrics.csv"))
    csv_loss = [
        float(r["train/loss"]) for r in csv.DictReader(metrics_csv.open()) if r["train/loss"]
    ]
    assert len(logged.series("train/loss")) == 2
    assert logged.series("train/loss") == pytest.approx(csv_loss, rel=1e-6)
    final = fit.trainer.callback_metrics
    assert logged.series("train/loss")[-1] == pytest.approx(final["train/loss"].item(), rel=1e-6)
    auroc = logged.series("val/mvtec_ad/image_AUROC")
    assert len(auroc) == 2 and auroc[-1] == pytest.approx(final["val/mvtec_ad/image_AUROC"].item())
    assert "val/mvtec_ad/bottle/pixel_AUPRO" in logged.summary
    trainable = sum(p.numel() for p in fit.model.parameters() if p.requires_grad)
    assert logged.summary["model/trainable_params"] == trainable > 0
    assert logged.summary["model/backbone"] == "vit_small_patch14_dinov2"
    assert logged.summary["model/adapter_rank"] == 4

    ckpt = next(tmp.rglob("*.ckpt"))
    test = run(
        "test",
        *common[:4],
        f"--ckpt_path={ckpt}",
        "--data.test_datasets+=MVTecAD",
        f"--data.test_datasets.root={mvtec_root}",
    )
    logged = _finish_and_read(tmp, seen)
    task = test.model
    assert logged.group == "vit_small_patch14_dinov2"
    assert logged.summary["model/trainable_params"] == trainable
    for metric, value in task.overall_mean.items():
        assert logged.summary[f"test/mean/{metric}"] == pytest.approx(value, rel=1e-6), metric
    for metric, value in task.dataset_means["mvtec_ad"].items():
        assert logged.summary[f"test/mvtec_ad/{metric}"] == pytest.approx(value, rel=1e-6)
    aupro = task.results["mvtec_ad"]["tile"]["pixel_AUPRO"]
    assert not math.isnan(aupro)
    assert logged.series("test/mvtec_ad/tile/pixel_AUPRO") == [pytest.approx(aupro, rel=1e-6)]


def test_explicit_group_wins_and_user_tags_are_kept(offline: Path) -> None:
    from anomalyvfm.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(offline / "runs"), project="p", group="mine", tags=["ab"])
    hparams = {"backbone": {"name": "vit_so400m_patch14_siglip_378.v2_webli"}}
    logger.describe_model({**hparams, "adapter": {"type": "lora", "rank": 16}}, 1234)
    _ = logger.experiment
    logged = _finish_and_read(offline, set())
    assert logged.group == "mine"
    assert logged.tags == ["ab", "lora", "rank-16", "siglip2"]
    assert logged.summary["model/trainable_params"] == 1234
    assert logged.summary["model/backbone_family"] == "siglip2"
