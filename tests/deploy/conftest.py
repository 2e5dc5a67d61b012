"""A tiny trained checkpoint and image folders shared by the detector tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import fit_args, one_torch_thread, run, write_mixed_images


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory: pytest.TempPathFactory, normal_dir: Path) -> Path:
    """A checkpoint of one real ``fit`` step on the tiny config (random backbone, kept whole)."""
    tmp = tmp_path_factory.mktemp("detector_fit")
    with one_torch_thread():
        run(*fit_args(tmp, normal_dir, "--trainer.max_steps=1"))
    return next(tmp.rglob("*.ckpt"))


@pytest.fixture(scope="session")
def mixed_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    write_mixed_images(root)
    return root
