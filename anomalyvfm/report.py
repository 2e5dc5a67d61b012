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
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from anomalyvfm.metric_names import HEADERS

# Canonical metric order (the BENCHMARKS.md columns, then opt-in ones).
METRICS = [*HEADERS, "pixel_AUPIMO"]


@dataclass
class Run:
    """One finished evaluation.

    Attributes:
        label: column name in the tables and legend entry in the charts.
        path: the summary JSON.
        backbone: the backbone's name, None when neither the JSON nor a config.yaml names it.
        protocol: evaluation protocol recorded with the results (empty for old files).
        datasets: ``{dataset: {metric: mean over its categories}}`` (undefined values absent).
        mean: ``{metric: mean over datasets}`` as the run recorded it.
    """

    label: str
    path: Path
    backbone: str | None
    protocol: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, dict[str, float]] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)


def _is_summary(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("datasets"), dict)


def find_results(path: Path) -> Path:
    """The summary JSON of ``path``: the file itself, or the only one inside a run folder.

    Raises:
        FileNotFoundError: ``path`` does not exist or the folder holds no summary JSON.
        ValueError: the folder holds several (pass the file instead).
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such results file or run folder")
    if path.is_file():
        return path
    found = [p for p in sorted(path.rglob("*.json")) if _is_summary(_read_json(p, quiet=True))]
    if not found:
        raise FileNotFoundError(
            f"{path}: no results JSON inside (expected a file written by ResultsWriter, with "
            "'protocol', 'datasets' and 'mean' keys, e.g. <run>/results.json)"
        )
    if len(found) > 1:
        names = ", ".join(str(p) for p in found)
        raise ValueError(f"{path}: several results files ({names}); pass one of them instead")
    return found[0]


def _read_json(path: Path, quiet: bool = False) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        if quiet:
            return None
        raise ValueError(f"{path}: not a readable JSON file ({err})") from err


def config_backbone(config: Path) -> str | None:
    """``model.init_args.backbone.name`` of a saved CLI config, None when absent."""
    tree = yaml.safe_load(config.read_text()) or {}
    model = tree.get("model") or {}
    backbone = (model.get("init_args") or model).get("backbone") or {}
    name = backbone.get("name") if isinstance(backbone, dict) else None
    return str(name) if name else None


def find_backbone(results: Path, payload: dict[str, Any], run_dir: Path) -> str | None:
    """The run's backbone: ``extra`` field, else config.yaml beside the results or in the run."""
    if isinstance(payload.get("backbone"), str):
        return str(payload["backbone"])
    configs = [results.parent / "config.yaml"]
    configs += sorted(run_dir.rglob("config.yaml")) if run_dir.is_dir() else []
    for config in configs:
        if config.is_file() and (name := config_backbone(config)):
            return name
    return None


def load_run(path: Path, label: str | None = None) -> Run:
    """Reads one run (a summary JSON or a run folder); ``label`` defaults to its backbone."""
    results = find_results(path)
    payload = _read_json(results)
    if not _is_summary(payload):
        raise ValueError(f"{results}: not a ResultsWriter summary (no 'datasets' mapping)")
    protocol = dict(payload.get("protocol") or {})
    if not protocol:  # older files kept only these two fields
        old = {"resolution": "eval_resolution", "image_size": "image_size"}
        protocol = {k: payload[v] for k, v in old.items() if v in payload}
    datasets = {
        name: _defined(entry.get("mean") or {}) for name, entry in payload["datasets"].items()
    }
    backbone = find_backbone(results, payload, path if path.is_dir() else results.parent)
    return Run(
        label=label or backbone or results.parent.name,
        path=results,
        backbone=backbone,
        protocol=protocol,
        datasets=datasets,
        mean=_defined(payload.get("mean") or {}),
    )


