"""Does it teach? Train on MTD's defect-free tiles with each online generator, test on real defects.

The in-domain, DRAEM-style check. For each generator setting, the same model
is trained through the real CLI (``anomalyvfm.cli.main``) on a fixed split of the defect-free
Magnetic Tile images (``MT_Free``) with online synthetic anomalies, then tested on MTD: the
held-out defect-free tiles plus every defective tile (Blowhole, Break, Crack, Fray, Uneven).
Image AUROC, pixel AUROC and AUPRO@0.3 per generator go to a markdown table and a JSON file.

Backbones: ``--backbone random`` is the demo's offline recipe (``anomalyvfm/demo/__main__.py``:
a randomly initialised ResNet-18 trained in full); ``--backbone mobilenetv2`` loads real
ImageNet features (``--weights``, made by ``experiments/benchmarks/mobilenetv2_weights.py``),
frozen, and trains the decoder only. Both score an image by the maximum of its anomaly map.

Settings: ``noise_dtd``, ``cutpaste`` and ``mix``; each may carry the suffixes ``-plain`` (no
albumentations variation: the generators' ``augment: null``) and ``-colour`` (colour-faithful
anomalies off), e.g. ``mix-plain-colour``. ``--grid`` varies one factor at a time (``GRID``).

Examples::

    .venv/bin/python experiments/benchmarks/teach_mtd.py --steps 120 --image-size 128
    .venv/bin/python experiments/benchmarks/teach_mtd.py --backbone mobilenetv2 --grid \
        --steps 40 --image-size 96 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "anomalyvfm" / "demo" / "demo.yaml"
SHARED = REPO.parent / "shared" / "data"
CUTPASTE_MASKS = ("perlin", "box", "polygon")


SETTINGS = [
    f"{base}{variant}"
    for base in ("noise_dtd", "cutpaste", "mix")
    for variant in ("", "-plain", "-colour", "-plain-colour")
]
# One factor at a time from the defaults. Cut-paste from the image itself pastes gray on
# grayscale MTD tiles whatever the colour rule, so its "-colour" variant would repeat it.
GRID = [
    "noise_dtd", "noise_dtd-plain", "noise_dtd-colour",
    "cutpaste", "cutpaste-plain",
    "mix", "mix-plain", "mix-colour",
]  # fmt: skip


def generator_settings(dtd: str, variant: str = "") -> dict[str, list[dict[str, Any]]]:
    """``{setting name: list of (generator config, weight)}`` as YAML-ready dicts.

    ``variant``: ``-plain`` sets ``augment: null``, ``-colour`` sets ``color_faithful: false``.
    """
    extra: dict[str, Any] = {}
    if "-plain" in variant:
        extra["augment"] = None
    if "-colour" in variant:
        extra["color_faithful"] = False
    noise = {"class_path": "NoiseTextureGenerator", "init_args": {"texture_dir": dtd, **extra}}
    cutpaste = [
        {"class_path": "CutPasteGenerator", "init_args": {"mask_type": m, **extra}}
        for m in CUTPASTE_MASKS
    ]
    third = 1.0 / len(CUTPASTE_MASKS)
    return {
        "noise_dtd": [{"generator": noise, "weight": 1.0}],
        "cutpaste": [{"generator": g, "weight": third} for g in cutpaste],
        # Half noise textures, half cut-paste (its three mask types equally).
        "mix": [{"generator": noise, "weight": 0.5}]
        + [{"generator": g, "weight": 0.5 * third} for g in cutpaste],
    }


def link_normals(root: Path, ids: list[str], folder: Path) -> Path:
    """A folder of symlinks to the training tiles, so the data is read in place, not copied.

    ``MT_Free/Imgs`` also holds the (empty) PNG masks, which must not be read as images.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for image_id in ids:
        (folder / f"{image_id}.jpg").symlink_to(root / "MT_Free" / "Imgs" / f"{image_id}.jpg")
    return folder


