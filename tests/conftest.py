"""Shared fixtures. Tests run on CPU, offline, with W&B disabled unless a test enables it."""

from __future__ import annotations

import os
from pathlib import Path

# huggingface_hub reads this at import time (timm imports it), so set it before any import:
# without it a download attempt retries for ~45 s before failing.
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
from PIL import Image

from tests.data.mvtec import data as mvtec_data

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2}


@pytest.fixture(autouse=True)
def _offline_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", os.environ.get("ANOMALYVFM_TEST_WANDB_MODE", "disabled"))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MVTec-AD-layout dataset with two categories."""
    return mvtec_data.write(tmp_path_factory.mktemp("mvtec"))


@pytest.fixture(scope="session")
def normal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 8 small normal RGB images."""
    root = tmp_path_factory.mktemp("normals")
    rng = np.random.default_rng(0)
    for i in range(8):
        img = rng.uniform(0.3, 0.7, (64, 64, 3))
        img = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"{i:02d}.png")
    return root
