"""Exact export of a trained detector to one ONNX or ``torch.export`` (``.pt2``) file.

The exported graph does everything between decoded pixels and decisions: resize to the model's
input size, backbone normalisation, the backbone with its adapters merged into plain weights,
decoder, image head, sigmoid, mean filter, image-score rule, upsampling of the map back to the
input size, and the image and pixel thresholds. Running it needs neither this package nor timm:
``onnxruntime`` alone for ``.onnx``, ``torch`` alone for ``.pt2``.

Input: float32 (B, 3, H, W) RGB in [0, 1], any batch size and any H, W (decoded 8-bit images:
``pixels.astype(float32) / 255`` transposed to channels first). Outputs, in order: ``score``
(B,) float32, ``label`` (B,) bool (``score > image_threshold``), ``anomaly_map`` (B, H, W)
float32 and ``mask`` (B, H, W) bool (``anomaly_map > pixel_threshold``).

The in-graph resize is torch's antialiased bilinear resize of float pixels, the counterpart of the
Pillow bilinear resize (in 8-bit) of the package's data path; the two differ by about one grey
level per pixel, so image scores move slightly (experiments/benchmarks/RESULTS.md measures how
much). Feeding images already at the model's size skips that difference altogether.

Metadata travels inside the file: ONNX ``metadata_props`` (ORT:
``session.get_modelmeta().custom_metadata_map``) and, for ``.pt2``, the extra file
``anomalyvfm_metadata.json`` (``torch.export.load(path, extra_files={name: ""})``). Each ONNX
value is JSON text (``json.loads`` it); the ``.pt2`` file holds one JSON object.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anomalyvfm import options
from anomalyvfm.backbones.adapters import LowRankLinear, merge_adapters_into
from anomalyvfm.models.anomalyvfm import AnomalyVFMModel

ExportFormat = Literal["onnx", "pt2"]
FORMATS: tuple[str, ...] = ("onnx", "pt2")
INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["score", "label", "anomaly_map", "mask"]
PT2_METADATA_FILE = "anomalyvfm_metadata.json"
# Antialiased Resize needs ONNX opset 18 or later.
ONNX_OPSET = 18
# A single .onnx file is one protobuf, which cannot exceed 2 GiB.
ONNX_MAX_BYTES = 2**31 - 1


def format_of(path: str | Path, format: str | None = None) -> str:
    """The export format for ``path``: ``format`` when given, else the file's suffix.

    Raises:
        ValueError: the suffix names no format (the message names ``path``).
    """
    if format is not None:
        return format
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"export {path}: cannot tell the format from the suffix; name the file *.onnx or "
            "*.pt2, or give the format (onnx, pt2)"
        )
    return suffix


def merge_adapters(model: AnomalyVFMModel) -> AnomalyVFMModel:
    """A deep copy of ``model`` in eval mode with its LoRA/DoRA adapters merged into the weights.

    The copy's backbone is a plain timm model (no adapter code; native or peft adapters alike)
    computing the same outputs up to float rounding; ``model`` itself is left unchanged. Modules
    compiled with ``nn.Module.compile`` run uncompiled in the copy, so it can be exported.
    """
    merged = copy.deepcopy(model).eval()
    for module in merged.modules():
        # nn.Module.compile stores the compiled call here; exporters need the plain forward.
        module._compiled_call_impl = None
    merge_adapters_into(merged.backbone.model)
    left = [n for n, m in merged.named_modules() if isinstance(m, LowRankLinear) or "lora_" in n]
    if left:
        raise ValueError(f"adapters left after merging: {left[:3]}")
    return merged.requires_grad_(False)


class DeployedDetector(nn.Module):
    """The whole inference path, from [0, 1] pixels of any size to thresholded decisions.

    Args:
        model: the trained model; its adapters are merged into a copy (``model`` is unchanged).
        image_threshold: image score above which an image is anomalous (as :class:`Detector`).
        pixel_threshold: map value above which a pixel is anomalous.

    ``forward(images)`` takes float32 (B, 3, H, W) RGB in [0, 1] (uint8 pixels divided by 255)
    and returns ``(score (B,), label (B,) bool, anomaly_map (B, H, W), mask (B, H, W) bool)``.
    """

    def __init__(
        self, model: AnomalyVFMModel, image_threshold: float = 0.5, pixel_threshold: float = 0.5
    ) -> None:
        super().__init__()
        self.model = merge_adapters(model).float()  # the graph computes in float32
        # Plain (NCHW) weights: channels-last ones are strided views that torch.export.save
        # stores awkwardly, and an exported graph gains nothing from the layout.
        self.model.decoder.channels_last = False
        self.model.to(memory_format=torch.contiguous_format)
        self.image_size = int(model.image_size)
        self.image_threshold = _threshold("image_threshold", image_threshold)
        self.pixel_threshold = _threshold("pixel_threshold", pixel_threshold)
        self.eval()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        height, width = images.shape[-2:]
        size = (self.image_size, self.image_size)
        # Always resized (an identity at the model size), so exported graphs have no shape branch.
        x = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
        out = self.model(x)
        # At the decoder's own resolution, then one unconditional upsampling to the input size.
        low = self.model.postprocess(out, out.anomaly_logits.shape[-2:])
        amap = F.interpolate(
            low.anomaly_map.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False
        ).squeeze(1)
        score = low.pred_score
        return score, score > self.image_threshold, amap, amap > self.pixel_threshold


def _threshold(option: str, value: Any) -> float:
    """A threshold (Python, numpy or 0-d tensor number) as a float in [0, 1]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = value
    options.in_unit_interval(option, number)
    return number


