"""The measured loops: a training step split into phases, inference, data loading, FLOPs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from anomalyvfm.batch import Batch
from anomalyvfm.bench.syncs import HostSyncCounter, optimizer_host_tensors
from anomalyvfm.bench.timing import PhaseTimer, synchronize
from anomalyvfm.tasks.anomaly_detection import AnomalyVFM

PHASES = ("data", "backbone_forward", "decoder_forward", "loss", "backward", "optimizer")


class _NoTimer:
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        yield


class TrainStepper:
    """One micro-batch of training exactly as the Lightning fit loop runs it.

    The trainer's precision plugin supplies the autocast context (and the gradient scaler for
    fp16); the loss is divided by the accumulation count, and the optimizer (the task's own
    ``configure_optimizers``) steps every ``accumulate_grad_batches`` micro-batches. The model
    call is split into backbone, decoder plus image head, and loss, the same calls
    ``AnomalyVFMModel.forward`` makes, so each part can be timed (and each is compiled on its
    own when the task compiles).

    Args:
        task: the Lightning task (already on its device).
        trainer: the trainer whose precision and accumulation are used.
    """

    def __init__(self, task: AnomalyVFM, trainer: pl.Trainer) -> None:
        self.task = task
        self.plugin = trainer.precision_plugin
        self.scaler = getattr(self.plugin, "scaler", None)
        self.accumulate = int(trainer.accumulate_grad_batches)
        task.trainer = trainer
        self.optimizer = cast(dict, task.configure_optimizers())["optimizer"]
        self.micro_batches = 0

    def step(self, batch: Batch, timer: PhaseTimer | _NoTimer | None = None) -> Tensor:
        """Runs one micro-batch; returns the (detached) loss."""
        t = timer or _NoTimer()
        model, criterion = self.task.model, self.task.criterion
        with t.phase("backbone_forward"), self.plugin.forward_context():
            feats = model.backbone(batch["image"])
        with t.phase("decoder_forward"), self.plugin.forward_context():
            dec = model.decoder(feats.patch_features)
            image_logits = model.image_head(feats.summary).squeeze(1)
        with t.phase("loss"), self.plugin.forward_context():
            losses = criterion(
                dec.anomaly_logits,
                dec.confidence_logits,
                image_logits,
                batch["mask"],
                batch["label"],
            )
            loss = losses.loss / self.accumulate
        with t.phase("backward"):
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        self.micro_batches += 1
        if self.micro_batches % self.accumulate == 0:
            with t.phase("optimizer"):
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        return losses.loss.detach()


def staged_batches(loader: DataLoader, count: int, device: torch.device) -> list[Batch]:
    """The first ``count`` batches of ``loader``, already on ``device``."""
    it = iter(loader)
    return [move_data_to_device(next(it), device) for _ in range(count)]


def forward_backward_flops(task: AnomalyVFM, batch: Batch, plugin: Any) -> float:
    """FLOPs of one training micro-batch: forward, loss and backward (no optimizer step)."""
    counter = FlopCounterMode(display=False)
    with torch.compiler.set_stance("force_eager"), counter:
        with plugin.forward_context():
            loss = task.losses(batch).loss
        loss.backward()
    task.model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def inference_flops(task: AnomalyVFM, images: Tensor, plugin: Any) -> float:
    """FLOPs of ``predict`` (forward, sigmoid, mean filter, resize) on ``images``."""
    counter = FlopCounterMode(display=False)
    eager = torch.compiler.set_stance("force_eager")
    with eager, counter, torch.inference_mode(), plugin.forward_context():
        task.model.predict(images)
    return float(counter.get_total_flops())


def timed_training(
    stepper: TrainStepper, batches: Sequence[Batch], steps: int, warmup: int
) -> dict[str, Any]:
    """Images/s of ``steps`` micro-batches after ``warmup`` (cycling through ``batches``).

    Unsynchronised inside the loop (the device runs ahead, as in a real fit). Host syncs are
    counted afterwards over one optimizer step's micro-batches, outside the timed loop: the
    counting mode would make compiled code recompile (its guards include the active modes), so
    that pass runs the same Python eagerly.
    """
    device = batches[0]["image"].device
    for i in range(warmup):
        stepper.step(batches[i % len(batches)])
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        stepper.step(batches[(warmup + i) % len(batches)])
    synchronize(device)
    seconds = time.perf_counter() - start
    images = steps * batches[0]["image"].shape[0]
    counted = stepper.accumulate
    # Host-resident optimizer step counters exist after the warm-up's first optimizer step.
    host = optimizer_host_tensors(stepper.optimizer)
    with torch.compiler.set_stance("force_eager"), HostSyncCounter(host) as syncs:
        for i in range(counted):
            stepper.step(batches[i % len(batches)])
    return {
        "images_per_s": images / seconds,
        "syncs_per_step": syncs.total / counted,
        "sync_calls": dict(syncs.calls),
    }


def phase_breakdown(
    stepper: TrainStepper, batches: Sequence[Batch], steps: int
) -> dict[str, float]:
    """Milliseconds per micro-batch in each phase (device synchronised between phases)."""
    timer = PhaseTimer(batches[0]["image"].device)
    for i in range(steps):
        stepper.step(batches[i % len(batches)], timer)
    return {name: 1000 * timer.seconds.get(name, 0.0) / steps for name in PHASES[1:]}


def timed_inference(task: AnomalyVFM, images: Tensor, plugin: Any, steps: int) -> float:
    """Images/s of ``predict`` on ``images``, after two warm-up batches."""
    device = images.device
    with torch.inference_mode(), plugin.forward_context():
        for _ in range(2):
            task.model.predict(images)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            task.model.predict(images)
        synchronize(device)
    return steps * images.shape[0] / (time.perf_counter() - start)


def loader_throughput(loader: DataLoader, batches: int) -> float:
    """Images/s the DataLoader alone delivers (after its first batch: worker start-up)."""
    it = iter(loader)
    next(it)  # waits for the workers to start
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        count += int(next(it)["image"].shape[0])
    return count / (time.perf_counter() - start)


def fed_training(
    stepper: TrainStepper, loader: DataLoader, steps: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Training fed by the real DataLoader: images/s and the share of time spent waiting for it.

    The wait is the time the loop blocks in ``next(loader)``; when the device's queue runs dry
    during that wait the accelerator idles, so the share bounds the data-caused idle fraction.
    """
    it = iter(loader)
    for _ in range(warmup):
        stepper.step(move_data_to_device(next(it), device))
    synchronize(device)
    wait = 0.0
    start = time.perf_counter()
    images = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = next(it)
        wait += time.perf_counter() - t0
        images += int(batch["image"].shape[0])
        stepper.step(move_data_to_device(batch, device))
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"images_per_s": images / seconds, "data_wait_fraction": wait / seconds}


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak allocated accelerator memory since the last reset, in GiB (None on CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
