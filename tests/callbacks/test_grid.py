"""WorstBestGrid on real fixture images: which cases, the picture, DDP gathering, a CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalyvfm.callbacks.grid import GAP, TEXT, WorstBestGrid
from anomalyvfm.data import AnomalyDataModule, MVTecAD
from tests.helpers import TINY, offline_wandb_logger


def batches(root: Path, mask_size: int = 28) -> list[dict]:
    """Real evaluation batches of the MVTec fixture (2 categories x 3 good + 3 broken)."""
    dm = AnomalyDataModule(
        image_size=56,
        eval_batch_size=4,
        num_workers=0,
        eval_mask_size=mask_size,
        test_datasets=[MVTecAD(str(root))],
    )
    return [b for loader in dm.test_dataloader() for b in loader]


def crafted(batch: dict) -> dict[str, torch.Tensor]:
    """Scores from the file name: broken/00i -> 0.1 (i + 1), good/00i -> 0.5 + 0.1 i."""
    scores = []
    for path in batch["path"]:
        i = int(Path(path).stem)
        scores.append(0.1 * (i + 1) if "broken" in path else 0.5 + 0.1 * i)
    score = torch.tensor(scores)
    size = batch["image"].shape[-1]
    return {"pred_score": score, "anomaly_map": score[:, None, None].expand(-1, size, size)}


def names(cases) -> list[str]:
    return [f"{Path(c.path).parent.name}/{Path(c.path).stem}" for c in cases]


def test_worst_and_best_cases_are_the_expected_ones(mvtec_root: Path) -> None:
    grid = WorstBestGrid(num_cases=2, thumbnail_size=32)
    for batch in batches(mvtec_root):
        grid.update(batch, crafted(batch))
    chosen = grid.selected()
    assert set(chosen) == {("mvtec_ad", "bottle"), ("mvtec_ad", "tile")}
    for halves in chosen.values():
        # Worst: lowest-scored defects, then highest-scored normals; best: the opposite.
        assert names(halves["worst"]) == ["broken/000", "broken/001", "good/002", "good/001"]
        assert names(halves["best"]) == ["broken/002", "broken/001", "good/000", "good/001"]
        for case in halves["worst"]:
            assert case.image.shape == (32, 32, 3) and case.image.dtype == np.uint8
            assert case.mask.any() == bool(case.label)  # fixture defects are squares
            # A constant map, coloured on [0, 1]: one uint8 level (rounding aside).
            assert np.abs(case.amap.astype(float) - 255 * case.score).max() <= 1
    # Memory stays bounded: at most num_cases entries per pool.
    assert all(len(h) <= 2 for pools in grid.pools.values() for h in pools.values())


def test_grid_png_size_and_tiles(mvtec_root: Path, tmp_path: Path) -> None:
    t = 40
    grid = WorstBestGrid(num_cases=2, thumbnail_size=t)
    for batch in batches(mvtec_root):
        grid.update(batch, crafted(batch))
    worst = grid.selected()[("mvtec_ad", "tile")]["worst"]
    paths = grid.save(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        "mvtec_ad/bottle.png",
        "mvtec_ad/tile.png",
    ]
    png = np.asarray(Image.open(tmp_path / "mvtec_ad" / "tile.png").convert("RGB"))
    assert png.shape == (GAP + 2 * TEXT + 4 * (TEXT + t + GAP), 6 * t + 8 * GAP, 3)
    # Row 0, column 1 is the ground truth of the worst anomalous case, column 0 its image.
    y, x = GAP + 2 * TEXT + TEXT, GAP + t + GAP
    np.testing.assert_array_equal(png[y : y + t, x : x + t, 0], worst[0].mask * 255)
    np.testing.assert_array_equal(png[y : y + t, GAP : GAP + t], worst[0].image)


def test_padded_masks_are_cut_to_their_size(mvtec_root: Path) -> None:
    batch = batches(mvtec_root)[0]
    padded = dict(batch)
    padded["mask"] = torch.nn.functional.pad(batch["mask"], (0, 5, 0, 3), value=-1.0)
    padded["mask_size"] = torch.tensor([list(batch["mask"].shape[-2:])] * len(batch["path"]))
    cases = []
    for b in (batch, padded):
        grid = WorstBestGrid(num_cases=8, thumbnail_size=16)
        grid.update(b, crafted(b))
        cases.append([c for h in grid.selected().values() for c in h["worst"]])
    assert [c.path for c in cases[0]] == [c.path for c in cases[1]]
    for a, b in zip(*cases):
        np.testing.assert_array_equal(a.mask, b.mask)


def _ddp_worker(rank: int, world: int, root: str, init: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        grid = WorstBestGrid(num_cases=2, thumbnail_size=16)
        # The datamodule's loader gives this rank its share (ShardedEvalSampler).
        for batch in batches(Path(root)):
            grid.update(batch, crafted(batch))
        grid.gather()
        chosen = {
            "/".join(k): {h: names(c) for h, c in v.items()} for k, v in grid.selected().items()
        }
        Path(out, f"{rank}.json").write_text(json.dumps(chosen, sort_keys=True))
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_ranks_gather_the_whole_set(mvtec_root: Path, tmp_path: Path) -> None:
    single = WorstBestGrid(num_cases=2, thumbnail_size=16)
    for batch in batches(mvtec_root):
        single.update(batch, crafted(batch))
    expected = {
        "/".join(k): {h: names(c) for h, c in v.items()} for k, v in single.selected().items()
    }
    init = f"file://{tmp_path / 'pg'}"
    args = (2, str(mvtec_root), init, str(tmp_path))
    # fork: the ranks inherit the imported modules instead of importing Lightning again.
    torch.multiprocessing.start_processes(
        _ddp_worker, args=args, nprocs=2, join=True, start_method="fork"
    )
    for rank in range(2):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == expected


def test_bad_options_fail_clearly() -> None:
    with pytest.raises(ValueError, match="num_cases"):
        WorstBestGrid(num_cases=0)
    with pytest.raises(ValueError, match="map_range"):
        WorstBestGrid(map_range=(1.0, 0.0))


def test_cli_test_run_saves_grids_to_disk_and_wandb(
    tmp_path: Path, mvtec_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    from anomalyvfm.cli import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    t = 32
    args = [
        "test",
        "--config",
        TINY,
        f"--trainer.default_root_dir={tmp_path}",
        offline_wandb_logger(tmp_path),
        "--trainer.callbacks+=WorstBestGrid",
        f"--trainer.callbacks.output_dir={tmp_path / 'grids'}",
        "--trainer.callbacks.num_cases=2",
        f"--trainer.callbacks.thumbnail_size={t}",
        "--data.test_datasets+=MVTecAD",
        f"--data.test_datasets.root={mvtec_root}",
    ]
    main(args)
    wandb.finish()
    for category in ("bottle", "tile"):
        with Image.open(tmp_path / "grids" / "mvtec_ad" / f"{category}.png") as png:
            assert png.size == (6 * t + 8 * GAP, GAP + 2 * TEXT + 4 * (TEXT + t + GAP))
    (run_dir,) = (tmp_path / "runs" / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media" / "images" / "test" / "mvtec_ad"
    logged = sorted(p.relative_to(media).parts[0] for p in media.rglob("worst_best_*.png"))
    assert logged == ["bottle", "tile"]
