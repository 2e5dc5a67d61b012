"""Compare finished runs without W&B: markdown tables and bar charts from their result files.

    python -m anomalyvfm.report runs/radio runs/dinov2/results.json --out report/
    anomalyvfm-report runs/ablations/* --label DoRA=runs/radio --out report/

Each input is a summary JSON written by :class:`~anomalyvfm.callbacks.ResultsWriter` or a run
folder holding exactly one. A run is named by its backbone (the ``backbone`` field of the JSON's
``extra`` fields, else ``model.init_args.backbone.name`` of the ``config.yaml`` the CLI saved next
to it or in the run folder), by its folder when that is ambiguous, or by ``--label NAME=path``.
The report (``report.md``) has one table per metric (rows = datasets, columns = runs, then each
run's overall mean) and one grouped bar chart per metric (``<metric>.png``). Runs evaluated under
different protocols (resolution, mean filter, metric mode, ...) get a loud warning in the report
and on stderr: their numbers are not comparable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from anomalyvfm.metric_names import HEADERS
from anomalyvfm.report.render import (
    bar_chart,
    metric_table,
    protocol_table,
    render_markdown,
    warnings_of,
    write_report,
)
from anomalyvfm.report.runs import (
    METRICS,
    Run,
    datasets_of,
    find_results,
    load_run,
    load_runs,
    metrics_of,
    protocol_differences,
)

__all__ = [
    "HEADERS",
    "METRICS",
    "Run",
    "bar_chart",
    "datasets_of",
    "find_results",
    "load_run",
    "load_runs",
    "main",
    "metric_table",
    "metrics_of",
    "protocol_differences",
    "protocol_table",
    "render_markdown",
    "warnings_of",
    "write_report",
]


def _label(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--label expects NAME=PATH, got {text!r}")
    return name, Path(path)


def console() -> int:
    """The ``anomalyvfm-report`` command: :func:`main` with one-line user errors."""
    from anomalyvfm.errors import run_command

    return run_command("anomalyvfm-report", main)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m anomalyvfm.report`` and ``anomalyvfm-report``."""
    parser = argparse.ArgumentParser(prog="anomalyvfm-report", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders or results JSON files")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder")
    parser.add_argument(
        "--label", type=_label, action="append", default=[], help="NAME=PATH: name of a run"
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail (exit 2) when the protocols differ"
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.runs, dict(args.label))
    diffs = protocol_differences(runs)
    for key, values in diffs.items():
        print(f"WARNING: runs differ in protocol field {key!r}: {values}", file=sys.stderr)
    if diffs and args.strict:
        return 2
    print(f"report written to {write_report(runs, args.out)}")
    return 0
