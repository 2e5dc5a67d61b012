"""``anomalyvfm test`` as a user runs it (a subprocess), on bad data and on unusual mask files.

Every case writes a tiny data set, runs the real command line with the tiny configuration
(``tests/conf/anomalyvfm_tiny.yaml``: a 2-block ViT, no pretrained weights, CPU) and checks the
exit status and that the output names the offending file or option. The output's layout (a
traceback or a short error) is not checked, only what it contains.

All cases are methods of :class:`TestCommandLineOnBadData`, so the group can move as one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import REPO
from tests.data.mvtec import data as mvtec_data

TINY = REPO / "tests" / "conf" / "anomalyvfm_tiny.yaml"
SIZE = 32
NUM = 3  # normal and anomalous images per set


def region_mask(i: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[4 : 12 + i, 6:18] = True
    return mask


# How the anomalous region of a mask is encoded in its file.
MASK_ENCODINGS = {
    "zero_255": lambda m: Image.fromarray(m.astype(np.uint8) * 255),
    "zero_one": lambda m: Image.fromarray(m.astype(np.uint8)),
    "red_on_black": lambda m: Image.fromarray(
        np.stack([m * 255, m * 0, m * 0], -1).astype(np.uint8)
    ),
    "all_black": lambda m: Image.fromarray(np.zeros(m.shape, np.uint8)),
}


def folder_set(root: Path, encoding: str = "zero_255", seed: int = 0) -> dict[str, Any]:
    """Writes a flat folder set (normal/, abnormal/, masks/) and returns its YAML entry."""
    rng = np.random.default_rng(seed)
    for sub in ("normal", "abnormal", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(NUM):
        normal = rng.uniform(0.3, 0.6, (SIZE, SIZE, 3))
        anomalous = rng.uniform(0.3, 0.6, (SIZE, SIZE, 3))
        anomalous[region_mask(i)] = 0.95
        Image.fromarray((normal * 255).astype(np.uint8)).save(root / "normal" / f"{i:02d}.png")
        Image.fromarray((anomalous * 255).astype(np.uint8)).save(root / "abnormal" / f"{i:02d}.png")
        MASK_ENCODINGS[encoding](region_mask(i)).save(root / "masks" / f"{i:02d}.png")
    return {
        "class_path": "FolderDataset",
        "init_args": {
            "normal_dir": "normal",
            "abnormal_dir": "abnormal",
            "mask_dir": "masks",
            "root": str(root),
            "name": root.name,
        },
    }


def run_cli(tmp: Path, datasets: list[dict[str, Any]], *extra: str) -> tuple[int, str, Path]:
    """Runs ``python -m anomalyvfm test`` on ``datasets``; returns (status, output, results)."""
    results = tmp / "out" / "results.json"
    config = {
        "trainer": {
            "callbacks": [
                {
                    "class_path": "ResultsWriter",
                    "init_args": {"path": str(results), "log_wandb": False},
                }
            ]
        },
        "data": {"init_args": {"test_datasets": datasets}},
    }
    config_file = tmp / "bad_data.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "1000",  # long paths stay on one line whatever prints them
    }
    command = [
        sys.executable,
        "-m",
        "anomalyvfm",
        "test",
        "--config",
        str(TINY),
        "--config",
        str(config_file),
        f"--trainer.default_root_dir={tmp / 'runs'}",
        *extra,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp, env=env)
    return done.returncode, done.stdout + done.stderr, results


def assert_fails_naming(status: int, output: str, *names: object) -> None:
    assert status != 0, output[-3000:]
    for name in names:
        assert str(name) in output, f"{name} not in the output:\n{output[-3000:]}"


class TestCommandLineOnBadData:
    """The command line on bad data: a non-zero status and the offending file or option named;
    on unusual but valid masks: a zero status and the masks read as drawn."""

    def test_missing_mask_file(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        (tmp_path / "parts" / "masks" / "01.png").unlink()
        status, output, results = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, tmp_path / "parts" / "masks" / "01", "is missing")
        assert not results.exists()

    def test_mask_of_the_wrong_size(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        mask = tmp_path / "parts" / "masks" / "02.png"
        Image.new("L", (SIZE // 2, SIZE)).save(mask)
        status, output, _ = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, mask, "is 16x32", "its image")

    def test_mask_file_that_is_not_an_image(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        mask = tmp_path / "parts" / "masks" / "00.png"
        mask.write_text("this is not a PNG")
        status, output, _ = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, f"cannot read mask {mask}")

    def test_empty_category_folder(self, tmp_path: Path) -> None:
        root = mvtec_data.write(tmp_path / "mvtec", size=SIZE, num_good=1, num_bad=1)
        for folder in (root / "tile" / "test").iterdir():
            for file in folder.iterdir():
                file.unlink()
        entry = {"class_path": "MVTecAD", "init_args": {"root": str(root)}}
        status, output, _ = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, f"no test images under {root / 'tile' / 'test'}")

    def test_eval_mask_size_zero(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        status, output, results = run_cli(tmp_path, [entry], "--data.eval_mask_size=0")
        assert_fails_naming(status, output, "data.eval_mask_size", "got 0")
        assert not results.exists()

    def test_eval_batch_size_zero(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        status, output, _ = run_cli(tmp_path, [entry], "--data.eval_batch_size=0")
        assert_fails_naming(status, output, "data.eval_batch_size must be a positive integer")

    def test_mask_threshold_given_as_a_grey_value(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        entry["init_args"]["mask_threshold"] = 127
        status, output, _ = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, "mask_threshold must be a fraction in [0, 1)", "127")

    def test_corrupt_image_in_the_second_dataset_keeps_the_first_results(
        self, tmp_path: Path
    ) -> None:
        first = folder_set(tmp_path / "first")
        second = folder_set(tmp_path / "second", seed=1)
        broken = tmp_path / "second" / "abnormal" / "01.png"
        broken.write_bytes(broken.read_bytes()[:120])  # the header survives, the pixels do not
        status, output, results = run_cli(tmp_path, [first, second])
        assert_fails_naming(status, output, broken)
        payload = json.loads(results.read_text())
        assert list(payload["datasets"]) == ["first"]
        assert payload["datasets"]["first"]["categories"]["folder"]["pixel_AUROC"] is not None
        assert payload["incomplete"]["datasets_without_results"] == ["second"]
        assert str(broken) in payload["incomplete"]["error"]

    def test_coloured_and_zero_one_masks_read_as_drawn_and_empty_ones_are_reported(
        self, tmp_path: Path
    ) -> None:
        encodings = ["zero_255", "red_on_black", "zero_one", "all_black"]
        entries = [folder_set(tmp_path / name, name) for name in encodings]
        status, output, results = run_cli(tmp_path, entries)
        assert status == 0, output[-3000:]
        datasets = json.loads(results.read_text())["datasets"]
        assert list(datasets) == encodings
        reference = datasets["zero_255"]["categories"]["folder"]
        assert reference["pixel_AUROC"] is not None
        for name in ("red_on_black", "zero_one"):
            # Same images, same masks once read: the same pixel metrics as the 0/255 set.
            values = datasets[name]["categories"]["folder"]
            assert datasets[name]["empty_masks"] == 0
            for metric in ("pixel_AUROC", "pixel_AP", "pixel_AUPRO"):
                assert values[metric] == pytest.approx(reference[metric]), (name, metric)
        assert datasets["all_black"]["empty_masks"] == NUM
        assert datasets["all_black"]["categories"]["folder"]["pixel_AUROC"] is None
        example = tmp_path / "all_black" / "abnormal" / "00.png"
        warning = f"all_black: {NUM} defective image(s) have an empty mask, e.g. {example}"
        assert output.count(warning) == 1
        assert output.count("have an empty mask") == 1  # no other set is reported
