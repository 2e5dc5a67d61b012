"""The recipe backbones compute the features the reference reads, checked on tiny models.

* CLIP: the reference reads Hugging Face ``CLIPVisionModel.last_hidden_state`` (QuickGELU, no
  final LayerNorm); a tiny random HF model's weights, renamed to timm's QuickGELU CLIP ViT (by
  :mod:`anomalyvfm.convert`, which does so for the released models), give the same tokens
  through :class:`Backbone` with ``norm: false``.
* SigLIP 2 NaFlex: the reference feeds Hugging Face ``Siglip2VisionModel`` pre-patchified
  patches with their grid shape; a tiny random one, converted to timm's NaFlexVit, gives the same
  ``last_hidden_state`` and ``pooler_output`` through :class:`Backbone`. So does timm's own NaFlex
  path (patches with grid coordinates) on the same model.
* RADIO: the reference's image head reads the first 3 prefix tokens; ``summary_tokens: 3``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import Tensor

from anomalyvfm.backbones.timm_backbone import Backbone, BackboneConfig
from anomalyvfm.convert import transformers_clip_to_timm, transformers_siglip2_to_timm
from tests.conftest import TINY_VIT

CLIP = "vit_large_patch14_clip_quickgelu_336"
NAFLEX = "naflexvit_so400m_patch16_siglip"
RADIO = "vit_large_patch16_radio_v3"
# The normalisations the reference's transforms apply (OpenAI CLIP, SigLIP).
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def patchify(x: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, N, p*p*C): patches row-major over the grid, each flattened as (row,
    col, channel), the reference's SigLIP 2 input."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in eval mode with every weight, norms included, moved off its initial value."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_timm_names_of_the_recipe_backbones_exist() -> None:
    from timm.models import get_pretrained_cfg

    for name in (f"{CLIP}.openai", f"{NAFLEX}.v2_webli", f"{RADIO}.c_radio"):
        assert get_pretrained_cfg(name) is not None, name
    # timm's C-RADIOv3 splits RADIO's 8 leading tokens into 1 class + 7 register tokens.
    radio = timm.create_model(RADIO, pretrained=False, **TINY_VIT)
    assert (radio.cls_token.shape[1], radio.reg_token.shape[1]) == (1, 7)


def test_clip_features_equal_hugging_face_last_hidden_state(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = transformers.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=56,
        patch_size=14,
        hidden_act="quick_gelu",
    )
    hf = perturbed(transformers.CLIPVisionModel(config))
    path = tmp_path / "clip.safetensors"
    save_file(transformers_clip_to_timm(hf.state_dict()), path)

    images = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        ref = hf(pixel_values=(images - CLIP_MEAN) / CLIP_STD).last_hidden_state

    def features(name: str, norm: bool) -> tuple[Tensor, Tensor]:
        kwargs = dict(TINY_VIT, num_classes=0)
        cfg = BackboneConfig(
            name, checkpoint_path=str(path), summary="cls", norm=norm, model_kwargs=kwargs
        )
        with torch.no_grad():
            out = Backbone(cfg, img_size=56).eval()(images)
        return out.patch_features.flatten(2).transpose(1, 2), out.summary

    patches, summary = features(CLIP, norm=False)
    torch.testing.assert_close(patches, ref[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(summary, ref[:, 0], atol=1e-5, rtol=1e-5)
    # The final norm, or plain GELU in place of QuickGELU, gives other features.
    for name, norm in ((CLIP, True), ("vit_large_patch14_clip_336", False)):
        other, _ = features(name, norm)
        assert (other - ref[:, 1:]).abs().max() > 1e-2, (name, norm)


def test_naflex_siglip_equals_timm_naflex_path_on_patchified_input() -> None:
    torch.manual_seed(0)
    cfg = BackboneConfig(NAFLEX, model_kwargs=dict(TINY_VIT))
    bb = Backbone(cfg, img_size=64).eval()
    assert (bb.patch_size, bb.num_prefix_tokens, bb.summary_kind) == (16, 0, "head")
    images = torch.rand(2, 3, 48, 80)  # a 3 x 5 grid of patches
    with torch.no_grad():
        out = bb(images)
    assert out.patch_features.shape == (2, 32, 3, 5)

    # The reference's input: patches with their (y, x) grid positions, all valid.
    gh, gw = 3, 5
    patches = patchify((images - 0.5) / 0.5, 16)
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    coord = torch.stack([ys.flatten(), xs.flatten()], -1).expand(2, -1, -1)
    valid = torch.ones(2, gh * gw, dtype=torch.bool)
    model = bb.model
    with torch.no_grad():
        feats = model.forward_features(patches, patch_coord=coord, patch_valid=valid)
        pooled = model.forward_head(feats["patches"], pre_logits=True, patch_valid=valid)
    tokens = out.patch_features.flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, feats["patches"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.summary, pooled, atol=1e-5, rtol=1e-5)
    assert (out.summary[0] - out.summary[1]).abs().max() > 1e-3  # per image, not constant


def test_naflex_siglip_equals_hugging_face_siglip2(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = transformers.Siglip2VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_patches=256,  # the real model's 16 x 16 position grid, resized to each input's grid
        patch_size=16,
    )
    hf = perturbed(transformers.Siglip2VisionModel(config))
    path = tmp_path / "siglip2.safetensors"
    save_file(transformers_siglip2_to_timm(hf.state_dict()), path)
    kwargs = dict(TINY_VIT, mlp_ratio=2.0)
    cfg = BackboneConfig(NAFLEX, checkpoint_path=str(path), model_kwargs=kwargs)
    bb = Backbone(cfg, img_size=64).eval()

    # Position grid upsampled in both directions (as at 768 px: 16 x 16 -> 48 x 48).
    images = torch.rand(2, 3, 288, 352)
    with torch.no_grad():
        out = bb(images)
        ref = hf(
            pixel_values=patchify((images - 0.5) / 0.5, 16),
            pixel_attention_mask=torch.ones(2, 18 * 22, dtype=torch.long),
            spatial_shapes=torch.tensor([[18, 22], [18, 22]]),
        )
    tokens = out.patch_features.flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, ref.last_hidden_state, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.summary, ref.pooler_output, atol=1e-4, rtol=1e-4)


def test_radio_summary_reads_the_first_k_prefix_tokens() -> None:
    torch.manual_seed(0)
    cfg = BackboneConfig(RADIO, summary="prefix", summary_tokens=3, model_kwargs=dict(TINY_VIT))
    bb = Backbone(cfg, img_size=64).eval()
    assert (bb.num_prefix_tokens, bb.summary_dim) == (8, 3 * 32)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = bb(images)
        # RADIO has no final norm: forward_features' tokens are the last block's output.
        tokens = bb.model.forward_features(bb.normalize(images))
    torch.testing.assert_close(out.summary, tokens[:, :3].flatten(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        out.patch_features.flatten(2).transpose(1, 2), tokens[:, 8:], atol=1e-5, rtol=1e-5
    )
    cls = Backbone(BackboneConfig(RADIO, summary="cls", model_kwargs=dict(TINY_VIT)), 64).eval()
    assert cls.summary_dim == 32


@pytest.mark.parametrize(
    ("summary", "k", "message"),
    [
        (
            "cls",
            3,
            r"summary_tokens=3 out of range .* 'cls' has 1 token\(s\) .*'prefix' for up to 8",
        ),
        ("prefix", 9, r"summary_tokens=9 out of range .* 'prefix' has 8 token\(s\) \(use 1..8\)"),
        ("head", 1, r"summary_tokens=1 needs summary cls or prefix"),
    ],
)
def test_summary_tokens_out_of_range_is_named(summary: str, k: int, message: str) -> None:
    cfg = BackboneConfig(RADIO, summary=summary, summary_tokens=k, model_kwargs=dict(TINY_VIT))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model.backbone." + message):
        Backbone(cfg, img_size=64)
    with pytest.raises(ValueError, match="model.backbone.summary_tokens must be a positive"):
        BackboneConfig(RADIO, summary_tokens=0)
