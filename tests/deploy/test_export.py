"""Exported detectors: adapter merging, the in-graph inference path, ONNX and .pt2 files that run
without this package (and, for ONNX, without torch or timm) and match PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from anomalyvfm.backbones.adapters import AdapterConfig, LowRankLinear
from anomalyvfm.backbones.timm_backbone import Backbone, BackboneConfig
from anomalyvfm.deploy.export import (
    PT2_METADATA_FILE,
    DeployedDetector,
    export_detector,
    merge_adapters,
)
from anomalyvfm.models.anomalyvfm import AnomalyVFMModel
from anomalyvfm.models.decoder import DecoderConfig
from tests.conftest import REPO, TINY_VIT
from tests.helpers import FAMILIES

SIZE = 56  # tiny DINOv2, patch 14: a 4 x 4 token grid, an 8 x 8 anomaly map
# (batch, height, width): the model's own size, a larger and a smaller non-square one.
SHAPES = [(1, SIZE, SIZE), (3, 70, 45), (2, 40, 100)]

# Runs in a fresh interpreter outside the repository; importing the package, timm (and for
# ONNX torch) fails there, so a file that needed them could not run.
CHILD = """
import sys

BLOCKED = set(sys.argv[3].split(","))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None


sys.meta_path.insert(0, Blocker())
# The repository root goes (an editable install puts it there); its .venv, if any, stays.
sys.path = [p for p in sys.path if p not in ("", ".") and p.rstrip("/") != sys.argv[4]]
import json
import numpy as np

inputs = np.load(sys.argv[2])
results, meta = {}, {}
if sys.argv[1].endswith(".onnx"):
    import onnxruntime as ort

    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    for key in inputs.files:
        outs = session.run(None, {"images": inputs[key]})
        for name, out in zip(["score", "label", "anomaly_map", "mask"], outs):
            results[f"{key}/{name}"] = out
else:
    import torch

    extra = {"anomalyvfm_metadata.json": ""}
    module = torch.export.load(sys.argv[1], extra_files=extra).module()
    meta = json.loads(extra["anomalyvfm_metadata.json"])
    for key in inputs.files:
        outs = module(torch.from_numpy(inputs[key]))
        for name, out in zip(["score", "label", "anomaly_map", "mask"], outs):
            results[f"{key}/{name}"] = out.numpy()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
