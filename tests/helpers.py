"""Helpers that several test modules share: the tiny CLI config and runs, the tiny model, data
writers, subprocess environments and a recording callback.

Test modules import from here (or take fixtures from ``conftest.py``), never from each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import yaml
from PIL import Image

from anomalyvfm.backbones.adapters import AdapterConfig
from anomalyvfm.backbones.timm_backbone import BackboneConfig
from anomalyvfm.cli import main
from anomalyvfm.models.decoder import DecoderConfig
from anomalyvfm.tasks import AnomalyVFM
from tests.conftest import REPO, TINY_VIT

# --- The command line on the tiny config -----------------------------------------------------

TINY = str(REPO / "tests" / "conf" / "anomalyvfm_tiny.yaml")


def run(*args: str):
    """Runs the CLI in-process (same code path as the console script) and returns it."""
    return main(list(args))


def fit_args(tmp: Path, normal_dir: Path, *extra: str) -> list[str]:
    """``fit`` on the tiny config with normals from ``normal_dir``, outputs under ``tmp``."""
    return [
        "fit",
        "--config",
        TINY,
        f"--data.normal_dir={normal_dir}",
        f"--trainer.default_root_dir={tmp}",
        *extra,
    ]


def tiny_test(tmp: Path, mvtec_root: Path, *extra: str):
    """The real CLI: untrained tiny model on two datasets (MVTec fixture, and its tile alone)."""
    return run(
        "test",
        "--config",
        TINY,
        f"--trainer.default_root_dir={tmp}",
        "--trainer.callbacks+=ResultsWriter",
        f"--trainer.callbacks.path={tmp / 'out' / 'results.json'}",
        "--data.test_datasets+=MVTecAD",
        f"--data.test_datasets.root={mvtec_root}",
        "--data.test_datasets+=MVTecAD",
        f"--data.test_datasets.root={mvtec_root}",
        "--data.test_datasets.name=tile_only",
        "--data.test_datasets.categories=[tile]",
        *extra,
    )


def offline_wandb_logger(tmp: Path) -> str:
    """The ``--trainer.logger`` argument of an offline W&B run saved under ``tmp/runs``."""
    logger = {
        "class_path": "anomalyvfm.loggers.WandbLogger",
        "init_args": {"save_dir": str(tmp / "runs"), "project": "t", "offline": True},
    }
    return f"--trainer.logger={yaml.safe_dump(logger)}"


class RecordSamples(pl.Callback):
    """Writes ``rank<r>.jsonl``: one line per training batch with its step and sample indices,
    plus ``rank<r>.json`` at the end with the world size and accumulation actually used.

    Named by class path (``tests.helpers.RecordSamples``) in CLI subprocesses."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def _path(self, trainer: pl.Trainer, suffix: str) -> Path:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        return self.dirpath / f"rank{trainer.global_rank}{suffix}"

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        record = {"step": trainer.global_step, "index": batch["index"].tolist()}
        with self._path(trainer, ".jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        info = {"world_size": trainer.world_size, "accumulate": trainer.accumulate_grad_batches}
        self._path(trainer, ".json").write_text(json.dumps(info))


class DumpTestOutputs(pl.Callback):
    """Saves every test batch's paths, image scores and low-resolution maps (``test_step``'s
    ``pred_score`` and ``low_map``) to ``path`` (``torch.save``) when the test ends.

    Named by class path (``tests.helpers.DumpTestOutputs``) in CLI subprocesses."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.rows: dict[str, Any] = {"path": [], "pred_score": [], "low_map": []}

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.rows["path"] += list(batch["path"])
        self.rows["pred_score"] += list(outputs["pred_score"].float().cpu())
        self.rows["low_map"] += list(outputs["low_map"].float().cpu())

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.rows, self.path)


# --- Models ----------------------------------------------------------------------------------

# One timm model name per backbone family the recipe configs use (built tiny with TINY_VIT).
FAMILIES = {
    "radio_v3": "vit_large_patch16_radio_v3.c_radio",
    "radio_v4": "vit_so400m_patch16_radio_v4.c_radio",
    "dinov2_reg": "vit_large_patch14_reg4_dinov2.lvd142m",
    "dinov3": "vit_large_patch16_dinov3.lvd1689m",
    "clip": "vit_large_patch14_clip_quickgelu_336.openai",
    "siglip2": "naflexvit_so400m_patch16_siglip.v2_webli",
}


def tiny_task(image_size: int) -> AnomalyVFM:
    """The tiny model of tests/conf/anomalyvfm_tiny.yaml (2-block ViT, random weights)."""
    return AnomalyVFM(
        backbone=BackboneConfig(name="vit_small_patch14_dinov2", model_kwargs=dict(TINY_VIT)),
        adapter=AdapterConfig(type="dora", rank=4),
        decoder=DecoderConfig(num_up_blocks=1),
        image_size=image_size,
    )


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Runs the block with one intra-op thread, then restores the setting.

    The tiny model's operations are far too small to gain from intra-op threads, and on a busy
    machine the threads' spin-waiting doubled the evaluation's time (measured: 36 s -> 18 s).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- Data ------------------------------------------------------------------------------------


def write_layout(root: Path, n: int = 4, size: int = 32, mask_suffix: bool = False) -> Path:
    """A dataset in the reference layout: n pairs, the anomaly a bright square under its mask."""
    rng = np.random.default_rng(1)
    for sub in ("train/ok", "train/bad", "ground_truth/bad"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        normal = (rng.uniform(0.2, 0.5, (size, size, 3)) * 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[4 : 4 + 6 + i, 8:20] = 255
        bad = normal.copy()
        bad[mask > 0] = 250
        Image.fromarray(normal).save(root / f"train/ok/{i:03d}.png")
        Image.fromarray(bad).save(root / f"train/bad/{i:03d}.png")
        stem = f"{i:03d}_mask" if mask_suffix and i % 2 else f"{i:03d}"
        Image.fromarray(mask).save(root / f"ground_truth/bad/{stem}.png")
    return root


def write_mixed_images(root: Path) -> list[Path]:
    """Images of several sizes and encodings: RGB, grey, RGBA, 16-bit grey, JPEG, a sub-folder."""
    rng = np.random.default_rng(3)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    arrays = {
        "rgb.png": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        "grey.png": rng.integers(0, 256, (40, 70), dtype=np.uint8),
        "alpha.png": rng.integers(0, 256, (50, 50, 4), dtype=np.uint8),
        "deep.png": rng.integers(0, 65536, (33, 20), dtype=np.uint16),
        "sub/photo.jpg": rng.integers(0, 256, (90, 120, 3), dtype=np.uint8),
    }
    paths = []
    for name, array in arrays.items():
        Image.fromarray(array).save(root / name)
        paths.append(root / name)
    return paths


# --- Subprocesses without network --------------------------------------------------------------

# A host that never resolves (.invalid is reserved for that).
DNS_FAILURE = "http://does-not-exist.invalid"
_PROXIES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a server that accepts connections and never replies."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def child_env(tmp: Path, offline: bool = False, **extra: str) -> dict[str, str]:
    """Environment of a subprocess with empty weight caches; HF_HUB_OFFLINE only if asked."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in _PROXIES and k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        HF_HOME=str(tmp / "hf"),
        HF_HUB_CACHE=str(tmp / "hf" / "hub"),
        TORCH_HOME=str(tmp / "torch"),
        CUDA_VISIBLE_DEVICES="",
        WANDB_MODE="disabled",
    )
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env
