"""anomalyvfm.report: exact tables, labels, protocol warnings and charts from result files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from anomalyvfm.report import bar_chart, load_run, load_runs, main, metric_table
from tests.conftest import REPO
from tests.helpers import tiny_test

PROTOCOL = {
    "resolution": 256,
    "image_size": 768,
    "resize": "squash",
    "mean_filter_size": 5,
    "metric_mode": "exact",
    "fpr_limit": 0.3,
}


def results(means: dict[str, dict[str, float | None]], **extra: Any) -> dict[str, Any]:
    """A summary JSON as ResultsWriter writes it (one category per dataset, null = undefined)."""
    datasets = {
        d: {"categories": {d: m}, "mean": m, "num_images": {d: 10}} for d, m in means.items()
    }
    metrics = {k for m in means.values() for k in m}
    mean = {}
    for k in sorted(metrics):
        vals = [m[k] for m in means.values() if m.get(k) is not None]
        mean[k] = sum(vals) / len(vals)  # type: ignore[arg-type]
    return {"protocol": dict(PROTOCOL), **extra, "datasets": datasets, "mean": mean}


def write_run(folder: Path, payload: dict[str, Any], backbone: str | None = None) -> Path:
    """A run folder: results in out/results.json, config.yaml (if any) at the top, as the CLI."""
    (folder / "out").mkdir(parents=True)
    (folder / "out" / "results.json").write_text(json.dumps(payload))
    if backbone:
        config = {
            "model": {"class_path": "AnomalyVFM", "init_args": {"backbone": {"name": backbone}}}
        }
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """A: backbone from config.yaml; B: backbone in the `extra` fields; C: another protocol."""
    a = write_run(
        tmp_path / "a",
        results(
            {
                "mvtec_ad": {"image_AUROC": 0.9, "pixel_AUROC": 0.95},
                "mpdd": {"image_AUROC": 0.7, "pixel_AUROC": 0.85},
            }
        ),
        backbone="vit_large_patch16_radio_v3.c_radio",
    )
    b_payload = results(
        {
            "mvtec_ad": {"image_AUROC": 0.8, "pixel_AUROC": 0.9},
            "mpdd": {"image_AUROC": 0.6, "pixel_AUROC": None},
        },
        backbone="vit_large_patch14_reg4_dinov2.lvd142m",
    )
    b = write_run(tmp_path / "b", b_payload) / "out" / "results.json"
    c_payload = results({"mvtec_ad": {"image_AUROC": 0.5, "pixel_AUROC": 0.6}})
    c_payload["protocol"].update(resolution=96, metric_mode="reference_binned")
    c = write_run(tmp_path / "c", c_payload, backbone="vit_large_patch16_dinov3.lvd1689m")
    return {"a": a, "b": b, "c": c}


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table(report: str, metric: str) -> list[list[str]]:
    """Rows of the markdown table under the ``(`metric`)`` heading."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith(f"(`{metric}`)")) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


