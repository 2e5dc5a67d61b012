"""Per category, a picture of the worst and the best test cases, saved and logged to W&B."""

from __future__ import annotations

import heapq
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torch.nn import functional as F

from data_synthesis.preview import mask_outline

GAP = 4  # white space between tiles, pixels
TEXT = 12  # height of a caption strip, pixels
# (half, label): the four pools kept per category. Priorities are "larger is kept".
POOLS = {("worst", 1): -1.0, ("worst", 0): 1.0, ("best", 1): 1.0, ("best", 0): -1.0}


@dataclass
class Case:
    """One test image as thumbnails: uint8 RGB, bool mask, uint8 map (0 = low end of range)."""

    score: float
    label: int
    path: str
    image: np.ndarray
    mask: np.ndarray
    amap: np.ndarray


Entry = tuple[float, str, int, Case]  # (priority, path, insertion number, case)


class WorstBestGrid(pl.Callback):
    """After ``test``: per dataset and category, a PNG grid of the worst and the best cases.

    Cases are ranked by the image score (``pred_score`` of ``test_step``'s output):

    * **worst**: the ``num_cases`` anomalous images with the lowest scores (missed defects), then
      the ``num_cases`` normal images with the highest scores (false alarms);
    * **best**: the anomalous images with the highest scores, then the normal images with the
      lowest.

    Ties are broken by path (the later path in sort order is taken). A category with fewer
    images of a class shows fewer rows of it (the same image may then be in both halves); a set
    without normal images (``image_labels=False``) shows only anomalous rows.

    The grid has the worst cases on the left and the best on the right; each row is image |
    ground truth | anomaly-map overlay (ground-truth outline in green), under a caption with the
    label, score and file name. Every tile is ``thumbnail_size`` squared, so the PNG is
    ``6 t + 8 * 4`` pixels wide and ``4 + 2 * 12 + rows * (12 + t + 4)`` high (``rows`` = the
    longer half). Maps are coloured on the fixed ``map_range`` so rows are comparable.

    Memory stays bounded: per category only the current top ``num_cases`` of four pools are kept,
    as thumbnails, in heaps. Under DDP the pools of all ranks are gathered before drawing
    (``torch.distributed.all_gather_object``), so the grid is that of the whole test set; rank 0
    writes ``<output_dir>/<dataset>/<category>.png`` and logs ``test/<dataset>/<category>/
    worst_best`` to every W&B logger.

    Args:
        num_cases: cases per class in each half.
        output_dir: folder of the PNGs; ``<trainer.log_dir>/worst_best`` when None.
        thumbnail_size: side of each tile in pixels.
        map_range: anomaly-map values drawn as the coldest and hottest colour.
        alpha: opacity of the heat map over the image.
        log_wandb: log the grids to every W&B logger of the trainer.
    """

    def __init__(
        self,
        num_cases: int = 4,
        output_dir: str | None = None,
        thumbnail_size: int = 128,
        map_range: tuple[float, float] = (0.0, 1.0),
        alpha: float = 0.5,
        log_wandb: bool = True,
    ) -> None:
        if num_cases < 1 or thumbnail_size < 8:
            raise ValueError(
                f"WorstBestGrid needs num_cases >= 1 and thumbnail_size >= 8, got {num_cases} "
                f"and {thumbnail_size}"
            )
        if not map_range[1] > map_range[0]:
            raise ValueError(f"WorstBestGrid.map_range must be increasing, got {map_range}")
        self.num_cases = num_cases
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.thumbnail_size = thumbnail_size
        self.map_range = (float(map_range[0]), float(map_range[1]))
        self.alpha = alpha
        self.log_wandb = log_wandb
        self.pools: dict[tuple[str, str], dict[tuple[str, int], list[Entry]]] = {}
        self.written: list[Path] = []
        self._count = itertools.count()
        self._warned = False

    # -- collecting --------------------------------------------------------------------------

    def update(self, batch: dict[str, Any], outputs: dict[str, Tensor]) -> None:
        """Offers every image of a batch to its category's pools (thumbnails only if kept).

        Args:
            batch: an evaluation batch (``image``, ``mask``, ``label``, ``path``, ``dataset``,
                ``category``, optionally ``mask_size``); see :mod:`anomalyvfm.batch`.
            outputs: ``pred_score`` (B,) and ``anomaly_map`` (B, S, S).
        """
        scores = outputs["pred_score"].detach().float().reshape(-1).cpu().tolist()
        labels = batch["label"].reshape(-1).tolist()
        for i, (score, label) in enumerate(zip(scores, labels)):
            pools = self.pools.setdefault((batch["dataset"][i], batch["category"][i]), {})
            path = batch["path"][i]
            wanted = [
                key
                for key, sign in POOLS.items()
                if key[1] == int(label) and _enters(pools.get(key, []), sign * score, path, self)
            ]
            if wanted:
                case = self._thumbnail(batch, outputs, i, score, int(label))
                for key in wanted:
                    self._push(pools.setdefault(key, []), (POOLS[key] * score, path, case))

    def _push(self, heap: list[Entry], item: tuple[float, str, Case]) -> None:
        entry = (item[0], item[1], next(self._count), item[2])
        if len(heap) < self.num_cases:
            heapq.heappush(heap, entry)
        else:
            heapq.heappushpop(heap, entry)

    def _thumbnail(
        self, batch: dict[str, Any], outputs: dict[str, Tensor], i: int, score: float, label: int
    ) -> Case:
        t = (self.thumbnail_size, self.thumbnail_size)
        image = F.interpolate(batch["image"][i, None].float(), t, mode="bilinear", antialias=True)
        amap = outputs["anomaly_map"][i, None, None].detach().float()
        amap = F.interpolate(amap, t, mode="bilinear", antialias=True)[0, 0]
        mask = batch["mask"][i]
        if "mask_size" in batch:  # cut the mask out of the collate's padding
            h, w = (int(v) for v in batch["mask_size"][i])
            mask = mask[:h, :w]
        mask = (mask > 0.5).float()[None, None]
        # Max-pooling when shrinking keeps one-pixel defects visible in the thumbnail.
        small = mask.shape[-2] >= t[0] and mask.shape[-1] >= t[1]
        mask = F.adaptive_max_pool2d(mask, t) if small else F.interpolate(mask, t, mode="nearest")
        lo, hi = self.map_range
        return Case(
            score=score,
            label=label,
            path=str(batch["path"][i]),
            image=_to_uint8(image[0].permute(1, 2, 0)),
            mask=mask[0, 0].cpu().numpy() > 0.5,
            amap=_to_uint8((amap - lo) / (hi - lo)),
        )

    def selected(self) -> dict[tuple[str, str], dict[str, list[Case]]]:
        """``{(dataset, category): {"worst": cases, "best": cases}}``, anomalous first."""
        out: dict[tuple[str, str], dict[str, list[Case]]] = {}
        for key, pools in self.pools.items():
            out[key] = {}
            for half in ("worst", "best"):
                cases: list[Case] = []
                for label in (1, 0):
                    ranked = sorted(pools.get((half, label), []), key=lambda e: e[:2], reverse=True)
                    cases += [e[3] for e in ranked[: self.num_cases]]
                out[key][half] = cases
        return out

    def gather(self) -> None:
        """Merges the pools of every DDP rank into each rank's (no-op without a process group)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        world = torch.distributed.get_world_size()
        if world < 2:
            return
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, self.pools)
        self.pools = {}
        for pools in gathered:
            for key, heaps in pools.items():
                mine = self.pools.setdefault(key, {})
                for pool, entries in heaps.items():
                    for priority, path, _, case in entries:
                        self._push(mine.setdefault(pool, []), (priority, path, case))

    # -- Lightning hooks -----------------------------------------------------------------------

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pools, self.written = {}, []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(outputs, dict) or not {"pred_score", "anomaly_map"} <= set(outputs):
            if not self._warned:
                rank_zero_warn("WorstBestGrid: test_step returned no pred_score/anomaly_map")
                self._warned = True
            return
        self.update(batch, outputs)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.gather()  # every rank takes part; only rank 0 draws
        if trainer.is_global_zero:
            folder = self.output_dir or Path(trainer.log_dir or trainer.default_root_dir)
            self.save(folder if self.output_dir else folder / "worst_best", trainer.loggers)
        self.pools = {}

    def save(self, folder: Path, loggers: list[Any] | None = None) -> list[Path]:
        """Draws every category's grid to ``folder/<dataset>/<category>.png`` (and W&B)."""
        self.written = []
        for (dataset, category), halves in self.selected().items():
            title = f"{dataset} / {category}: worst (left) and best (right)"
            grid = render_grid(
                halves["worst"], halves["best"], self.thumbnail_size, title, self.alpha
            )
            path = folder / _safe(dataset) / f"{_safe(category)}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            grid.save(path)
            self.written.append(path)
            wandb_loggers = [lg for lg in loggers or [] if isinstance(lg, WandbLogger)]
            for logger in wandb_loggers if self.log_wandb else []:
                key = f"test/{dataset}/{category}/worst_best"
                logger.log_image(key=key, images=[grid], caption=[title])
        return self.written


