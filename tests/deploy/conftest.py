"""A tiny trained checkpoint and image folders shared by the detector tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import fit_args, one_torch_thread, run


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory: pytest.TempPathFactory, normal_dir: Path) -> Path:
    """A checkpoint of one real ``fit`` step on the tiny config (random backbone, kept whole)."""
    tmp = tmp_path_factory.mktemp("detector_fit")
    with one_torch_thread():
        run(*fit_args(tmp, normal_dir, "--trainer.max_steps=1"))
    return next(tmp.rglob("*.ckpt"))


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


@pytest.fixture(scope="session")
def mixed_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    write_mixed_images(root)
    return root