def run_setting(
    name: str,
    entries: list[dict[str, Any]],
    args: argparse.Namespace,
    normals: Path,
    train_ids: list[str],
) -> dict[str, Any]:
    """Train and test one generator setting; returns its metrics and timings."""
    from anomalyvfm.cli import main as cli_main
    from anomalyvfm.demo.__main__ import MOBILENET_OVERRIDES, RANDOM_OVERRIDES

    backbone = list(RANDOM_OVERRIDES)
    if args.backbone == "mobilenetv2":
        backbone += [
            *MOBILENET_OVERRIDES,
            f"--model.backbone.checkpoint_path={args.weights}",
            f"--model.lr={args.lr}",
        ]
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "data": {
            "init_args": {
                "generators": [e["generator"] for e in entries],
                "generator_weights": [e["weight"] for e in entries],
                "test_datasets": [
                    {
                        "class_path": "MTD",
                        "init_args": {"root": str(args.root), "exclude_ids": train_ids},
                    }
                ],
            }
        }
    }
    (out / "run.yaml").write_text(json.dumps(config, indent=1))  # JSON is valid YAML
    cli_args = [
        "fit",
        f"--config={DEMO_CONFIG}",
        *backbone,
        f"--config={out / 'run.yaml'}",
        f"--data.normal_dir={normals}",
        f"--data.image_size={args.image_size}",
        f"--data.batch_size={args.batch_size}",
        f"--data.num_workers={args.num_workers}",
        f"--data.seed={args.seed}",
        f"--seed_everything={args.seed}",
        f"--trainer.max_steps={args.steps}",
        f"--trainer.default_root_dir={out}",
        "--trainer.callbacks+=ResultsWriter",
        f"--trainer.callbacks.path={out / 'results.json'}",
    ]
    start = time.time()
    # LightningCLI also reads sys.argv when given args; hide this script's own options from it.
    saved_argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = cli_main(cli_args)
    finally:
        sys.argv = saved_argv
    train_s = time.time() - start
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    total_s = time.time() - start
    metrics = cli.model.results["mtd"]["mtd"]
    print(f"[{name}] {metrics} train {train_s:.0f}s total {total_s:.0f}s", flush=True)
    return {
        "generators": entries,
        **{k: float(v) for k, v in metrics.items()},
        "train_s": round(train_s, 1),
        "total_s": round(total_s, 1),
    }


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """One row per generator setting, metrics in %."""
    lines = [
        "| generator | image AUROC | pixel AUROC | AUPRO@0.3 | wall (train+test) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        cells = [f"{100 * r[m]:.1f}" for m in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['total_s']:.0f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHARED / "mtd", help="MTD root")
    parser.add_argument("--dtd", type=Path, default=SHARED / "dtd", help="texture folder")
    parser.add_argument("--out", type=Path, default=REPO / "bench_output" / "teach_mtd")
    parser.add_argument("--settings", nargs="+", default=["noise_dtd", "cutpaste", "mix"])
    parser.add_argument("--grid", action="store_true", help="run every setting of GRID")
    parser.add_argument("--backbone", choices=["random", "mobilenetv2"], default="random")
    parser.add_argument(
        "--weights",
        type=Path,
        default=REPO / "bench_output" / "mobilenetv2_100_imagenet.safetensors",
        help="converted MobileNetV2 weights (experiments/benchmarks/mobilenetv2_weights.py)",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="decoder learning rate")
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps per setting")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--num-train", type=int, default=100, help="defect-free training tiles")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from anomalyvfm.data.datasets.mtd import mtd_free_split

    train_ids, test_ids = mtd_free_split(str(args.root), args.num_train, args.seed)
    normals = link_normals(args.root.resolve(), train_ids, args.out / "normals")
    print(f"MT_Free split: {len(train_ids)} train, {len(test_ids)} test (seed {args.seed})")
    names = GRID if args.grid else args.settings
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {SETTINGS}")
    recipe = {
        "random": "resnet18 random init, trained in full; image score = map max",
        "mobilenetv2": "mobilenetv2_100 ImageNet weights, frozen; decoder trained; "
        "image score = map max",
    }[args.backbone]
    results: dict[str, Any] = {}
    summary = {
        "recipe": recipe,
        "image_size": args.image_size,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "train_ids": train_ids,
        "test_normal_ids": test_ids,
        "results": results,
    }
    for name in names:
        base, _, variant = name.partition("-")
        entries = generator_settings(str(args.dtd), "-" + variant)[base]
        results[name] = run_setting(name, entries, args, normals, train_ids)
        # Written after every setting, so an interrupted run keeps what it measured.
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(markdown(results))
    print(f"summary written to {args.out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()
