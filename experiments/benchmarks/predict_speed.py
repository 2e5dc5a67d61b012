"""Inference speed of :meth:`anomalyvfm.Detector.predict`: images per second, end to end.

The detector is built from a real checkpoint of one ``fit`` step on the tiny config (the tiny
2-block ViT of the recipe's architecture, random frozen backbone) unless ``--ckpt`` names one.
Each measurement scores ``--images`` in-memory uint8 images of ``--size`` px (so decoding from
disk is excluded; resizing to the model input and the maps at the input's own resolution are
included), after one warm-up batch. CPU in float32; on CUDA also bf16 (autocast), batch 32.

    python experiments/benchmarks/predict_speed.py
    python experiments/benchmarks/predict_speed.py --ckpt runs/.../last.ckpt --images 512
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def tiny_checkpoint(folder: Path) -> Path:
    """One ``fit`` step of tests/conf/anomalyvfm_tiny.yaml on a few generated normals."""
    from PIL import Image

    from anomalyvfm.cli import main

    normals = folder / "normals"
    normals.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)).save(
            normals / f"{i}.png"
        )
    main(
        [
            "fit",
            "--config",
            str(REPO / "tests" / "conf" / "anomalyvfm_tiny.yaml"),
            f"--data.normal_dir={normals}",
            f"--trainer.default_root_dir={folder / 'run'}",
            "--trainer.max_steps=1",
        ]
    )
    return next((folder / "run").rglob("*.ckpt"))


def measure(ckpt: Path, device: str, precision: str, images: list, batch: int) -> float:
    from anomalyvfm import Detector

    detector = Detector.from_checkpoint(ckpt, device, precision=precision)  # type: ignore[arg-type]
    detector.predict(images[:batch], batch_size=batch)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    detector.predict(images, batch_size=batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, help="checkpoint (default: a tiny one made here)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=256, help="input images' side in px")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt or tiny_checkpoint(Path(tmp))
        runs = [("cpu", "32")]
        if torch.cuda.is_available():
            runs += [("cuda", "32"), ("cuda", "bf16")]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
        print(f"{args.images} images of {args.size}x{args.size}, batch {args.batch_size}")
        for device, precision in runs:
            name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
            rate = measure(ckpt, device, precision, images, args.batch_size)
            print(f"{name:>24s} {precision:>5s}: {rate:8.1f} images/s")


if __name__ == "__main__":
    main()