def detector_metadata(
    model: AnomalyVFMModel,
    image_threshold: float,
    pixel_threshold: float,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    """What an exported file records about itself; ``metadata`` adds keys (``calibrated``, ...).

    Raises:
        ValueError: ``metadata`` contradicts a fact of the graph (thresholds, image size, ...).
    """
    facts: dict[str, Any] = {
        "format": "anomalyvfm-detector",
        "inputs": "images: float32 (B, 3, H, W) RGB in [0, 1]",
        "outputs": "score (B,), label (B,) bool, anomaly_map (B, H, W), mask (B, H, W) bool",
        "image_threshold": _threshold("image_threshold", image_threshold),
        "pixel_threshold": _threshold("pixel_threshold", pixel_threshold),
        "image_size": int(model.image_size),
        "backbone": model.backbone.config.name,
        "image_score": model.image_score,
        "mean_filter_size": int(model.mean_filter_size),
        "mean_filter_padding": model.mean_filter_padding,
    }
    extra = dict(metadata or {})
    clashes = [k for k in extra if k in facts and extra[k] != facts[k]]
    if clashes:
        raise ValueError(
            f"export metadata {clashes} contradicts the exported graph; pass thresholds as "
            "image_threshold / pixel_threshold and leave the model's own facts out"
        )
    out = {"calibrated": False, **facts, **extra}
    try:
        json.dumps(out)
    except TypeError as err:
        raise ValueError(f"export metadata must be JSON-serialisable: {err}") from None
    return out


def export_detector(
    model: AnomalyVFMModel,
    path: str | Path,
    format: ExportFormat = "onnx",
    image_threshold: float = 0.5,
    pixel_threshold: float = 0.5,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Writes ``model`` as one self-contained detector file and returns its path.

    Args:
        model: the trained model (unchanged; adapters are merged into a copy).
        path: the file to write (parent folders are created).
        format: ``onnx`` (runs with onnxruntime alone; opset 18) or ``pt2``
            (``torch.export``; ``torch.export.load`` needs only torch).
        image_threshold: image decision threshold baked into the graph.
        pixel_threshold: pixel decision threshold baked into the graph.
        metadata: extra JSON-serialisable facts stored in the file (e.g. ``calibrated: True``
            when the thresholds were calibrated, the checkpoint's name).

    Both formats accept any batch size and any input height and width.

    Raises:
        ValueError: unknown ``format``, bad metadata, or an ONNX model over 2 GiB.
    """
    options.one_of("export format", format, FORMATS)
    meta = detector_metadata(model, image_threshold, pixel_threshold, metadata)
    # Traced on the CPU, so that the file holds no device: ONNX runs on any onnxruntime
    # provider, and a loaded .pt2 program moves with torch.export.passes.move_to_device_pass.
    detector = DeployedDetector(model, image_threshold, pixel_threshold).cpu()
    example = torch.rand(2, 3, detector.image_size, detector.image_size + 8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "pt2":
        program = torch.export.export(detector, (example,), dynamic_shapes=_dynamic_shapes())
        torch.export.save(program, path, extra_files={PT2_METADATA_FILE: json.dumps(meta)})
    else:
        _export_onnx(detector, example, path, meta)
    return path


def _dynamic_shapes() -> dict[str, dict[int, Any]]:
    dim = torch.export.Dim
    return {"images": {0: dim("batch"), 2: dim("height"), 3: dim("width")}}


def _export_onnx(detector: nn.Module, example: Tensor, path: Path, meta: dict[str, Any]) -> None:
    """The dynamo exporter (torch.export, then onnxscript), which itself falls back from
    non-strict to strict tracing. The TorchScript exporter (``dynamo=False``) is no fallback: it
    has no ONNX translation of the antialiased resize (``aten::_upsample_bilinear2d_aa``)."""
    import onnx

    program = torch.onnx.export(
        detector,
        (example,),
        dynamo=True,
        opset_version=ONNX_OPSET,
        input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES,
        dynamic_shapes=_dynamic_shapes(),
        optimize=True,
        verbose=False,
    )
    assert program is not None
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in meta.items()})
    size = proto.ByteSize()
    if size > ONNX_MAX_BYTES:
        raise ValueError(
            f"the ONNX model is {size / 2**30:.1f} GiB, over the 2 GiB limit of one .onnx "
            "file; export with format='pt2' instead"
        )
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, str(path))
