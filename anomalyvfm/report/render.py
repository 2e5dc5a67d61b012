"""The comparison report's markdown tables, warnings and bar charts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anomalyvfm.metric_names import HEADERS
from anomalyvfm.report.runs import Run, datasets_of, metrics_of, protocol_differences


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
