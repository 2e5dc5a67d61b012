"""Wall-clock phase timers that are correct on asynchronous devices."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def synchronize(device: torch.device) -> None:
    """Waits for all queued work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    """Accumulates seconds per named phase, synchronising the device around each one.

    The synchronisation makes each phase's time its own (CUDA kernels run asynchronously, so an
    unsynchronised timer would charge a phase for the work queued before it), at the cost of
    draining the queue between phases: use it for breakdowns, not for throughput.

    Args:
        device: the device whose queue is drained around each phase.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Times the enclosed block under ``name``."""
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start
