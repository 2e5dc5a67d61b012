"""Start-up cost of the command line: ``anomalyvfm --help`` against importing Lightning.

Most of the CLI's start-up is importing torch and Lightning, which no change here can avoid; the
project's own share is the ratio printed last (target: at most 1.5). Each command runs in a
fresh process, alternating, ``--repeats`` times; the medians are compared (ratios from one run,
since a shared machine's absolute timings drift).

    python experiments/benchmarks/startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "import lightning.pytorch": [sys.executable, "-c", "import lightning.pytorch"],
    "anomalyvfm --help": [sys.executable, "-m", "anomalyvfm", "--help"],
    "wandb imported by the CLI": [
        sys.executable,
        "-c",
        "import sys, anomalyvfm.cli; print('wandb' in sys.modules)",
    ],
}


def wall(cmd: list[str]) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, out.stdout.strip()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.chdir(Path(__file__).resolve().parents[2])
    wall(COMMANDS["anomalyvfm --help"])  # warm the file cache once
    times: dict[str, list[float]] = {"import lightning.pytorch": [], "anomalyvfm --help": []}
    for _ in range(args.repeats):
        for name in times:
            times[name].append(wall(COMMANDS[name])[0])
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:26s} median {medians[name]:.2f} s  ({', '.join(f'{x:.2f}' for x in t)})")
    ratio = medians["anomalyvfm --help"] / medians["import lightning.pytorch"]
    loaded = wall(COMMANDS["wandb imported by the CLI"])[1]
    print(f"wandb imported by `import anomalyvfm.cli`: {loaded}")
    print(f"ratio anomalyvfm --help / import lightning.pytorch: {ratio:.2f} (target <= 1.5)")
    return {**medians, "ratio": ratio}


if __name__ == "__main__":
    main()