def _enters(heap: list[Entry], priority: float, path: str, grid: WorstBestGrid) -> bool:
    return len(heap) < grid.num_cases or (priority, path) > heap[0][:2]


def _to_uint8(values: Tensor) -> np.ndarray:
    return (values.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "_"


def _heat(values: np.ndarray) -> np.ndarray:
    """uint8 map -> float RGB, a jet-like ramp (blue, cyan, yellow, red)."""
    v = values.astype(np.float32)[..., None] / 255.0
    return np.clip(1.5 - np.abs(4 * v - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)


def _tiles(case: Case, alpha: float) -> list[np.ndarray]:
    image = case.image.astype(np.float32) / 255.0
    truth = np.repeat(case.mask[..., None].astype(np.float32), 3, -1)
    overlay = (1 - alpha) * image + alpha * _heat(case.amap)
    overlay[mask_outline(case.mask)] = (0.0, 1.0, 0.0)
    return [image, truth, overlay]


def render_grid(
    worst: list[Case], best: list[Case], tile: int, title: str = "", alpha: float = 0.5
) -> Image.Image:
    """Worst cases left, best right; rows of image | ground truth | overlay, captioned.

    Returns:
        An RGB image ``6 tile + 8 GAP`` wide and ``GAP + 2 TEXT + rows (TEXT + tile + GAP)``
        high, ``rows = max(len(worst), len(best), 1)``.
    """
    rows = max(len(worst), len(best), 1)
    block = 3 * tile + 2 * GAP
    width, height = 2 * block + 4 * GAP, GAP + 2 * TEXT + rows * (TEXT + tile + GAP)
    canvas = np.ones((height, width, 3), np.float32)
    texts: list[tuple[int, int, str]] = [(GAP, GAP, title)]
    for b, (name, cases) in enumerate((("WORST", worst), ("BEST", best))):
        x0 = GAP + b * (block + 2 * GAP)
        texts.append((x0, GAP + TEXT, f"{name}: image | ground truth | anomaly map"))
        for r, case in enumerate(cases):
            y = GAP + 2 * TEXT + r * (TEXT + tile + GAP)
            kind = "anomalous" if case.label else "normal"
            where = "/".join(Path(case.path).parts[-2:])
            texts.append((x0, y, f"{kind} | score {case.score:.3f} | {where}"))
            for c, pixels in enumerate(_tiles(case, alpha)):
                x = x0 + c * (tile + GAP)
                canvas[y + TEXT : y + TEXT + tile, x : x + tile] = pixels
    picture = Image.fromarray((canvas * 255 + 0.5).astype(np.uint8))
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
    for x, y, text in texts:
        while text and draw.textlength(text, font=font) > block:  # clip to the block
            text = text[:-1]
        draw.text((x, y), text, fill=(0, 0, 0), font=font)
    return picture
