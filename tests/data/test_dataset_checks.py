"""Checks when a run starts, the report of empty defect masks, and results kept after a failure.

* The datamodule rejects bad options in its constructor, naming them.
* ``setup`` checks every evaluation file from its header (exists, opens, mask size = image size)
  before any model work.
* A defective image whose mask is empty is counted per dataset (``empty_masks`` in
  ``results.json``) and warned about once.
* A ``test`` run whose second dataset fails still writes the first dataset's results.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
from PIL import Image

from anomalyvfm.batch import Sample
from anomalyvfm.callbacks.results import ResultsWriter
from anomalyvfm.data import DAGM, MTD, AnomalyDataModule, FolderDataset, MVTecAD
from tests.data.dagm import data as dagm_data
from tests.data.mtd import data as mtd_data
from tests.helpers import one_torch_thread, tiny_task

SIZE = 32


def folder_set(
    root: Path, name: str = "folder", num: int = 3, empty_masks: int = 0, **kw: Any
) -> FolderDataset:
    """``num`` normal and ``num`` anomalous images with 0/255 masks; the first ``empty_masks``
    anomalous images get an all-zero mask."""
    rng = np.random.default_rng(len(name))
    for sub in ("normal", "abnormal", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(num):
        for sub in ("normal", "abnormal"):
            pixels = (rng.uniform(0.2, 0.6, (SIZE, SIZE, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / sub / f"{i:02d}.png")
        mask = np.zeros((SIZE, SIZE), np.uint8)
        if i >= empty_masks:
            mask[4 : 10 + i, 6:16] = 255
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    return FolderDataset("normal", "abnormal", "masks", name=name, root=str(root), **kw)


def datamodule(*datasets: FolderDataset, **kw: Any) -> AnomalyDataModule:
    options: dict[str, Any] = {
        "image_size": 28,
        "eval_mask_size": 14,
        "eval_batch_size": 2,
        "num_workers": 0,
    }
    return AnomalyDataModule(**{**options, **kw, "test_datasets": list(datasets)})


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "eval_mask_size",
            0,
            "data.eval_mask_size must be a positive size, 'input' or 'original'; got 0",
        ),
        ("eval_mask_size", -96, "data.eval_mask_size must be a positive size"),
        ("eval_mask_size", "full", "data.eval_mask_size must be a positive size"),
        ("eval_mask_size", True, "data.eval_mask_size must be a positive size"),
        ("image_size", 0, "data.image_size must be a positive integer; got 0"),
        ("batch_size", 0, "data.batch_size must be a positive integer; got 0"),
        ("eval_batch_size", -1, "data.eval_batch_size must be a positive integer; got -1"),
        ("train_length", 0, "data.train_length must be a positive integer; got 0"),
        ("num_workers", -1, "data.num_workers must be >= 0 or 'auto'; got -1"),
        ("num_workers", "many", "data.num_workers must be >= 0 or 'auto'"),
        ("anomaly_ratio", 1.5, "data.anomaly_ratio must be in [0, 1]; got 1.5"),
        ("anomaly_ratio", -0.1, "data.anomaly_ratio must be in [0, 1]"),
        ("source_weights", [1.0, -1.0], "data.source_weights must be non-negative numbers"),
        ("source_weights", [0.0, 0.0], "data.source_weights must be non-negative numbers, not all"),
        ("generator_weights", [0.0], "data.generator_weights must be non-negative numbers"),
        ("check_files", "full", "data.check_files must be one of ['header', 'decode', 'off']"),
        ("eval_resize", "crop", "data.eval_resize must be one of ['squash', 'center_crop']"),
    ],
)
def test_datamodule_rejects_bad_options_naming_them(option: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        AnomalyDataModule(**{option: value})


def test_datamodule_accepts_the_documented_values() -> None:
    from data_synthesis import CutPasteGenerator, NoiseTextureGenerator

    for size in (1, 96, "input", "original", None):
        AnomalyDataModule(eval_mask_size=size)
    dm = AnomalyDataModule(
        generators=[NoiseTextureGenerator(), CutPasteGenerator()],
        generator_weights=[0, 2],
        source_weights=[1, 0],
        anomaly_ratio=1,
        num_workers="auto",
    )
    assert dm.generator_weights == [0.0, 2.0] and dm.anomaly_ratio == 1
    with pytest.raises(ValueError, match="data.generator_weights has 1 entries for 2 generators"):
        AnomalyDataModule(
            generators=[NoiseTextureGenerator(), CutPasteGenerator()], generator_weights=[1.0]
        )


# -- the start-up check of evaluation files ------------------------------------------------------


def test_check_passes_on_good_sets_and_reads_headers_only(tmp_path: Path) -> None:
    ds = folder_set(tmp_path / "f")
    # Truncate an image: its header is intact, its pixels are not.
    image = ds.records[4].image_path
    image.write_bytes(image.read_bytes()[:200])
    dm = datamodule(ds)
    dm.setup("test")  # no decoding at the check
    with pytest.raises(ValueError, match=f"folder: cannot read image {re.escape(str(image))}"):
        ds[4]


@pytest.mark.parametrize("problem", ["missing_image", "missing_mask", "mask_size", "not_an_image"])
def test_check_names_the_dataset_and_the_file(problem: str, tmp_path: Path) -> None:
    ds = folder_set(tmp_path / "f", name="parts")
    rec = ds.records[4]
    assert rec.mask_path is not None
    if problem == "missing_image":
        rec.image_path.unlink()
        error, text = FileNotFoundError, f"parts: image {rec.image_path} does not exist"
    elif problem == "missing_mask":
        rec.mask_path.unlink()
        error, text = FileNotFoundError, f"parts: mask {rec.mask_path} does not exist"
    elif problem == "mask_size":
        Image.new("L", (SIZE, SIZE // 2)).save(rec.mask_path)
        text = f"parts: mask {rec.mask_path} is 32x16, its image {rec.image_path} is 32x32"
        error = ValueError
    else:
        rec.mask_path.write_text("not an image")
        error, text = ValueError, f"parts: cannot read mask {rec.mask_path} as an image"
    with pytest.raises(error, match=re.escape(text)):
        datamodule(ds).setup("test")


def test_check_reports_the_first_problem_and_counts_the_rest(tmp_path: Path) -> None:
    ds = folder_set(tmp_path / "f")
    for rec in ds.records[3:]:
        assert rec.mask_path is not None
        Image.new("L", (8, 8)).save(rec.mask_path)
    with pytest.raises(
        ValueError, match=r"masks/00\.png is 8x8.*\(2 more file\(s\) with problems\)"
    ):
        ds.check_files()
    ds.records.clear()
    with pytest.raises(ValueError, match="folder: no image to evaluate under"):
        ds.check_files()


def test_setup_checks_the_stage_datasets_once(tmp_path: Path) -> None:
    good, bad = folder_set(tmp_path / "good", "good"), folder_set(tmp_path / "bad", "bad")
    bad.records[0].image_path.unlink()
    dm = AnomalyDataModule(num_workers=0, val_datasets=[good], test_datasets=[bad])
    dm.setup("validate")  # the validation set is fine
    with pytest.raises(FileNotFoundError, match="bad: image"):
        dm.setup("test")
    calls = []
    good.check_files = lambda: calls.append(1)  # type: ignore[method-assign]
    dm.setup("validate")
    assert calls == []  # checked once already


def test_readers_reject_empty_categories(tmp_path: Path) -> None:
    mtd = mtd_data.write(tmp_path / "mtd")
    crack = mtd / "MT_Crack" / "Imgs"
    for f in crack.iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match=f"no images in {re.escape(str(crack))}"):
        MTD(str(mtd))
    assert MTD(str(mtd), defect_types=["Free"]).categories == ["mtd"]
    dagm = dagm_data.write(tmp_path / "dagm")
    labels = dagm / "Class1" / "Test" / "Label" / "Labels.txt"
    labels.write_text(labels.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=f"{re.escape(str(labels))} lists no image of Class1"):
        DAGM(str(dagm))


def test_empty_test_folder_of_a_category_names_it(mvtec_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "mvtec"
    shutil.copytree(mvtec_root, root)
    for folder in (root / "tile" / "test").iterdir():
        shutil.rmtree(folder)
        folder.mkdir()
    with pytest.raises(FileNotFoundError, match=f"no test images under {re.escape(str(root))}"):
        MVTecAD(str(root))


# -- empty masks and results after a failure, through a real trainer.test -----------------------


class FailsAt(FolderDataset):
    """A folder set whose item ``at`` fails to load, as a file that breaks mid-run would."""

    at = 3

    def __getitem__(self, index: int) -> Sample:
        if index == self.at:
            raise ValueError(f"{self.name}: cannot read image {self.records[index].image_path}")
        return super().__getitem__(index)


def run_test(
    tmp: Path,
    *datasets: FolderDataset,
    before: list[pl.Callback] | None = None,
    task: Any = None,
    writer: ResultsWriter | None = None,
) -> tuple[Any, ResultsWriter]:
    pl.seed_everything(0, verbose=False)
    task = task or tiny_task(28)
    writer = writer or ResultsWriter(str(tmp / "out" / "results.json"), log_wandb=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[*(before or []), writer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    with one_torch_thread():
        trainer.test(task, datamodule=datamodule(*datasets), verbose=False)
    return task, writer


def test_empty_defect_masks_are_counted_and_warned_once(tmp_path: Path) -> None:
    clean = folder_set(tmp_path / "clean", "clean")
    holes = folder_set(tmp_path / "holes", "holes", num=4, empty_masks=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task, writer = run_test(tmp_path, clean, holes)
    lines = [str(w.message) for w in caught if "empty mask" in str(w.message)]
    assert len(lines) == 1
    example = holes.records[4].image_path  # the first anomalous image, mask all zero
    assert lines[0].startswith(f"holes: 2 defective image(s) have an empty mask, e.g. {example}")
    assert task.eval_empty_masks == {"clean": 0, "holes": 2}
    payload = json.loads(writer.path.read_text())
    assert payload["datasets"]["clean"]["empty_masks"] == 0
    assert payload["datasets"]["holes"]["empty_masks"] == 2
    assert "incomplete" not in payload


def test_results_of_finished_datasets_are_written_when_a_later_one_fails(tmp_path: Path) -> None:
    first = folder_set(tmp_path / "first", "first")
    folder_set(tmp_path / "second", "second")  # the files, read again by the failing set
    second = FailsAt("normal", "abnormal", "masks", name="second", root=str(tmp_path / "second"))
    with pytest.raises(ValueError, match="second: cannot read image"):
        run_test(tmp_path, first, second)
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(payload["datasets"]) == ["first"]
    values = payload["datasets"]["first"]["categories"]["folder"]
    assert values["pixel_AUROC"] is not None and values["image_AUROC"] is not None
    assert payload["datasets"]["first"]["num_images"] == {"folder": 6}
    assert payload["incomplete"]["datasets_without_results"] == ["second"]
    assert "second: cannot read image" in payload["incomplete"]["error"]
    md = (tmp_path / "out" / "results_datasets.md").read_text()
    assert "first (1)" in md and "second" not in md


def test_nothing_is_written_when_the_first_dataset_fails(tmp_path: Path) -> None:
    folder_set(tmp_path / "only", "only")
    only = FailsAt("normal", "abnormal", "masks", name="only", root=str(tmp_path / "only"))
    with pytest.raises(ValueError, match="only: cannot read image"):
        run_test(tmp_path, only)
    assert not (tmp_path / "out").exists()


class FailsAtTestEnd(pl.Callback):
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        raise RuntimeError("a callback failed after the evaluation")


def test_results_computed_before_a_later_failure_are_kept(tmp_path: Path) -> None:
    first, second = folder_set(tmp_path / "a", "a"), folder_set(tmp_path / "b", "b")
    with pytest.raises(RuntimeError, match="a callback failed"):
        run_test(tmp_path, first, second, before=[FailsAtTestEnd()])
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(payload["datasets"]) == ["a", "b"]
    assert payload["incomplete"] == {
        "error": "RuntimeError: a callback failed after the evaluation",
        "datasets_without_results": [],
    }


def test_a_run_failing_at_its_file_check_leaves_the_previous_results(tmp_path: Path) -> None:
    good = folder_set(tmp_path / "good", "good")
    task, writer = run_test(tmp_path, good)
    written = writer.path.read_text()
    bad = folder_set(tmp_path / "bad", "bad")
    bad.records[0].image_path.unlink()
    with pytest.raises(FileNotFoundError, match="bad: image"):
        run_test(tmp_path, bad, task=task, writer=writer)
    assert writer.path.read_text() == written  # not rewritten from the earlier run's state


def test_two_evaluation_datasets_with_one_name_are_refused(mvtec_root: Path) -> None:
    from anomalyvfm.data import AnomalyDataModule, MVTecAD

    first, second = MVTecAD(root=str(mvtec_root)), MVTecAD(root=str(mvtec_root))
    with pytest.raises(ValueError, match=r"data.test_datasets: two datasets are named 'mvtec_ad'"):
        AnomalyDataModule(test_datasets=[first, second])
    renamed = MVTecAD(root=str(mvtec_root), name="mvtec_again")
    dm = AnomalyDataModule(val_datasets=[first], test_datasets=[second, renamed])
    assert [ds.name for ds in dm.eval_datasets("test")] == ["mvtec_ad", "mvtec_again"]
