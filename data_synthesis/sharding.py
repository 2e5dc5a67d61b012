"""Lightning's prediction loop as the engine of one pipeline stage (single process or DDP).

* :class:`StageData` plans the stage on rank 0 (which items have no valid manifest record yet, and
  the upstream records they need) and broadcasts the plan, so every rank shards the same list;
* Lightning's distributed sampler for prediction splits the pending indices between ranks;
* :class:`StageModule` runs ``Stage.process`` on each batch on the rank's device;
* :class:`ManifestWriter` writes each item's files atomically, then appends its record.

torch and lightning are imported here, not by the stages, so config checks stay light.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from data_synthesis.manifest import (
    append_record,
    atomic_write,
    encode_png,
    sha256_bytes,
    shard_path,
    valid_records,
)
from data_synthesis.stages import STAGE_IDS, Item, Output, Stage

# Test hook: "STAGE:K" makes a process SIGKILL itself after writing the files of its K-th item of
# STAGE and before appending its record: the worst moment for a crash.
CRASH_ENV = "DATA_SYNTHESIS_CRASH_AFTER"


class _Items(Dataset):
    """The pending item indices of a stage; items are read in data-loader workers."""

    def __init__(self, stage: Stage, indices: Sequence[int]) -> None:
        self.stage = stage
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Item:
        return self.stage.load(self.indices[k])


def _as_list(batch: list[Item]) -> list[Item]:
    """Collate: keep items as a list (images may differ in size; nothing is stacked)."""
    return batch


def plan_stage(stage: Stage, num: int) -> dict[str, Any]:
    """Pending indices of ``stage`` and the upstream records they need (or an error message)."""
    done = valid_records(stage.out, stage.name, range(num))
    pending = [i for i in range(num) if i not in done]
    inputs = {up: valid_records(stage.out, up, pending) for up in stage.upstream}
    for up, records in inputs.items():
        missing = [i for i in pending if i not in records]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            return {
                "error": f"stage {stage.name!r} needs the {up!r} stage's output for "
                f"{len(missing)} item(s) ({shown}) in {stage.out}: run --stages {up} first"
            }
    return {"error": None, "pending": pending, "inputs": inputs}


class StageData(LightningDataModule):
    """Pending items of one stage, planned on rank 0 and broadcast to all ranks."""

    def __init__(self, stage: Stage, num: int, batch_size: int, num_workers: int) -> None:
        super().__init__()
        self.stage = stage
        self.num = num
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pending: list[int] = []

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        assert trainer is not None
        local: Any = plan_stage(self.stage, self.num) if trainer.is_global_zero else None
        plan: dict[str, Any] = trainer.strategy.broadcast(local, src=0)
        if plan["error"]:
            raise ValueError(plan["error"])
        self.stage.inputs = plan["inputs"]
        self.pending = plan["pending"]

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(
            _Items(self.stage, self.pending),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_as_list,
        )


class StageModule(LightningModule):
    """``predict_step`` = the stage's ``process`` on one batch of items."""

    def __init__(self, stage: Stage) -> None:
        super().__init__()
        self.stage = stage

    def on_predict_start(self) -> None:
        # Randomly initialised models (tests, benchmarks) are built lazily on first use: seed
        # torch so every run and rank builds the same weights. Item randomness never uses torch's
        # global generator.
        torch.manual_seed(self.stage.seed)
        self.stage.place(self.device)

    def predict_step(self, batch: list[Item], batch_idx: int) -> list[Output]:
        return self.stage.process(batch, self.device)


class ManifestWriter(BasePredictionWriter):
    """Writes each output's files atomically, then appends its manifest record.

    Args:
        out: Output folder.
        seed: Run seed (recorded with each item).
    """

    def __init__(self, out: Path, seed: int) -> None:
        super().__init__(write_interval="batch")
        self.out = Path(out)
        self.seed = seed
        self.stage = ""
        self.shard: Path | None = None
        self.written = 0
        self._crash = os.environ.get(CRASH_ENV, "")

    def start(self, stage: str) -> None:
        """Switch to ``stage``: a fresh shard file for this process."""
        self.stage, self.shard, self.written = stage, shard_path(self.out, stage), 0

    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for output in prediction:
            self.write(output)

    def write(self, output: Output) -> None:
        """Persist one item: files first, record last."""
        files = {}
        for key, (rel, array) in sorted(output.get("arrays", {}).items()):
            data = encode_png(array)
            atomic_write(self.out / rel, data)
            files[key] = {"path": rel, "sha256": sha256_bytes(data)}
        self.written += 1
        if self._crash == f"{self.stage}:{self.written}":
            os.kill(os.getpid(), signal.SIGKILL)
        index = int(output["index"])
        record = {
            "stage": self.stage,
            "index": index,
            "seed": [self.seed, STAGE_IDS[self.stage], index],
            "status": output["status"],
            "params": output.get("params", {}),
            "files": files,
        }
        assert self.shard is not None, "ManifestWriter.start() was not called"
        append_record(self.shard, record)
