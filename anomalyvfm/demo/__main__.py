"""``python -m anomalyvfm.demo`` (``make demo``): the whole job in miniature.

1. Builds demo data: normal training images from scikit-image's bundled images and procedural
   textures; a zero-shot test set (other textures, defects of a family never used in training).
2. Trains through the real CLI with online noise-texture and cut-paste anomalies.
3. Evaluates zero-shot, prints the table, writes ``<out>/results.json`` and ``<out>/grid.png``.

Backbone: ``vit_small_patch14_dinov2.lvd142m`` with pretrained weights when they are cached or
the hub answers within seconds; otherwise a randomly initialised ResNet-18 trained in full
(a from-scratch ViT learns too slowly for a CPU demo). Between the two, when the ViT's weights
are out of reach but a converted ImageNet MobileNetV2 file is present (``--weights``, made by
``experiments/benchmarks/mobilenetv2_weights.py``), ``auto`` uses those real pretrained features
instead, frozen, with the decoder trained (``--backbone mobilenetv2`` asks for them). They give
higher and more meaningful numbers than the random CNN (experiments/benchmarks/RESULTS.md).
The table and the JSON say which backbone ran.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from anomalyvfm.demo.data import build_demo_data

PRETRAINED = "vit_small_patch14_dinov2.lvd142m"
CONFIG = Path(__file__).with_name("demo.yaml")
RANDOM_OVERRIDES = [
    "--model.backbone.name=resnet18",
    "--model.backbone.pretrained=false",
    "--model.backbone.model_kwargs={out_indices: [1, 2, 3]}",
    "--model.adapter.type=full",
    "--model.lr=1e-3",
    # From scratch, the reference focal alpha 0.25 weights the (dominant) background 3x over
    # defects, and the defect logits barely move within a CPU budget; alpha 0.9 weights defects
    # instead. The image head on a CNN's pooled features also learns slowly, so images are
    # scored by the maximum of the anomaly map.
    "--model.loss.focal_alpha=0.9",
    "--model.image_score=map_max",
    "--trainer.max_steps=200",
    "--data.image_size=128",
    "--data.batch_size=16",
]
# On top of RANDOM_OVERRIDES: ImageNet MobileNetV2 (a local weights file), frozen, decoder only.
MOBILENET_OVERRIDES = [
    "--model.backbone.name=mobilenetv2_100",
    "--model.backbone.model_kwargs={out_indices: [1, 2, 3], num_classes: 0}",
    "--model.adapter.type=none",
]
MOBILENET_WEIGHTS = "bench_output/mobilenetv2_100_imagenet.safetensors"


def pretrained_weights_available(name: str = PRETRAINED, timeout: float = 3.0) -> bool:
    """True when the weights are in the local Hugging Face cache or the hub answers in time."""
    from anomalyvfm.backbones.timm_models import WeightsUnavailableError, ensure_weights_reachable

    try:
        ensure_weights_reachable(name, pretrained=True, timeout=timeout)
    except WeightsUnavailableError:
        return False
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m anomalyvfm.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument(
        "--backbone", choices=["auto", "pretrained", "mobilenetv2", "random"], default="auto"
    )
    parser.add_argument(
        "--weights",
        default=MOBILENET_WEIGHTS,
        help="converted MobileNetV2 weights for --backbone mobilenetv2",
    )
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: config)")
    parser.add_argument("--num-train", type=int, default=400, help="normal training images")
    args = parser.parse_args(argv)
    start = time.time()
    out = Path(args.out)
    use_pretrained = args.backbone == "pretrained" or (
        args.backbone == "auto" and pretrained_weights_available()
    )
    mobilenet = not use_pretrained and (
        args.backbone == "mobilenetv2" or (args.backbone == "auto" and Path(args.weights).is_file())
    )
    if mobilenet and not Path(args.weights).is_file():
        raise FileNotFoundError(
            f"--weights {args.weights} does not exist; make it with "
            "experiments/benchmarks/mobilenetv2_weights.py"
        )
    size = 224 if use_pretrained else 128
    data = build_demo_data(out / "data", image_size=size, num_train=args.num_train)
    print(
        f"demo data in {data.root} ({data.num_train} normal training images, "
        f"{len(data.categories)} zero-shot test categories) [{time.time() - start:.0f}s]"
    )
    if use_pretrained:
        backbone = PRETRAINED + " (pretrained)"
    elif mobilenet:
        backbone = "mobilenetv2_100 (ImageNet weights, frozen)"
    else:
        backbone = "resnet18 (random init, offline fallback)"
    extra = {
        "backbone": backbone,
        "pretrained": use_pretrained or mobilenet,
        "image_score": "head" if use_pretrained else "map_max",
    }
    print(f"backbone: {backbone}; image score: {extra['image_score']}")
    cli_args = [
        "fit",
        "--config",
        str(CONFIG),
        f"--data.normal_dir={data.train_dir}",
        "--data.test_datasets+=MVTecAD",
        f"--data.test_datasets.root={data.test_root}",
        "--data.test_datasets.name=demo",
        f"--trainer.default_root_dir={out}",
        "--trainer.callbacks+=ResultsWriter",
        f"--trainer.callbacks.path={out / 'results.json'}",
        f"--trainer.callbacks.extra={json.dumps(extra)}",
    ]
    if not use_pretrained:
        cli_args += RANDOM_OVERRIDES
    if mobilenet:
        cli_args += [*MOBILENET_OVERRIDES, f"--model.backbone.checkpoint_path={args.weights}"]
    if args.steps:
        cli_args.append(f"--trainer.max_steps={args.steps}")
    from anomalyvfm.cli import main as cli_main

    cli = cli_main(cli_args)
    train_s = time.time() - start
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    save_grid(cli, out / "grid.png")
    print(
        f"backbone: {backbone}; image score: {extra['image_score']}; "
        f"total {time.time() - start:.0f}s (training {train_s:.0f}s)"
    )
    print(f"grid written to {out / 'grid.png'}")
    return cli.model.results


def save_grid(cli, path: Path, per_category: int = 3) -> None:
    """Image | ground truth | anomaly map for a few defective and good test images."""
    from anomalyvfm.visualization import anomaly_grid

    dataset = cli.datamodule.test_datasets[0]
    picks: list[int] = []
    for category in dataset.categories:
        idx = [i for i, r in enumerate(dataset.records) if r.category == category]
        bad = [i for i in idx if dataset.records[i].label == 1][:per_category]
        good = [i for i in idx if dataset.records[i].label == 0][:1]
        picks += bad + good
    samples = [dataset[i] for i in picks]
    images = torch.stack([s["image"] for s in samples])
    model = cli.model.eval()
    with torch.no_grad():
        maps = model(images.to(model.device)).anomaly_map.cpu()
    masks = torch.stack([s["mask"] for s in samples])
    if masks.shape[-2:] != maps.shape[-2:]:
        masks = torch.nn.functional.interpolate(masks[:, None], maps.shape[-2:])[:, 0]
    anomaly_grid(images, masks, maps).save(path)


if __name__ == "__main__":
    import sys

    from anomalyvfm.errors import run_command

    sys.exit(run_command("python -m anomalyvfm.demo", main))
