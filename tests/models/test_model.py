"""Backbone wrapper, adapters, decoder and the full model."""

from __future__ import annotations

import pytest
import timm
import torch

from anomalyvfm.backbones.adapters import AdapterConfig, LowRankLinear, apply_adapters
from anomalyvfm.backbones.timm_backbone import Backbone, BackboneConfig
from anomalyvfm.models.anomalyvfm import AnomalyVFMModel
from anomalyvfm.models.decoder import Decoder, DecoderConfig
from tests.conftest import TINY_VIT
from tests.helpers import FAMILIES


def tiny(name: str, **kw) -> BackboneConfig:
    return BackboneConfig(name=name, model_kwargs=dict(TINY_VIT), **kw)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_backbone_facts_read_from_model(family: str) -> None:
    name = FAMILIES[family]
    bb = Backbone(tiny(name), img_size=112)
    ref = timm.create_model(name, pretrained=False, **TINY_VIT)
    embed = getattr(ref, "patch_embed", None) or ref.embeds  # NaFlexVit: embeds
    assert bb.patch_size == embed.patch_size[0]
    assert bb.num_prefix_tokens == ref.num_prefix_tokens
    assert torch.allclose(bb.mean.flatten(), torch.tensor(ref.pretrained_cfg["mean"]))
    size = 8 * bb.patch_size
    out = bb(torch.rand(2, 3, size, size))
    assert out.patch_features.shape == (2, 32, 8, 8)
    assert out.summary.shape == (2, bb.summary_dim)


def test_summary_kinds_on_registers_and_map_pooling() -> None:
    # DINOv3 (timm Eva) has 1 class + 4 register tokens; SigLIP 2 has none and pools with MAP.
    dinov3 = Backbone(tiny(FAMILIES["dinov3"]), img_size=64)
    assert (dinov3.summary_kind, dinov3.summary_dim, dinov3.num_reg_tokens) == ("cls", 32, 4)
    prefix = Backbone(tiny(FAMILIES["dinov3"], summary="prefix"), img_size=64)
    assert prefix.summary_dim == 5 * 32
    siglip = Backbone(tiny(FAMILIES["siglip2"]), img_size=64)
    assert siglip.summary_kind == "head"
    with pytest.raises(ValueError, match="no class token"):
        Backbone(tiny(FAMILIES["siglip2"], summary="cls"), img_size=64)


def test_any_multiple_of_patch_size_works_and_others_fail_clearly() -> None:
    bb = Backbone(tiny(FAMILIES["dinov2_reg"]), img_size=56)
    assert bb(torch.rand(1, 3, 70, 98)).patch_features.shape[-2:] == (5, 7)
    with pytest.raises(ValueError, match="not a multiple of the patch size 14"):
        bb(torch.rand(1, 3, 60, 60))


def test_multi_layer_features_concatenate() -> None:
    bb = Backbone(tiny(FAMILIES["dinov2_reg"], layers=[0, -1]), img_size=56)
    assert bb(torch.rand(1, 3, 56, 56)).patch_features.shape[1] == 64 == bb.feature_dim


def test_cnn_backbone_through_features_only() -> None:
    bb = Backbone(BackboneConfig(name="resnet18", model_kwargs={"out_indices": (2, 3)}), 64)
    out = bb(torch.rand(2, 3, 64, 64))
    assert out.patch_features.shape == (2, 128 + 256, 8, 8)
    assert bb.patch_size == 8 and bb.feature_dim == 384
    assert out.summary.shape == (2, 256)


def test_checkpoint_path_loads_local_weights(tmp_path) -> None:
    from safetensors.torch import save_file

    src = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, **TINY_VIT)
    save_file(src.state_dict(), tmp_path / "w.safetensors")
    torch.save(src.state_dict(), tmp_path / "w.pth")
    for file in ("w.safetensors", "w.pth"):
        bb = Backbone(tiny("vit_small_patch14_dinov2", checkpoint_path=str(tmp_path / file)), 56)
        for key, value in src.state_dict().items():
            assert torch.equal(bb.model.state_dict()[key], value), key
    with pytest.raises(FileNotFoundError, match="checkpoint_path .*missing.pth"):
        Backbone(tiny("vit_small_patch14_dinov2", checkpoint_path=str(tmp_path / "missing.pth")))


def test_offline_download_failure_names_checkpoint_path() -> None:
    with pytest.raises(RuntimeError, match="backbone.checkpoint_path"):
        Backbone(tiny("vit_small_patch14_dinov2.lvd142m", pretrained=True), 56)


