"""``anomalyvfm predict --input`` and ``anomalyvfm calibrate`` as a user runs them."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalyvfm import Detector
from anomalyvfm.deploy import cli as deploy_cli
from anomalyvfm.deploy.detector import file_sha256
from anomalyvfm.visualization import heatmap_overlay
from data_synthesis.io import decode_image, image_to_float
from tests.helpers import child_env, write_mixed_images

COMMAND = [sys.executable, "-m", "anomalyvfm"]


def _run(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        env=env or child_env(tmp, offline=True),
        timeout=300,
    )


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "predictions.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_mixed_images(root)
    (root / "sub" / "broken.png").write_bytes(b"not an image")
    whole = (root / "rgb.png").read_bytes()
    (root / "sub" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "sub" / "empty.png").write_bytes(b"")
    return root


def test_routing_keeps_the_lightning_predict_form() -> None:
    assert deploy_cli.handles(["predict", "--input", "x", "--ckpt_path", "c"])
    assert deploy_cli.handles(["predict", "--input=x"])
    assert deploy_cli.handles(["calibrate", "--help"])
    assert not deploy_cli.handles(["predict", "--config", "c.yaml", "--ckpt_path", "c"])
    assert not deploy_cli.handles(["test", "--input", "x"]) and not deploy_cli.handles([])


def test_inputs_from_folder_glob_and_list_file(tmp_path: Path, images: Path) -> None:
    root, files = deploy_cli.list_inputs(str(images))
    assert root == images
    names = [p.relative_to(images).as_posix() for p in files]
    assert names == [
        "alpha.png",
        "deep.png",
        "grey.png",
        "rgb.png",
        "sub/broken.png",
        "sub/empty.png",
        "sub/photo.jpg",
        "sub/truncated.png",
    ]
    root, files = deploy_cli.list_inputs(f"{images}/**/*.jpg")
    assert root == images and files == [images / "sub" / "photo.jpg"]
    listing = tmp_path / "list.txt"
    listing.write_text("images/rgb.png\n# a comment\n\nimages/sub/missing.png\n")
    root, files = deploy_cli.list_inputs(str(listing))
    assert root == images.absolute()
    assert files == [images.absolute() / "rgb.png", images.absolute() / "sub" / "missing.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"--input .*empty: no images"):
        deploy_cli.list_inputs(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        deploy_cli.list_inputs(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="matches no image"):
        deploy_cli.list_inputs(str(tmp_path / "*.png"))
    shutil.copy(images / "rgb.png", images / "rgb.jpg")
    _, files = deploy_cli.list_inputs(str(images))
    with pytest.raises(ValueError, match="same output files"):
        deploy_cli.output_names(images, files)


@pytest.mark.slow
def test_predict_a_folder_then_resume_then_calibrate(
    tmp_path: Path, trained_ckpt: Path, images: Path
) -> None:
    out = tmp_path / "out"
    args = ["predict", f"--ckpt_path={trained_ckpt}", "--input", str(images), "--output", str(out)]
    proc = _run(tmp_path, *args, "--batch-size=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5 of 8 images scored" in proc.stdout and "3 unreadable" in proc.stdout
    assert "Traceback" not in proc.stderr and "predict:" in proc.stderr  # the progress bar
    rows = _rows(out)
    assert [r["path"] for r in rows] == [str(p) for p in deploy_cli.list_inputs(str(images))[1]]
    # Unreadable, truncated and empty files: a row each with the reason, no score.
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"broken.png", "truncated.png", "empty.png"}
    assert all(errors.values()) and all(r["score"] == "" for r in rows if r["error"])
    assert "cannot read image" in errors["broken.png"]
    detector = Detector.from_checkpoint(trained_ckpt)
    for row in rows:
        if row["error"]:
            continue
        path = Path(row["path"])
        rel = path.relative_to(images).with_suffix("")
        pred = detector.predict(path)[0]
        amap = np.load(out / "maps" / f"{rel}.npy")
        np.testing.assert_allclose(amap, pred.anomaly_map, atol=1e-6)
        assert float(row["score"]) == pytest.approx(pred.score, abs=1e-6)
        assert row["label"] == "0" and row["calibrated"] == "false" and row["threshold"] == "0.5"
        assert float(row["max_pixel_score"]) == pytest.approx(float(amap.max()), abs=1e-6)
        assert float(row["anomalous_area"]) == pytest.approx(float((amap > 0.5).mean()))
        mask = np.asarray(Image.open(out / "masks" / f"{rel}.png")) > 0
        assert np.array_equal(mask, amap > 0.5)
        overlay = np.asarray(Image.open(out / "overlays" / f"{rel}.png"))
        # Fixed colour scale: the overlay is the same function of the map for every image.
        expected = heatmap_overlay(image_to_float(decode_image(path)), amap)
        assert np.abs(overlay.astype(int) - expected.astype(int)).max() <= 1
    record = json.loads((out / "predict.json").read_text())
    assert record["checkpoint_sha256"] == file_sha256(trained_ckpt)
    assert (record["num_inputs"], record["num_scored"], record["num_errors"]) == (8, 5, 3)
    assert record["calibrated"] is False and record["image_threshold"] == 0.5
    assert not (out / deploy_cli.PARTS).exists()

    # A rerun skips what is done: only the unreadable files are tried again.
    stamp = (out / "maps" / "rgb.npy").stat().st_mtime_ns
    proc = _run(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5 already done" in proc.stdout
    assert (out / "maps" / "rgb.npy").stat().st_mtime_ns == stamp
    assert len(_rows(out)) == 8

    normals = tmp_path / "normals"
    normals.mkdir()
    for name in ("rgb.png", "grey.png", "alpha.png", "deep.png"):
        shutil.copy(images / name, normals / name)
    calibrated = tmp_path / "calibrated.ckpt"
    proc = _run(
        tmp_path,
        "calibrate",
        f"--ckpt_path={trained_ckpt}",
        "--normal",
        str(normals),
        "--target-fpr",
        "0.25",
        "--output",
        str(calibrated),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "calibrated on 4 normal images" in proc.stdout
    reloaded = Detector.from_checkpoint(calibrated)
    assert reloaded.calibrated and reloaded.calibration is not None
    assert reloaded.calibration.num_images == 4 and reloaded.calibration.target_fpr == 0.25
    # Predictions of the calibrated checkpoint do not mix with the uncalibrated ones.
    proc = _run(tmp_path, *args[:1], f"--ckpt_path={calibrated}", *args[2:])
    assert proc.returncode == 1 and "--output" in proc.stderr and "--overwrite" in proc.stderr
    assert str(trained_ckpt) in proc.stderr and str(calibrated) in proc.stderr  # names both
    png = tmp_path / "png"
    proc = _run(
        tmp_path,
        "predict",
        f"--ckpt_path={calibrated}",
        f"--input={images}/*.png",
        f"--output={png}",
        "--map-format=png16",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(png)
    assert len(rows) == 4 and all(r["calibrated"] == "true" for r in rows)
    deep = np.asarray(Image.open(png / "maps" / "deep.png"))
    assert deep.dtype == np.uint16 and deep.shape == (33, 20)
    np.testing.assert_allclose(deep / 65535, np.load(out / "maps" / "deep.npy"), atol=1e-5)


@pytest.mark.slow
def test_sharded_predict_scores_every_image_once(
    tmp_path: Path, trained_ckpt: Path, images: Path
) -> None:
    out = tmp_path / "sharded"
    base = ["predict", f"--ckpt_path={trained_ckpt}", f"--input={images}"]
    proc = _run(tmp_path, *base, f"--output={out}", "--devices=2", "--batch-size=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(out)
    paths = [str(p) for p in deploy_cli.list_inputs(str(images))[1]]
    assert [r["path"] for r in rows] == paths  # each once, in input order
    assert json.loads((out / "predict.json").read_text())["devices"] == 2
    detector = Detector.from_checkpoint(trained_ckpt)
    for row in rows:
        if not row["error"]:
            assert float(row["score"]) == pytest.approx(detector.predict(row["path"])[0].score)

    # torchrun's form: each process is one rank; rank 0 merges when every rank has finished.
    out = tmp_path / "torchrun"
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    procs = [
        subprocess.Popen(
            [*COMMAND, *base, f"--output={out}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(
                tmp_path,
                offline=True,
                RANK=str(r),
                WORLD_SIZE="2",
                LOCAL_RANK=str(r),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            ),
        )
        for r in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert [r["path"] for r in _rows(out)] == paths


@pytest.mark.slow
def test_bad_input_gives_one_line_errors(tmp_path: Path, trained_ckpt: Path, images: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = f"--output={tmp_path / 'out'}"
    cases = [
        (["predict", f"--ckpt_path={tmp_path / 'no.ckpt'}", f"--input={images}", out],
         1, "no.ckpt"),
        (["predict", f"--ckpt_path={trained_ckpt}", f"--input={empty}", out], 1, "--input"),
        (["predict", f"--ckpt_path={trained_ckpt}", f"--input={images}", out, "--batch-size=0"],
         2, "--batch-size"),
        (["predict", f"--ckpt_path={trained_ckpt}", f"--input={images}"], 2, "--output"),
        (["calibrate", f"--ckpt_path={trained_ckpt}", f"--normal={images}", out + ".ckpt"],
         1, "broken.png"),
        (["calibrate", f"--ckpt_path={trained_ckpt}", f"--normal={images}", out,
          "--target-fpr=2"], 2, "--target-fpr"),
    ]  # fmt: skip
    for args, code, named in cases:
        proc = _run(tmp_path, *args, env=child_env(tmp_path, offline=True))
        assert proc.returncode == code, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        errors = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
        assert len(errors) == 1 and named in errors[0], proc.stderr


def test_an_output_folder_inside_the_input_is_not_read_as_input(
    tmp_path: Path, trained_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.full((30, 40, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    out = images / "out"
    args = ["predict", f"--ckpt_path={trained_ckpt}", f"--input={images}", f"--output={out}"]
    assert deploy_cli.main(args) == 0
    assert deploy_cli.main(args) == 0  # the overlays written under images/out are not inputs
    assert "2 of 2 images scored" in capsys.readouterr().out.splitlines()[-1]
    assert [r["path"] for r in _rows(out)] == [str(images / "0.png"), str(images / "1.png")]
    assert json.loads((out / "predict.json").read_text())["num_skipped"] == 2
