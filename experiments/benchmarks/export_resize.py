"""How far the exported detector's in-graph resize moves scores from the package's data path.

    python experiments/benchmarks/export_resize.py                 # 30 MTD images, 224 and 672
    python experiments/benchmarks/export_resize.py --per-class 2 --sizes 224

The data path (training, ``test``, ``predict``) resizes decoded 8-bit pixels with Pillow's
bilinear filter in uint8, then divides by 255. An exported detector takes float pixels in [0, 1]
at any size and resizes them in the graph (torch's antialiased bilinear resize, ONNX ``Resize``
with ``antialias=1``): no uint8 rounding after the resize, and a slightly different filter. On
real MTD images (grey, about 200-400 px, so 224 mostly shrinks them and 672 enlarges them) this
measures, per image: the input difference after the two resizes (grey levels of 255), and the
difference of the image scores (``head``: sigmoid of the image head; ``map_max``: maximum of the
filtered map) and of the anomaly maps, for a tiny DINOv2 of random weights (layer scale set to 1
so every block acts) whose adapters are random too. The exported ONNX file is run with
onnxruntime on the full-size images as a user would; its outputs are compared with the data
path's (the map of the data path upsampled to the image size the same way).
A random tiny model is not a trained one: the figures show the size of the effect, not its exact
value for a given checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from anomalyvfm.backbones.adapters import AdapterConfig  # noqa: E402
from anomalyvfm.backbones.timm_backbone import BackboneConfig  # noqa: E402
from anomalyvfm.data.transforms import image_to_tensor  # noqa: E402
from anomalyvfm.deploy.export import export_detector, merge_adapters  # noqa: E402
from anomalyvfm.models.anomalyvfm import AnomalyVFMModel  # noqa: E402
from anomalyvfm.models.decoder import DecoderConfig  # noqa: E402
from data_synthesis.io import decode_image, image_to_float, list_images  # noqa: E402

MTD = REPO.parent / "shared" / "data" / "mtd"
TINY_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2}


def tiny_model(size: int) -> AnomalyVFMModel:
    torch.manual_seed(0)
    backbone = BackboneConfig(name="vit_small_patch14_dinov2", model_kwargs=dict(TINY_VIT))
    model = AnomalyVFMModel(backbone, AdapterConfig(type="dora", rank=4), DecoderConfig(), size)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name or "magnitude" in name:
                param.add_(torch.randn_like(param) * 0.3)
            elif name.endswith(".gamma"):
                param.fill_(1.0)
    return model.eval()


def mtd_images(per_class: int) -> list[Path]:
    picked: list[Path] = []
    for folder in sorted(p for p in MTD.iterdir() if p.is_dir()):
        files = [p for p in list_images(folder / "Imgs") if p.suffix.lower() == ".jpg"]
        picked += files[:: max(len(files) // per_class, 1)][:per_class]
    return picked


@torch.no_grad()
def scores(model: AnomalyVFMModel, x: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """(head score, map_max score, low-resolution map) of one (1, 3, S, S) input."""
    out = model(x)
    low = model.postprocess(out, out.anomaly_logits.shape[-2:]).anomaly_map
    return float(torch.sigmoid(out.image_logits)[0]), float(low.max()), low


def measure(size: int, files: list[Path], tmp: Path) -> dict[str, float]:
    import onnxruntime as ort

    model = merge_adapters(tiny_model(size))
    path = export_detector(model, tmp / f"detector_{size}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    keys = ("pixel", "pixel_max", "head", "map_max", "map", "onnx", "onnx_map", "head_value")
    rows: dict[str, list[float]] = {k: [] for k in keys}
    for file in files:
        pixels = decode_image(file)  # uint8 (H, W, 3)
        pil = image_to_tensor(pixels, size)[None]  # the data path: Pillow uint8 resize
        full = torch.from_numpy(image_to_float(pixels).transpose(2, 0, 1).copy())[None]
        graph = F.interpolate(
            full, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        head_a, max_a, low_a = scores(model, pil)
        head_b, max_b, low_b = scores(model, graph)
        rows["pixel"].append(float((pil - graph).abs().mean()) * 255)
        rows["pixel_max"].append(float((pil - graph).abs().max()) * 255)
        rows["head"].append(abs(head_a - head_b))
        rows["map_max"].append(abs(max_a - max_b))
        rows["map"].append(float((low_a - low_b).abs().max()))
        rows["head_value"].append(head_a)
        score, _, amap, _ = session.run(None, {"images": full.numpy()})
        ref_map = F.interpolate(low_a[:, None], size=full.shape[-2:], mode="bilinear")[:, 0]
        rows["onnx"].append(abs(float(score[0]) - head_a))
        rows["onnx_map"].append(float(np.abs(amap - ref_map.numpy()).max()))
    out = {"images": len(files), "image_size": size}
    out["mean_abs_pixel_diff_grey_levels"] = float(np.mean(rows["pixel"]))
    out["max_abs_pixel_diff_grey_levels"] = float(np.max(rows["pixel_max"]))
    for key in ("head", "map_max", "map", "onnx", "onnx_map"):
        out[f"{key}_max_abs_diff"] = float(np.max(rows[key]))
        out[f"{key}_mean_abs_diff"] = float(np.mean(rows[key]))
    out["head_score_spread_std"] = float(np.std(rows["head_value"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=5, help="images per MTD class (5)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 672])
    args = parser.parse_args()
    torch.set_num_threads(2)
    files = mtd_images(args.per_class)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            print(json.dumps(measure(size, files, Path(tmp))))


if __name__ == "__main__":
    main()
