"""Writes evaluation results as a JSON file and prints them as a table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only

from anomalyvfm.metrics.evaluator import METRIC_NAMES, mean_over


class ResultsWriter(pl.Callback):
    """After ``test``: per-category, per-dataset and mean metrics to JSON, and a printed table.

    Args:
        path: JSON file to write (folders are created).
        extra: extra fields recorded in the JSON (e.g. which backbone the demo used).
    """

    def __init__(self, path: str = "results.json", extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.extra = dict(extra or {})

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        results: dict[str, dict[str, dict[str, float]]] = getattr(pl_module, "results", {})
        datamodule = getattr(trainer, "datamodule", None)
        payload = {
            **self.extra,
            "eval_resolution": getattr(datamodule, "eval_mask_size", None)
            or getattr(datamodule, "image_size", None),
            "image_size": getattr(datamodule, "image_size", None),
            "datasets": {
                name: {"categories": res, "mean": mean_over(res)} for name, res in results.items()
            },
            "mean": mean_over({n: mean_over(r) for n, r in results.items()}),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(_finite(payload), indent=2) + "\n")
        print(format_table(results))
        print(f"results written to {self.path}")


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table: one row per category, then the dataset mean, metrics in %."""
    head = "| dataset | category | " + " | ".join(METRIC_NAMES) + " |"
    lines = [head, "|" + "---|" * (len(METRIC_NAMES) + 2)]
    for name, res in results.items():
        rows = [*res.items(), ("**mean**", mean_over(res))]
        for category, values in rows:
            cells = [_pct(values.get(m, math.nan)) for m in METRIC_NAMES]
            lines.append(f"| {name} | {category} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def _finite(tree: Any) -> Any:
    """JSON has no NaN: undefined metrics become null."""
    if isinstance(tree, dict):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, float) and math.isnan(tree):
        return None
    return tree