def _defined(values: dict[str, Any]) -> dict[str, float]:
    """Numeric values only: null (undefined, NaN on write) is left out."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not math.isnan(float(v))
    }


def load_runs(paths: Sequence[Path], labels: dict[str, Path] | None = None) -> list[Run]:
    """Reads every run; names given in ``labels`` (``{name: path}``) win, then unique defaults.

    Runs sharing a backbone (ablations, seeds) are told apart by their folder names.
    """
    by_path = {p.resolve(): name for name, p in (labels or {}).items()}
    unknown = set(by_path) - {p.resolve() for p in paths}
    if unknown:
        raise ValueError(f"--label names paths that are not inputs: {sorted(map(str, unknown))}")
    runs = [load_run(p, by_path.get(p.resolve())) for p in paths]
    given = {id(r) for r, p in zip(runs, paths) if p.resolve() in by_path}
    counts = Counter(r.label for r in runs)
    for run, path in zip(runs, paths):
        if counts[run.label] > 1 and id(run) not in given:
            folder = path.name if path.is_dir() else run.path.parent.name
            run.label = f"{run.label} ({folder})"
    seen: Counter[str] = Counter()
    for run in runs:  # still equal (same folder names): number them
        seen[run.label] += 1
        if seen[run.label] > 1:
            run.label = f"{run.label} #{seen[run.label]}"
    return runs


def metrics_of(runs: Sequence[Run]) -> list[str]:
    """Metrics any run recorded, in the canonical order (unknown names last)."""
    seen = {m for r in runs for values in [r.mean, *r.datasets.values()] for m in values}
    return [m for m in METRICS if m in seen] + sorted(seen - set(METRICS))


def datasets_of(runs: Sequence[Run]) -> list[str]:
    """Every evaluated dataset, in first-seen order."""
    return list(dict.fromkeys(d for r in runs for d in r.datasets))


def protocol_differences(runs: Sequence[Run]) -> dict[str, list[Any]]:
    """``{field: [value per run]}`` for every protocol field on which the runs disagree.

    A field one run did not record counts as a difference: unknown is not the same.
    """
    keys = list(dict.fromkeys(k for r in runs for k in r.protocol))
    values = {k: [r.protocol.get(k) for r in runs] for k in keys}
    return {k: v for k, v in values.items() if any(x != v[0] for x in v)}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def metric_table(runs: Sequence[Run], metric: str) -> str:
    """``| dataset | run ... |`` in %, one row per dataset, then a bold row of each run's mean."""
    head = ["dataset", *(_cell(r.label) for r in runs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in datasets_of(runs):
        row = [_cell(name), *(_pct(r.datasets.get(name, {}).get(metric)) for r in runs)]
        lines.append("| " + " | ".join(row) + " |")
    means = [f"**{_pct(r.mean.get(metric))}**" for r in runs]
    lines.append("| " + " | ".join(["**mean**", *means]) + " |")
    return "\n".join(lines)


def warnings_of(runs: Sequence[Run]) -> list[str]:
    """Markdown paragraphs saying why the runs' numbers may not be comparable."""
    notes = []
    diffs = protocol_differences(runs)
    if diffs:
        lines = [
            "> **WARNING: these runs were evaluated under DIFFERENT PROTOCOLS; their numbers are "
            "NOT directly comparable.** Differing fields:",
            ">",
        ]
        for key, values in diffs.items():
            per_run = "; ".join(f"{r.label}: {v}" for r, v in zip(runs, values))
            lines.append(f"> - `{key}`: {per_run}")
        notes.append("\n".join(lines))
    sets = {frozenset(r.datasets) for r in runs}
    if len(sets) > 1:
        notes.append(
            "> **Note:** the runs evaluated different datasets, so each mean row is over a "
            "different set (a run's mean covers its own datasets only)."
        )
    return notes


def protocol_table(runs: Sequence[Run]) -> str:
    """One row per run with every protocol field it recorded (``?`` where it did not)."""
    keys = list(dict.fromkeys(k for r in runs for k in r.protocol))
    head = ["run", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        row = [_cell(run.label), *(str(run.protocol.get(k, "?")) for k in keys)]
        lines.append("| " + " | ".join(row) + " |")
    return "Evaluation protocol of each run:\n\n" + "\n".join(lines)


def render_markdown(runs: Sequence[Run], charts: dict[str, Path] | None = None) -> str:
    """The whole report; ``charts`` maps metrics to PNG paths relative to the report."""
    parts = ["# Run comparison", ""]
    parts += ["| run | backbone | results |", "|---|---|---|"]
    parts += [f"| {_cell(r.label)} | {r.backbone or '-'} | `{r.path}` |" for r in runs]
    parts.append("")
    parts += [note + "\n" for note in warnings_of(runs)]
    parts += [protocol_table(runs), ""]
    for metric in metrics_of(runs):
        parts += [f"## {HEADERS.get(metric, metric)} (`{metric}`)", "", metric_table(runs, metric)]
        if charts and metric in charts:
            parts += ["", f"![{metric}]({charts[metric].as_posix()})"]
        parts.append("")
    return "\n".join(parts)


def bar_chart(runs: Sequence[Run], metric: str) -> Any:
    """A matplotlib Figure: per dataset (and the mean) one bar per run, in %.

    Undefined values get no bar, so the figure has one bar per defined table cell.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    from matplotlib.figure import Figure

    groups = [*datasets_of(runs), "mean"]
    fig = Figure(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(runs)) ** 0.5), 4.0))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(runs))
    for i, run in enumerate(runs):
        values = [*(run.datasets.get(d, {}).get(metric) for d in groups[:-1]), run.mean.get(metric)]
        xs = [g + (i - (len(runs) - 1) / 2) * width for g, v in enumerate(values) if v is not None]
        ax.bar(xs, [100 * v for v in values if v is not None], width, label=run.label)
    ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 6 else 0)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"{HEADERS.get(metric, metric)} (%)")
    ax.set_title(metric)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def write_report(runs: Sequence[Run], out: Path) -> Path:
    """Writes ``report.md`` and one ``<metric>.png`` per metric into ``out``; returns the report."""
    out.mkdir(parents=True, exist_ok=True)
    charts = {}
    for metric in metrics_of(runs):
        bar_chart(runs, metric).savefig(out / f"{metric}.png", dpi=100, bbox_inches="tight")
        charts[metric] = Path(f"{metric}.png")
    report = out / "report.md"
    report.write_text(render_markdown(runs, charts))
    return report


def _label(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--label expects NAME=PATH, got {text!r}")
    return name, Path(path)


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


if __name__ == "__main__":
    sys.exit(main())
