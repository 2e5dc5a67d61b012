"""Counting host-device synchronisations (``.item()``, ``bool(tensor)``, ...) in a code path."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# Tensor methods and functions that must wait for the device: they return host values or
# shapes that depend on tensor contents.
SYNCING: frozenset[Callable[..., Any]] = frozenset(
    {
        torch.Tensor.item,
        torch.Tensor.tolist,
        torch.Tensor.__bool__,
        torch.Tensor.__float__,
        torch.Tensor.__int__,
        torch.Tensor.numpy,
        torch.Tensor.cpu,
        torch.Tensor.nonzero,
        torch.nonzero,
        torch.Tensor.unique,
        torch.unique,
        torch.masked_select,
        torch.Tensor.masked_select,
    }
)


class HostSyncCounter(TorchFunctionMode):
    """Counts calls that force the host to wait for the device, by name.

    Works on any device: the count is of calls, so a CPU run shows what a GPU run would
    synchronise on.

    Args:
        host_tensors: tensors that live in host memory even in a GPU run, whose reads are free
            (e.g. the optimizer's step counters, see :func:`optimizer_host_tensors`).

    Example:
        >>> with HostSyncCounter() as syncs:
        ...     loss = model(x).sum(); loss.backward()
        >>> syncs.total
        0
    """

    def __init__(self, host_tensors: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self._host = {id(t) for t in host_tensors}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func in SYNCING and not (args and id(args[0]) in self._host):
            self.calls[getattr(func, "__name__", str(func))] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        """Number of syncing calls seen."""
        return sum(self.calls.values())


def optimizer_host_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's per-parameter ``step`` counters that are kept on the host.

    Adam(W) keeps them as CPU tensors unless ``capturable``/``fused``, and reads them with
    ``.item()``: a host read, no device synchronisation.
    """
    return [
        state["step"]
        for state in optimizer.state.values()
        if isinstance(state.get("step"), torch.Tensor) and state["step"].device.type == "cpu"
    ]
