"""Contact sheets: the grid, the mask outline, the command and the training callback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_synthesis.preview import contact_sheet, main, mask_outline
from tests.helpers import fit_args, run, write_layout

RED = np.array([255, 0, 0], np.uint8)


def triple(value: float, box: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    normal = np.full((16, 16, 3), value, np.float32)
    mask = np.zeros((16, 16), np.float32)
    y0, x0, y1, x1 = box
    mask[y0:y1, x0:x1] = 1.0
    anomalous = normal.copy()
    anomalous[mask > 0] = 0.0
    return normal, anomalous, mask


def test_sheet_has_one_row_per_sample_and_three_columns() -> None:
    samples = [triple(v, (4, 4, 12, 12)) for v in (0.2, 0.5, 0.8)]
    sheet = np.asarray(contact_sheet(samples, size=16, gap=2, outline_width=1))
    assert sheet.shape == (3 * 18 + 2, 3 * 18 + 2, 3)
    for r, v in enumerate((0.2, 0.5, 0.8)):
        top = 2 + r * 18
        normal_tile = sheet[top : top + 16, 2:18]
        assert (normal_tile == round(v * 255)).all()
        anomalous_tile = sheet[top : top + 16, 20:36]
        assert (anomalous_tile[4:12, 4:12] == 0).all() and (anomalous_tile[0, 0] > 0).all()
    assert (sheet[0, :] == 255).all() and (sheet[:, 19] == 255).all()  # white gaps


def test_outline_is_drawn_on_the_mask_border_only() -> None:
    sheet = np.asarray(contact_sheet([triple(0.5, (4, 6, 12, 14))], size=16, gap=0))
    red = (sheet == RED).all(axis=2)
    box = np.zeros((16, 16), bool)
    box[4:12, 6:14] = True
    inner = np.zeros((16, 16), bool)
    inner[6:10, 8:12] = True
    assert np.array_equal(red[:, 32:48], box & ~inner)  # a 2-pixel ring (outline_width=2)
    assert not red[:, :32].any()  # only the third column is outlined
    inner1 = np.zeros((16, 16), bool)
    inner1[5:11, 7:13] = True
    assert np.array_equal(mask_outline(box, width=1), box & ~inner1)
    no_mask = np.asarray(contact_sheet([triple(0.5, (0, 0, 0, 0))], size=16, gap=0))
    assert not (no_mask == RED).all(axis=2).any()


def test_mask_outline_touching_the_image_edge() -> None:
    mask = np.zeros((6, 6), np.float32)
    mask[:3, :] = 1.0
    border = mask_outline(mask)
    assert border[0].all() and border[2].all() and not border[1, 1:5].any()
    assert border[1, 0] and border[1, 5] and not border[3:].any()


@pytest.mark.parametrize("generator", ["noise", "cutpaste"])
def test_command_on_a_folder_of_normals(normal_dir: Path, tmp_path: Path, generator: str) -> None:
    out = tmp_path / "a.png"
    args = ["--source", str(normal_dir), "--generator", generator, "--num", "3", "--size", "40"]
    main([*args, "--seed", "1", "--out", str(out)])
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (3 * 44 + 4, 3 * 44 + 4, 3)
    assert (sheet == RED).all(axis=2).sum() > 0
    main([*args, "--seed", "1", "--out", str(tmp_path / "b.png")])
    main([*args, "--seed", "2", "--out", str(tmp_path / "c.png")])
    assert out.read_bytes() == (tmp_path / "b.png").read_bytes()
    assert out.read_bytes() != (tmp_path / "c.png").read_bytes()


def test_command_on_an_ondisk_dataset(tmp_path: Path) -> None:
    root = write_layout(tmp_path / "ds", n=3)
    out = tmp_path / "sheet.png"
    main(["--source", str(root), "--num", "5", "--size", "32", "--out", str(out)])
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (3 * 36 + 4, 3 * 36 + 4, 3)  # only 3 pairs exist
    assert (sheet == RED).all(axis=2).sum() > 0


def test_command_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="image folder not found: .*missing"):
        main(["--source", str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")])
    root = write_layout(tmp_path / "ds", n=2)
    (root / "ground_truth/bad/001.png").unlink()
    with pytest.raises(SystemExit, match="mismatched pairs"):
        main(["--source", str(root), "--out", str(tmp_path / "x.png")])


def test_callback_writes_the_sheet_during_fit(normal_dir: Path, tmp_path: Path) -> None:
    root = write_layout(tmp_path / "ds", n=3, size=56)
    cli = run(
        *fit_args(
            tmp_path,
            normal_dir,
            f"--data.synthetic_dirs=[{root}]",
            "--data.source_weights=[1.0, 1.0]",
            "--trainer.max_steps=1",
            "--trainer.enable_checkpointing=false",
            "--trainer.callbacks+=TrainingPreview",
            "--trainer.callbacks.num_samples=4",
            "--trainer.callbacks.tile_size=24",
        )
    )
    path = tmp_path / "training_preview.png"
    assert path.is_file()
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (4 * 28 + 4, 3 * 28 + 4, 3)
    assert (sheet == RED).all(axis=2).sum() > 0
    assert cli.trainer.global_step == 1


@pytest.mark.slow
def test_callback_logs_the_sheet_to_an_offline_wandb_run(
    normal_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    run(
        *fit_args(
            tmp_path,
            normal_dir,
            "--trainer.max_steps=1",
            "--trainer.enable_checkpointing=false",
            "--trainer.logger=anomalyvfm.loggers.WandbLogger",
            f"--trainer.logger.save_dir={tmp_path / 'wb'}",
            "--trainer.logger.offline=true",
            "--trainer.callbacks+=TrainingPreview",
            "--trainer.callbacks.num_samples=2",
            "--trainer.callbacks.tile_size=24",
        )
    )
    images = list((tmp_path / "wb").rglob("media/images/train/preview_*.png"))
    assert len(images) == 1
    assert np.asarray(Image.open(images[0])).shape == (2 * 28 + 4, 3 * 28 + 4, 3)