np.savez(sys.argv[2].replace(".npz", "_out.npz"), **results)
print(json.dumps(meta))
"""


def tiny_model(adapter: str, backend: str = "native", **kwargs) -> AnomalyVFMModel:
    """Tiny DINOv2 model whose adapters (B, DoRA magnitudes) and head are random, not neutral."""
    torch.manual_seed(0)
    backbone = BackboneConfig(name="vit_small_patch14_dinov2", model_kwargs=dict(TINY_VIT))
    model = AnomalyVFMModel(
        backbone,
        AdapterConfig(type=adapter, rank=4, backend=backend),
        DecoderConfig(),
        SIZE,
        **kwargs,
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name or "magnitude" in name:
                param.add_(torch.randn_like(param) * 0.3)
            elif name.endswith(".gamma"):
                param.fill_(1.0)  # DINOv2's layer scale starts at 1e-5: let the blocks act
    return model.eval()


def without_adapters(model: AnomalyVFMModel) -> AnomalyVFMModel:
    """A copy whose updates are zero: LoRA B = 0 (and for DoRA the base norms as magnitude)."""
    import copy

    plain = copy.deepcopy(model)
    with torch.no_grad():
        for module in plain.modules():
            if isinstance(module, LowRankLinear):
                for i, (a, b) in enumerate(module.slices):
                    module.lora_B[i].zero_()
                    if module.dora:
                        module.magnitude[i].copy_(module.base.weight[a:b].norm(dim=1))
    return plain


@pytest.mark.parametrize(
    ("adapter", "backend"),
    [("lora", "native"), ("dora", "native"), ("lora", "peft"), ("dora", "peft")],
)
def test_merged_adapters_give_the_same_outputs(adapter: str, backend: str) -> None:
    model = tiny_model(adapter, backend, image_score="mean")
    merged = merge_adapters(model)
    kinds = {type(m).__module__ for m in merged.modules()}
    assert not any(k.startswith(("peft", "anomalyvfm.backbones.adapters")) for k in kinds), kinds
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert any("lora" in n for n, _ in model.named_modules())  # the original keeps its adapters
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        raw, raw_merged = model(x), merged(x)
    ref, got = model.predict(x), merged.predict(x)
    torch.testing.assert_close(raw_merged.anomaly_logits, raw.anomaly_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(raw_merged.image_logits, raw.image_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.anomaly_map, ref.anomaly_map, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pred_score, ref.pred_score, atol=1e-5, rtol=0)
    if backend == "native":
        # The adapters matter: dropping them moves the logits far more than the tolerance.
        with torch.no_grad():
            base = without_adapters(model)(x)
        assert (base.anomaly_logits - raw.anomaly_logits).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("image_score", "padding"), [("head", "replicate"), ("map_max", "zeros"), ("mean", "replicate")]
)
def test_deployed_detector_equals_predict_at_the_model_size(image_score: str, padding: str) -> None:
    model = tiny_model("dora", image_score=image_score, mean_filter_padding=padding)
    x = torch.rand(3, 3, SIZE, SIZE)
    ref = model.predict(x)
    detector = DeployedDetector(model, image_threshold=0.5, pixel_threshold=0.5)
    with torch.no_grad():
        score, label, amap, mask = detector(x)
    torch.testing.assert_close(score, ref.pred_score, atol=1e-5, rtol=0)
    torch.testing.assert_close(amap, ref.anomaly_map, atol=1e-5, rtol=0)
    assert amap.dtype == torch.float32 and amap.shape == (3, SIZE, SIZE)
    assert torch.equal(label, score > 0.5) and torch.equal(mask, amap > 0.5)


def test_deployed_detector_resizes_any_input() -> None:
    model = tiny_model("lora")
    detector = DeployedDetector(model)
    big = torch.rand(2, 3, 3 * SIZE, 2 * SIZE)
    small = torch.nn.functional.interpolate(
        big, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False
    )
    with torch.no_grad():
        score, _, amap, _ = detector(big)
        ref_score, _, ref_map, _ = detector(small)
    assert amap.shape == (2, 3 * SIZE, 2 * SIZE)
    torch.testing.assert_close(score, ref_score, atol=1e-6, rtol=0)
    up = torch.nn.functional.interpolate(ref_map[:, None], size=amap.shape[-2:], mode="bilinear")
    torch.testing.assert_close(amap, up[:, 0], atol=1e-6, rtol=0)


def run_exported(path: Path, inputs: dict[str, np.ndarray], blocked: str) -> tuple[dict, dict]:
    """Runs ``path`` on ``inputs`` in a subprocess outside the repo; (outputs, metadata)."""
    npz = path.parent / "inputs.npz"
    np.savez(npz, **inputs)
    script = path.parent / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(script), str(path), str(npz), blocked, str(REPO)],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(str(npz).replace(".npz", "_out.npz"))
    return {k: out[k] for k in out.files}, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("adapter", "fmt", "blocked"),
    [
        ("lora", "onnx", "anomalyvfm,timm,peft,data_synthesis,tests,torch"),
        ("dora", "onnx", "anomalyvfm,timm,peft,data_synthesis,tests,torch"),
        ("dora", "pt2", "anomalyvfm,timm,peft,data_synthesis,tests"),
    ],
)
def test_exported_file_matches_pytorch_without_the_package(
    adapter: str, fmt: str, blocked: str, tmp_path: Path
) -> None:
    model = tiny_model(adapter, image_score="mean", mean_filter_padding="zeros")
    rng = np.random.default_rng(1)
    inputs = {
        f"b{b}_{h}x{w}": rng.uniform(0, 1, (b, 3, h, w)).astype(np.float32) for b, h, w in SHAPES
    }
    # Thresholds at the medians of PyTorch's outputs, so labels and masks hold both values.
    with torch.no_grad():
        _, _, amap, _ = DeployedDetector(model)(torch.from_numpy(inputs["b3_70x45"]))
        scores = torch.cat(
            [DeployedDetector(model)(torch.from_numpy(x))[0] for x in inputs.values()]
        )
    image_thr, pixel_thr = float(scores.median()), float(amap.median())
    detector = DeployedDetector(model, image_thr, pixel_thr)
    path = export_detector(
        model,
        tmp_path / f"detector.{fmt}",
        format=fmt,  # type: ignore[arg-type]
        image_threshold=np.float32(image_thr),  # calibration may give numpy or torch numbers
        pixel_threshold=amap.median(),
        metadata={"calibrated": True, "checkpoint": "tiny.ckpt"},
    )
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]  # one file
    if fmt == "onnx":
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        assert proto.opset_import[0].version >= 18
    outs, meta = run_exported(path, inputs, blocked)
    assert meta["image_threshold"] == image_thr and meta["pixel_threshold"] == pixel_thr
    assert meta["calibrated"] is True and meta["checkpoint"] == "tiny.ckpt"
    assert meta["image_size"] == SIZE and meta["backbone"] == "vit_small_patch14_dinov2"
    labels, masks = [], []
    for key, x in inputs.items():
        with torch.no_grad():
            ref_score, _, ref_map, _ = detector(torch.from_numpy(x))
        score, label = outs[f"{key}/score"], outs[f"{key}/label"]
        amap, mask = outs[f"{key}/anomaly_map"], outs[f"{key}/mask"]
        assert amap.shape == x.shape[:1] + x.shape[2:] and amap.dtype == np.float32
        np.testing.assert_allclose(score, ref_score.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(amap, ref_map.numpy(), atol=1e-4, rtol=0)
        assert label.dtype == np.bool_ and mask.dtype == np.bool_
        np.testing.assert_array_equal(label, score > np.float32(image_thr))
        np.testing.assert_array_equal(mask, amap > np.float32(pixel_thr))
        labels.append(label)
        masks.append(mask.ravel())
    assert 0 < np.concatenate(labels).mean() < 1 and 0 < np.concatenate(masks).mean() < 1


def test_export_refuses_bad_format_and_contradicting_metadata(tmp_path: Path) -> None:
    model = tiny_model("lora")
    with pytest.raises(ValueError, match="export format must be one of onnx, pt2"):
        export_detector(model, tmp_path / "d.bin", format="tflite")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\['image_size'\] contradicts"):
        export_detector(model, tmp_path / "d.onnx", metadata={"image_size": 999})
    with pytest.raises(ValueError, match=r"pixel_threshold must be a number in \[0, 1\]; got 1.5"):
        export_detector(model, tmp_path / "d.onnx", pixel_threshold=1.5)
    with pytest.raises(ValueError, match="must be JSON-serialisable"):
        export_detector(model, tmp_path / "d.onnx", metadata={"when": object()})
    assert not list(tmp_path.iterdir())


def test_pt2_metadata_file_name_is_documented() -> None:
    # The README's reading example names the extra file; keep the two in step.
    assert PT2_METADATA_FILE in (REPO / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_backbone_family_exports_to_onnx(family: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    name = FAMILIES[family]
    torch.manual_seed(0)
    backbone = BackboneConfig(name=name, model_kwargs=dict(TINY_VIT))
    size = 4 * Backbone(backbone).patch_size
    model = AnomalyVFMModel(backbone, AdapterConfig(type="dora", rank=4), DecoderConfig(), size)
    path = export_detector(model.eval(), tmp_path / "detector.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    detector = DeployedDetector(model)
    for batch, height, width in [(1, 50, 70), (2, 90, 90)]:
        x = torch.rand(batch, 3, height, width)
        score, _, amap, _ = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            ref_score, _, ref_map, _ = detector(x)
        np.testing.assert_allclose(score, ref_score.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(amap, ref_map.numpy(), atol=1e-4, rtol=0)