@pytest.mark.parametrize("backend", ["native", "peft"])
@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_adapters_start_at_identity_and_train_only_themselves(backend: str, kind: str) -> None:
    torch.manual_seed(0)
    # CLIP: no LayerScale, whose 1e-5 init (RADIO, DINOv2/v3) would hide any adapter effect.
    bb = Backbone(tiny(FAMILIES["clip"]), img_size=56).eval()
    x = torch.rand(2, 3, 56, 56)
    before = bb(x)
    apply_adapters(bb.model, AdapterConfig(type=kind, rank=4, backend=backend))
    after = bb(x)
    torch.testing.assert_close(after.patch_features, before.patch_features, atol=1e-5, rtol=0)
    names = [n for n, p in bb.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or "magnitude" in n for n in names)
    assert not any(n.startswith("patch_embed") for n in names)
    for n, p in bb.model.named_parameters():
        if "lora_B" in n:
            # Large B: the update is scaled by alpha/rank and A starts tiny (std 0.01).
            torch.nn.init.normal_(p, std=100.0)
    assert (bb(x).patch_features - before.patch_features).abs().max() > 1e-2


def test_native_qv_adapter_leaves_key_slice_untouched() -> None:
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 48)
    for dora in (False, True):
        layer = LowRankLinear(base, [(0, 16), (32, 48)], rank=4, alpha=1.0, dora=dora)
        for p in layer.lora_B:
            torch.nn.init.normal_(p)
        x = torch.randn(3, 5, 16)
        y, y0 = layer(x), base(x)
        torch.testing.assert_close(y[..., 16:32], y0[..., 16:32])
        assert not torch.allclose(y[..., :16], y0[..., :16])
        # Against the merged-weight definition, computed explicitly.
        w = base.weight.detach().clone()
        for i, (a, b) in enumerate(layer.slices):
            merged = w[a:b] + layer.scaling * layer.lora_B[i] @ layer.lora_A[i]
            if dora:
                merged = layer.magnitude[i][:, None] * merged / merged.norm(dim=1, keepdim=True)
            w[a:b] = merged
        torch.testing.assert_close(
            y, torch.nn.functional.linear(x, w, base.bias), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize(
    ("kind", "expected"), [("dora", 9_510_912), ("lora", 9_437_184), ("none", 0)]
)
def test_vit_large_reference_adapter_parameter_counts(kind: str, expected: int) -> None:
    # docs/method.md: about 9.5M (DoRA) / 9.4M (LoRA) adapter parameters, 26M decoder for ViT-L.
    with torch.device("meta"):
        model = AnomalyVFMModel(
            BackboneConfig(name="vit_large_patch16_radio_v3.c_radio"),
            AdapterConfig(type=kind),
            DecoderConfig(),
            image_size=768,
        )
    report = model.parameter_report()
    assert report["backbone_trainable"] == expected
    assert 25.5e6 < report["decoder"] < 26.5e6
    assert report["image_head"] == 1024 + 1


@pytest.mark.parametrize(("patch", "size"), [(14, 56), (16, 64)])
@pytest.mark.parametrize("up", [1, 2])
def test_model_output_shapes(patch: int, size: int, up: int) -> None:
    name = FAMILIES["dinov2_reg"] if patch == 14 else FAMILIES["radio_v3"]
    model = AnomalyVFMModel(
        tiny(name), AdapterConfig(rank=4), DecoderConfig(num_up_blocks=up), size
    )
    out = model(torch.rand(2, 3, size, size))
    grid = size // patch
    assert out.anomaly_logits.shape == (2, 1, grid * 2**up, grid * 2**up)
    assert out.confidence_logits.shape == out.anomaly_logits.shape
    assert out.image_logits.shape == (2,)
    pred = model.predict(torch.rand(2, 3, size, size))
    assert pred.anomaly_map.shape == (2, size, size) and pred.pred_score.shape == (2,)
    assert float(pred.anomaly_map.min()) >= 0 and float(pred.anomaly_map.max()) <= 1


def test_decoder_widths_and_mean_filter() -> None:
    dec = Decoder(64, DecoderConfig(num_up_blocks=2))
    out = dec(torch.rand(1, 64, 6, 6))
    assert out.anomaly_logits.shape == (1, 1, 24, 24)
    assert dec.up_blocks[1][1].in_channels == 32 and dec.up_blocks[1][1].out_channels == 16
    model = AnomalyVFMModel(tiny(FAMILIES["radio_v3"]), AdapterConfig(rank=2), DecoderConfig(), 64)
    spike = torch.full((1, 1, 9, 9), -20.0)
    spike[0, 0, 4, 4] = 20.0
    from anomalyvfm.models.anomalyvfm import AnomalyVFMOutput

    amap = model.postprocess(AnomalyVFMOutput(spike, spike, torch.zeros(1)), (9, 9)).anomaly_map
    # A single saturated pixel spread by the 5x5 mean filter: 1/25 inside the window, 0 outside.
    assert amap[0, 4, 4].item() == pytest.approx(1 / 25, abs=1e-6)
    assert amap[0, 2, 2].item() == pytest.approx(1 / 25, abs=1e-6)
    assert amap[0, 1, 1].item() == pytest.approx(0.0, abs=1e-6)
