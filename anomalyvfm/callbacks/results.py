"""Evaluation results as files and tables: CSV, markdown, summary JSON and W&B tables.

After ``test`` the task holds ``results`` (``{dataset: {category: {metric: value}}}``, NaN where a
metric is undefined), the per-dataset and overall means, the image counts and the evaluation
protocol. :class:`ResultsWriter` turns them into:

* ``<stem>_categories.csv``: one row per category with every metric (fractions, empty when
  undefined), ``n_images`` and one column per protocol field;
* ``<stem>_datasets.md``: the published tables' shape, see docs/benchmarks.md (one row per
  dataset, a bold mean row, values in %) under a line stating the protocol;
* ``<stem>_categories.md``: the same columns per category;
* the summary JSON at ``path`` (protocol, per-category values and counts, dataset means, the
  overall mean, per pixel-level dataset the number of defective images with an empty mask
  (``empty_masks``), what made them under ``model``: the checkpoint, its SHA-256, the backbone
  and the decision thresholds the checkpoint carries, and the ``extra`` fields);
* with a W&B logger: two ``wandb.Table``s, the headline means in the run summary
  (``test/mean/<metric>``) and the protocol in the run config.

When a ``test`` run stops on an error, the datasets evaluated before it still get their files:
the summary JSON then has ``incomplete`` (the error and the datasets left without results), and
the error goes on to end the run.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from anomalyvfm.checkpoint_options import file_sha256
from anomalyvfm.deploy.calibration import DEFAULT_THRESHOLD
from anomalyvfm.metric_names import HEADERS
from anomalyvfm.results import EvalReport, report_of
from anomalyvfm.tasks.anomaly_detection import AnomalyVFM

__all__ = ["EvalReport", "ResultsWriter"]


class ResultsWriter(pl.Callback):
    """After ``test``: result files (CSV, markdown, JSON), a printed table and W&B tables.

    Args:
        path: summary JSON file to write (folders are created).
        extra: extra fields recorded in the JSON (e.g. which backbone the demo used).
        output_dir: folder of the CSV and markdown files; the folder of ``path`` when None.
            Their names start with the stem of ``path`` (``results_categories.csv``, ...).
        display_names: names of datasets in the markdown tables (e.g. ``{"mvtec_ad": "MVTec
            AD"}``); others appear under their dataset name.
        log_wandb: log tables and summary values to every W&B logger of the trainer.
    """

    def __init__(
        self,
        path: str = "results.json",
        extra: dict[str, Any] | None = None,
        output_dir: str | None = None,
        display_names: dict[str, str] | None = None,
        log_wandb: bool = True,
    ) -> None:
        self.path = Path(path)
        self.extra = dict(extra or {})
        self.output_dir = self.path.parent if output_dir is None else Path(output_dir)
        self.display_names = dict(display_names or {})
        self.log_wandb = log_wandb
        self.written: dict[str, Path] = {}
        # Whether a test run got past its setup: only then can it have results of its own.
        self._testing = False

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._testing = True

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._testing = False
        self._write_and_show(trainer, pl_module)

    @rank_zero_only
    def _write_and_show(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        report = report_of(pl_module)
        if report is None:
            return
        self.written = self.write(report, model_record(trainer, pl_module))
        print(dataset_table(report, self.display_names))
        print("results written to " + ", ".join(str(p) for p in self.written.values()))
        if self.log_wandb:
            log_to_wandb(trainer, report)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """A ``test`` stopped by an error: writes the files of the datasets already evaluated.

        Loaders run in order, so every dataset before the failing one is complete. Nothing is
        written when none is, when the run failed before it started testing (its setup, e.g.
        the check of the files), or under several processes (their metric states cannot be
        gathered once one process has failed). The error itself is left to end the run.
        """
        testing, self._testing = self._testing, False
        if trainer.state.fn != TrainerFn.TESTING or not testing:
            return
        if not isinstance(pl_module, AnomalyVFM):
            return
        if trainer.world_size > 1:
            rank_zero_warn("the test run failed; partial results are not written under DDP")
            return
        try:
            missing = pl_module.compute_finished()
            report = report_of(pl_module)
            if report is None or not report.results:
                return
            report.incomplete = {
                "error": f"{type(exception).__name__}: {exception}",
                "datasets_without_results": missing,
            }
            self.written = self.write(report, model_record(trainer, pl_module))
        except Exception as err:  # the run's own error matters more than this one
            rank_zero_warn(f"could not write the results of the finished datasets: {err}")
            return
        print(dataset_table(report, self.display_names))
        lacking = f"; no results for {', '.join(missing)}" if missing else ""
        print(
            f"the run failed; results of {', '.join(report.results)} written to "
            + ", ".join(str(p) for p in self.written.values())
            + lacking
        )

    def write(self, report: EvalReport, model: dict[str, Any] | None = None) -> dict[str, Path]:
        """Writes every file; returns their paths by kind. ``model`` (:func:`model_record`) goes
        into the summary JSON as ``model``."""
        stem = self.path.stem
        paths = {
            "categories_csv": self.output_dir / f"{stem}_categories.csv",
            "datasets_md": self.output_dir / f"{stem}_datasets.md",
            "categories_md": self.output_dir / f"{stem}_categories.md",
            "summary_json": self.path,
        }
        for path in paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        columns, rows = category_rows(report)
        with paths["categories_csv"].open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows([["" if _undefined(v) else v for v in row] for row in rows])
        head = protocol_line(report.protocol.as_dict()) + "\n\n"
        paths["datasets_md"].write_text(head + dataset_table(report, self.display_names) + "\n")
        paths["categories_md"].write_text(head + category_table(report, self.display_names) + "\n")
        payload = summary(report, self.extra)
        if model is not None:
            payload["model"] = model
        payload["files"] = {k: str(p) for k, p in paths.items() if k != "summary_json"}
        paths["summary_json"].write_text(json.dumps(_finite(payload), indent=2) + "\n")
        return paths


def model_record(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """What made a test run's results: the checkpoint given with ``--ckpt_path`` (None for the
    model as built) and its SHA-256, the backbone, and the decision thresholds the checkpoint
    carries (a calibrated one's; else the uncalibrated 0.5 that ``Detector`` uses)."""
    ckpt = trainer.ckpt_path
    found = bool(ckpt) and Path(str(ckpt)).is_file()
    calibration = getattr(pl_module, "calibration", None) or {}
    return {
        "checkpoint": str(ckpt) if ckpt else None,
        "checkpoint_sha256": file_sha256(str(ckpt)) if found else None,
        "backbone": pl_module.backbone_config.name if isinstance(pl_module, AnomalyVFM) else None,
        "calibrated": bool(calibration),
        "image_threshold": calibration.get("image_threshold", DEFAULT_THRESHOLD),
        "pixel_threshold": calibration.get("pixel_threshold", DEFAULT_THRESHOLD),
        "threshold_rule": calibration.get("rule"),
    }


def protocol_line(protocol: dict[str, Any]) -> str:
    """One sentence stating the evaluation protocol (resolution, filter, resize, metric mode)."""
    res, size = protocol.get("resolution", protocol.get("mask_size")), protocol.get("image_size")
    if res == "original":
        where = "each mask's original size"
    elif res in (None, "input"):
        where = f"the input size ({size}x{size})" if size else "an unrecorded resolution"
    else:
        where = f"{res}x{res}"
    k = protocol.get("mean_filter_size")
    parts = [
        f"pixel metrics at {where}",
        f"{k}x{k} mean filter" if k and int(k) > 1 else "no mean filter",
        f"{protocol.get('resize', 'squash')} resize",
        f"{protocol.get('metric_mode', 'exact')} metrics",
    ]
    if size:
        parts.append(f"model input {size}x{size}")
    if protocol.get("fpr_limit") is not None:
        parts.append(f"AUPRO up to FPR {protocol['fpr_limit']:g}")
    return "Protocol: " + ", ".join(parts) + ". Values in %; means skip undefined values (-)."


def table_metrics(report: EvalReport) -> list[str]:
    """The columns of the published tables (docs/benchmarks.md), plus AUPIMO when computed."""
    return [*HEADERS, *(["pixel_AUPIMO"] if "pixel_AUPIMO" in report.metrics else [])]


def _header(metric: str, protocol: dict[str, Any]) -> str:
    if metric == "pixel_AUPRO" and protocol.get("fpr_limit") is not None:
        return f"AUPRO@{protocol['fpr_limit']:g}"
    return HEADERS.get(metric, metric.removeprefix("pixel_"))


def _markdown(
    first: list[str],
    rows: list[tuple[list[str], dict[str, float]]],
    metrics: list[str],
    proto: dict[str, Any],
) -> str:
    head = [*first, *(_header(m, proto) for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cells, values in rows:
        lines.append("| " + " | ".join([*cells, *(_pct(values.get(m)) for m in metrics)]) + " |")
    return "\n".join(lines)


def dataset_table(report: EvalReport, display_names: dict[str, str] | None = None) -> str:
    """The published tables' shape (docs/benchmarks.md): ``| dataset (#categories) | I-AUROC |
    ... |`` and a bold mean row."""
    names = display_names or {}
    metrics = table_metrics(report)
    rows = [
        ([f"{names.get(d, d)} ({len(res)})"], report.dataset_means[d])
        for d, res in report.results.items()
    ]
    table = _markdown(["dataset (#categories)"], rows, metrics, report.protocol.as_dict())
    mean = [f"**{_pct(report.overall_mean.get(m))}**" for m in metrics]
    label = f"**mean of {len(report.results)}**"
    return table + "\n| " + " | ".join([label, *mean]) + " |"


def category_table(report: EvalReport, display_names: dict[str, str] | None = None) -> str:
    """One row per category (with its image count), then each dataset's mean in bold."""
    names = display_names or {}
    rows: list[tuple[list[str], dict[str, float]]] = []
    for d, res in report.results.items():
        counts = report.counts.get(d, {})
        for category, values in res.items():
            rows.append(([names.get(d, d), category, str(counts.get(category, "-"))], values))
        total = str(sum(counts.values()) or "-")
        rows.append(([names.get(d, d), "**mean**", total], report.dataset_means[d]))
    first = ["dataset", "category", "images"]
    return _markdown(first, rows, table_metrics(report), report.protocol.as_dict())


def category_rows(report: EvalReport) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the per-category CSV / W&B table (fractions; NaN where undefined)."""
    protocol = report.protocol.as_dict()
    metrics, proto = report.metrics, [_scalar(v) for v in protocol.values()]
    columns = ["dataset", "category", *metrics, "n_images", *protocol]
    rows = [
        [d, c, *(vals.get(m, math.nan) for m in metrics), report.counts.get(d, {}).get(c), *proto]
        for d, res in report.results.items()
        for c, vals in res.items()
    ]
    return columns, rows


def dataset_rows(report: EvalReport) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the per-dataset W&B table, the overall mean last (``mean``)."""
    metrics = report.metrics
    rows: list[list[Any]] = [
        [d, len(res), *(report.dataset_means[d].get(m, math.nan) for m in metrics)]
        for d, res in report.results.items()
    ]
    rows.append(
        ["mean", len(report.results), *(report.overall_mean.get(m, math.nan) for m in metrics)]
    )
    return ["dataset", "n_categories", *metrics], rows


def summary(report: EvalReport, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary JSON's content (NaN kept; :func:`_finite` turns it into null)."""
    return {
        **(extra or {}),
        "protocol": report.protocol.as_dict(),
        "eval_resolution": report.protocol.resolution,
        "image_size": report.protocol.image_size,
        "datasets": {
            d: {
                "categories": res,
                "mean": report.dataset_means[d],
                "num_images": report.counts.get(d, {}),
                **({"empty_masks": report.empty_masks[d]} if d in report.empty_masks else {}),
            }
            for d, res in report.results.items()
        },
        "mean": report.overall_mean,
        "num_datasets": len(report.results),
        **({"incomplete": report.incomplete} if report.incomplete else {}),
    }


def log_to_wandb(trainer: pl.Trainer, report: EvalReport) -> None:
    """The two result tables to each W&B logger (the run summary and the protocol in the run
    config are :class:`~anomalyvfm.callbacks.WandbSummary`'s)."""
    loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    if not loggers or not report.results:
        return
    tables = {"test/results/categories": category_rows(report)}
    tables["test/results/datasets"] = dataset_rows(report)
    for logger in loggers:
        for key, (columns, rows) in tables.items():
            data = [[None if _undefined(v) else v for v in row] for row in rows]
            logger.log_table(key=key, columns=columns, data=data)


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _undefined(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _scalar(value: Any) -> Any:
    """Protocol values as CSV/table cells: scalars as they are, anything else as JSON text."""
    return (
        value if value is None or isinstance(value, (str, int, float, bool)) else json.dumps(value)
    )


def _finite(tree: Any) -> Any:
    """JSON has no NaN: undefined metrics become null."""
    if isinstance(tree, dict):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_finite(v) for v in tree]
    if isinstance(tree, float) and math.isnan(tree):
        return None
    return tree
