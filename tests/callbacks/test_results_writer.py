"""ResultsWriter: exact table cells on known values, and the files of a real tiny ``test`` run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from anomalyvfm.callbacks.results import (
    EvalReport,
    ResultsWriter,
    category_rows,
    category_table,
    dataset_table,
    protocol_line,
    summary,
)
from tests.helpers import offline_wandb_logger, tiny_test

NAN = math.nan
PROTOCOL = {
    "resolution": 96,
    "image_size": 448,
    "resize": "squash",
    "mean_filter_size": 5,
    "metric_mode": "exact",
    "fpr_limit": 0.3,
}
SEVEN = {
    "image_AUROC": 0.9,
    "image_AP": 0.95,
    "image_F1max": 0.8,
    "pixel_AUROC": 0.97,
    "pixel_AP": 0.5,
    "pixel_F1max": 0.55,
    "pixel_AUPRO": 0.875,
}
# Two datasets: one with an undefined metric in one category, one without image labels.
RESULTS = {
    "mvtec_ad": {
        "bottle": dict(SEVEN),
        "tile": {**SEVEN, "image_AUROC": 0.7, "pixel_AP": NAN},
    },
    "kvasir": {"kvasir": {"pixel_AUROC": 0.8, "pixel_AP": 0.3, "pixel_F1max": 0.4}},
}
COUNTS = {"mvtec_ad": {"bottle": 6, "tile": 5}, "kvasir": {"kvasir": 9}}


def report() -> EvalReport:
    return EvalReport(RESULTS, counts=COUNTS, protocol=dict(PROTOCOL))


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_means_ignore_undefined_values() -> None:
    rep = report()
    assert rep.dataset_means["mvtec_ad"]["image_AUROC"] == pytest.approx(0.8)
    assert rep.dataset_means["mvtec_ad"]["pixel_AP"] == 0.5  # tile's NaN skipped
    assert "image_AUROC" not in rep.dataset_means["kvasir"]
    # Over datasets: image metrics come from MVTec alone, pixel metrics from both.
    assert rep.overall_mean["image_AUROC"] == pytest.approx(0.8)
    assert rep.overall_mean["pixel_AUROC"] == pytest.approx((0.97 + 0.8) / 2)
    assert "pixel_AUPIMO" not in rep.overall_mean


def test_dataset_table_has_the_benchmarks_shape() -> None:
    lines = dataset_table(report(), {"mvtec_ad": "MVTec AD"}).splitlines()
    assert cells(lines[0]) == [
        "dataset (#categories)",
        "I-AUROC",
        "I-F1max",
        "I-AP",
        "P-AUROC",
        "P-F1max",
        "P-AP",
        "AUPRO@0.3",
    ]
    assert cells(lines[2]) == [
        "MVTec AD (2)",
        "80.0",
        "80.0",
        "95.0",
        "97.0",
        "55.0",
        "50.0",
        "87.5",
    ]
    assert cells(lines[3]) == ["kvasir (1)", "-", "-", "-", "80.0", "40.0", "30.0", "-"]
    assert cells(lines[4]) == [
        "**mean of 2**",
        "**80.0**",
        "**80.0**",
        "**95.0**",
        "**88.5**",
        "**47.5**",
        "**40.0**",
        "**87.5**",
    ]
    assert len(lines) == 5


def test_task_means_are_used_when_given_and_aupimo_gets_a_column() -> None:
    results = {"d": {"c": {"pixel_AUROC": 0.5, "pixel_AUPIMO": 0.25}}}
    rep = EvalReport(results, {"d": {"pixel_AUROC": 0.6}}, {"pixel_AUROC": 0.7})
    lines = dataset_table(rep).splitlines()
    assert cells(lines[0])[-2:] == ["AUPRO", "AUPIMO"]  # no fpr_limit recorded
    assert cells(lines[2])[4] == "60.0" and cells(lines[3])[4] == "**70.0**"


def test_category_table_rows_counts_and_dataset_means() -> None:
    lines = category_table(report()).splitlines()
    assert cells(lines[0])[:4] == ["dataset", "category", "images", "I-AUROC"]
    assert cells(lines[2])[:4] == ["mvtec_ad", "bottle", "6", "90.0"]
    assert cells(lines[3])[:4] == ["mvtec_ad", "tile", "5", "70.0"]
    assert cells(lines[3])[8] == "-"  # tile's undefined P-AP
    assert cells(lines[4])[:4] == ["mvtec_ad", "**mean**", "11", "80.0"]
    assert cells(lines[5])[:4] == ["kvasir", "kvasir", "9", "-"]
    assert len(lines) == 7


@pytest.mark.parametrize(
    ("resolution", "expected"),
    [
        (96, "pixel metrics at 96x96"),
        ("original", "pixel metrics at each mask's original size"),
        ("input", "pixel metrics at the input size (448x448)"),
    ],
)
def test_protocol_line_states_the_protocol(resolution: object, expected: str) -> None:
    line = protocol_line({**PROTOCOL, "resolution": resolution})
    assert line.startswith(f"Protocol: {expected}, 5x5 mean filter, squash resize, exact metrics")
    assert "AUPRO up to FPR 0.3" in line
    assert "no mean filter" in protocol_line({**PROTOCOL, "mean_filter_size": 1})


def test_category_rows_and_summary_values() -> None:
    columns, rows = category_rows(report())
    assert columns[:2] == ["dataset", "category"] and columns[-len(PROTOCOL) :] == list(PROTOCOL)
    assert columns[2:10] == [  # the registry's order: the published tables'
        "image_AUROC",
        "image_F1max",
        "image_AP",
        "pixel_AUROC",
        "pixel_F1max",
        "pixel_AP",
        "pixel_AUPRO",
        "n_images",
    ]
    assert [r[:2] for r in rows] == [
        ["mvtec_ad", "bottle"],
        ["mvtec_ad", "tile"],
        ["kvasir", "kvasir"],
    ]
    tile = dict(zip(columns, rows[1]))
    assert tile["image_AUROC"] == 0.7 and math.isnan(tile["pixel_AP"]) and tile["n_images"] == 5
    assert tile["resolution"] == 96 and tile["metric_mode"] == "exact"
    out = summary(report(), {"backbone": "tiny"})
    assert (
        out["backbone"] == "tiny" and out["protocol"] == PROTOCOL and out["eval_resolution"] == 96
    )
    assert out["datasets"]["kvasir"]["num_images"] == {"kvasir": 9}
    assert out["mean"]["image_AUROC"] == pytest.approx(0.8) and out["num_datasets"] == 2


def test_writer_files_parse(tmp_path: Path) -> None:
    writer = ResultsWriter(str(tmp_path / "res.json"), output_dir=str(tmp_path / "tables"))
    paths = writer.write(report())
    rows = list(csv.DictReader(paths["categories_csv"].open()))
    assert len(rows) == 3 and rows[1]["pixel_AP"] == "" and float(rows[1]["image_AUROC"]) == 0.7
    payload = json.loads((tmp_path / "res.json").read_text())
    assert payload["datasets"]["mvtec_ad"]["categories"]["tile"]["pixel_AP"] is None  # NaN
    md = paths["datasets_md"].read_text().splitlines()
    assert md[0].startswith("Protocol: pixel metrics at 96x96") and md[2].startswith("| dataset")
    assert paths["datasets_md"].parent == tmp_path / "tables"


# -- a real tiny `anomalyvfm test` -------------------------------------------------------------


def test_cli_test_run_writes_every_file(tmp_path: Path, mvtec_root: Path) -> None:
    cli = tiny_test(tmp_path, mvtec_root)
    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "results_categories.csv").open()))
    assert [(r["dataset"], r["category"]) for r in rows] == [
        ("mvtec_ad", "bottle"),
        ("mvtec_ad", "tile"),
        ("tile_only", "tile"),
    ]
    assert all(r["n_images"] == "6" and r["resolution"] == "28" for r in rows)
    results = cli.model.results
    for r in rows:
        for metric, value in results[r["dataset"]][r["category"]].items():
            assert float(r[metric]) == pytest.approx(value, abs=1e-12)
    payload = json.loads((out / "results.json").read_text())
    assert {"protocol", "datasets", "mean", "eval_resolution", "files"} <= set(payload)
    assert payload["eval_resolution"] == 28 and payload["protocol"]["mean_filter_size"] == 5
    assert payload["datasets"]["tile_only"]["num_images"] == {"tile": 6}
    table = (out / "results_datasets.md").read_text().splitlines()
    assert "28x28" in table[0]
    assert cells(table[-1])[0] == "**mean of 2**" and len(table) == 2 + 2 + 3
    image_auroc = (
        results["mvtec_ad"]["bottle"]["image_AUROC"] + results["mvtec_ad"]["tile"]["image_AUROC"]
    ) / 2
    assert cells(table[4])[1] == f"{100 * image_auroc:.1f}"
    assert len((out / "results_categories.md").read_text().splitlines()) == 2 + 2 + 5


def test_offline_wandb_run_gets_the_tables(
    tmp_path: Path, mvtec_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    cli = tiny_test(tmp_path, mvtec_root, offline_wandb_logger(tmp_path))
    run_state = cli.trainer.logger.experiment
    # The callback's values (float64), not the float32 ones `self.log` put there during test.
    assert run_state.summary["test/mean/pixel_AUPRO"] == cli.model.overall_mean["pixel_AUPRO"]
    assert run_state.config["eval_protocol"]["resolution"] == 28
    wandb.finish()
    (run_dir,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media" / "table" / "test" / "results"
    tables = sorted(p.name.split("_")[0] for p in media.glob("*.table.json"))
    assert tables == ["categories", "datasets"]
    table = json.loads(next(media.glob("categories_*.table.json")).read_text())
    assert table["columns"][:3] == ["dataset", "category", "image_AUROC"]
    assert [row[:2] for row in table["data"]] == [
        ["mvtec_ad", "bottle"],
        ["mvtec_ad", "tile"],
        ["tile_only", "tile"],
    ]


def test_one_metric_registry_in_one_order() -> None:
    from typing import get_args

    from anomalyvfm.metric_names import ALL_METRIC_NAMES, HEADERS, METRIC_NAMES
    from anomalyvfm.metrics.compat import metric_functions
    from anomalyvfm.metrics.evaluator import MetricName

    assert get_args(MetricName) == ALL_METRIC_NAMES  # the config type lists the registry
    assert list(HEADERS) == list(METRIC_NAMES)  # tables and results share one order
    assert list(ALL_METRIC_NAMES[: len(METRIC_NAMES)]) == list(METRIC_NAMES)
    for mode in ("exact", "reference_binned", "threshold_loop"):
        assert tuple(metric_functions(mode)) == ALL_METRIC_NAMES
    # The evaluator's exact metrics are the exported torchmetrics classes.
    from anomalyvfm.metrics.registry import METRIC_CLASSES

    assert tuple(METRIC_CLASSES) == ALL_METRIC_NAMES
    for name, fn in metric_functions("exact").items():
        assert fn.__name__ == f"{METRIC_CLASSES[name].__name__}_compute", name