def test_tables_have_exact_cells_and_mean_rows(runs, tmp_path, capsys) -> None:
    assert main([str(runs["a"]), str(runs["b"]), "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert table(report, "image_AUROC") == [
        ["dataset", "vit_large_patch16_radio_v3.c_radio", "vit_large_patch14_reg4_dinov2.lvd142m"],
        ["---", "---", "---"],
        ["mvtec_ad", "90.0", "80.0"],
        ["mpdd", "70.0", "60.0"],
        ["**mean**", "**80.0**", "**70.0**"],
    ]
    pixel = table(report, "pixel_AUROC")
    assert pixel[3] == ["mpdd", "85.0", "-"]  # B's undefined value
    assert pixel[4] == ["**mean**", "**90.0**", "**90.0**"]  # B's mean skips it
    assert "DIFFERENT PROTOCOLS" not in report and "WARNING" not in capsys.readouterr().err
    # Only the metrics the runs recorded, each with its chart.
    assert report.count("## ") == 2 and "![pixel_AUROC](pixel_AUROC.png)" in report


def test_different_protocols_are_flagged_loudly(runs, tmp_path, capsys) -> None:
    args = [str(runs["a"]), str(runs["c"]), "--out", str(tmp_path / "rep")]
    assert main(args) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "**WARNING: these runs were evaluated under DIFFERENT PROTOCOLS" in report
    assert "> - `resolution`: vit_large_patch16_radio_v3.c_radio: 256; " in report
    assert "vit_large_patch16_dinov3.lvd1689m: reference_binned" in report
    assert "`mean_filter_size`" not in report  # equal fields are not listed
    assert "evaluated different datasets" in report  # C has no MPDD
    err = capsys.readouterr().err
    assert "'resolution': [256, 96]" in err and "'metric_mode'" in err
    assert table(report, "image_AUROC")[3] == ["mpdd", "70.0", "-"]
    assert main([*args, "--strict"]) == 2


def test_labels_defaults_overrides_and_duplicates(runs, tmp_path) -> None:
    assert load_run(runs["a"]).backbone == "vit_large_patch16_radio_v3.c_radio"
    # Same backbone twice (an ablation): told apart by folder names.
    twin = write_run(
        tmp_path / "lora",
        json.loads((runs["a"] / "out" / "results.json").read_text()),
        backbone="vit_large_patch16_radio_v3.c_radio",
    )
    labels = [r.label for r in load_runs([runs["a"], twin])]
    assert labels == [
        "vit_large_patch16_radio_v3.c_radio (a)",
        "vit_large_patch16_radio_v3.c_radio (lora)",
    ]
    named = load_runs([runs["a"], twin, runs["b"]], {"DoRA": runs["a"], "LoRA": twin})
    assert [r.label for r in named] == ["DoRA", "LoRA", "vit_large_patch14_reg4_dinov2.lvd142m"]
    assert cells(metric_table(named, "image_AUROC").splitlines()[0])[1:3] == ["DoRA", "LoRA"]
    with pytest.raises(ValueError, match="not inputs"):
        load_runs([runs["a"]], {"X": runs["b"]})
    with pytest.raises(SystemExit):
        main([str(runs["a"]), "--label", "no-equals-sign"])


def test_bad_inputs_name_the_path(runs, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no results JSON"):
        load_run(tmp_path / "empty")
    with pytest.raises(ValueError, match="several results files"):
        load_run(tmp_path)  # a, b and c all below it
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="other.json: not a ResultsWriter summary"):
        load_run(tmp_path / "other.json")


def test_charts_have_one_bar_per_defined_cell(runs, tmp_path) -> None:
    loaded = load_runs([runs["a"], runs["b"], runs["c"]])
    fig = bar_chart(loaded, "pixel_AUROC")
    (ax,) = fig.axes
    # Groups mvtec_ad, mpdd, mean x 3 runs, less B's undefined MPDD value and C's missing MPDD.
    assert len(ax.patches) == 3 * 3 - 2
    assert sorted(round(p.get_height(), 6) for p in ax.patches) == [
        60.0,
        60.0,
        85.0,
        90.0,
        90.0,
        90.0,
        95.0,
    ]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mvtec_ad", "mpdd", "mean"]
    out = tmp_path / "rep"
    main([str(runs["a"]), str(runs["b"]), str(runs["c"]), "--out", str(out)])
    assert sorted(p.name for p in out.glob("*.png")) == ["image_AUROC.png", "pixel_AUROC.png"]
    pixels = np.asarray(Image.open(out / "pixel_AUROC.png").convert("RGB"))
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 500
    # The three default bar colours (matplotlib's first tab10 entries) are all drawn.
    for colour in [(31, 119, 180), (255, 127, 14), (44, 160, 44)]:
        assert (pixels == colour).all(axis=-1).sum() > 500


def test_report_of_a_real_tiny_test_run(runs, tmp_path, mvtec_root) -> None:
    cli = tiny_test(tmp_path / "tiny", mvtec_root)
    out = tmp_path / "rep"
    assert main([str(tmp_path / "tiny"), str(runs["a"]), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    rows = table(report, "pixel_AUPRO")
    # The backbone comes from the config.yaml the CLI saved in the run folder.
    assert rows[0] == ["dataset", "vit_small_patch14_dinov2", "vit_large_patch16_radio_v3.c_radio"]
    means = cli.model.dataset_means
    assert rows[2] == ["mvtec_ad", f"{100 * means['mvtec_ad']['pixel_AUPRO']:.1f}", "-"]
    assert rows[3][:2] == ["tile_only", f"{100 * means['tile_only']['pixel_AUPRO']:.1f}"]
    assert rows[-1][1] == f"**{100 * cli.model.overall_mean['pixel_AUPRO']:.1f}**"
    # The tiny run evaluates at 28x28 with a 56 px input: flagged against the 256/768 run.
    assert "> - `resolution`: vit_small_patch14_dinov2: 28; " in report
    assert len(list(out.glob("*.png"))) == 7


def test_console_entry_points(runs, tmp_path) -> None:
    out = tmp_path / "rep"
    cmd = [sys.executable, "-m", "anomalyvfm.report", str(runs["a"]), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == f"report written to {out / 'report.md'}"
    # The installed console script does the same, with exit status 0.
    script = Path(sys.executable).parent / "anomalyvfm-report"
    out2 = tmp_path / "rep2"
    done = subprocess.run(
        [str(script), str(runs["a"]), "--out", str(out2)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report written to {out2 / 'report.md'}"


def test_headers_match_the_results_writer() -> None:
    from anomalyvfm.callbacks.results import HEADERS as WRITER_HEADERS
    from anomalyvfm.report import HEADERS

    assert HEADERS == WRITER_HEADERS
