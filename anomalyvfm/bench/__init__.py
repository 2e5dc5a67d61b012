"""Speed benchmark of training and inference: ``python -m anomalyvfm.bench --config ...``.

Builds the model and data from the same YAML configs as ``anomalyvfm fit`` and measures, for
the reference's fp32 eager recipe and for the config's own settings in the same run: training
and inference images/s, achieved TFLOP/s (PyTorch's flop counter), peak memory, a step-time
breakdown (data, backbone forward, decoder, loss, backward, optimizer), host-device syncs per
step, the share of time the training loop waits for its DataLoader, and the cost of an
evaluation run relative to a training run. See ``experiments/benchmarks/RESULTS.md``.
"""

from anomalyvfm.bench.syncs import HostSyncCounter
from anomalyvfm.bench.timing import PhaseTimer

__all__ = ["HostSyncCounter", "PhaseTimer"]
