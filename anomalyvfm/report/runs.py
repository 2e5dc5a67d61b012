"""Finished runs for the comparison report: reading result files, naming runs, protocols."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from anomalyvfm.metric_names import HEADERS

# Canonical metric order (the columns of the tables in docs/benchmarks.md, then opt-in ones).
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
