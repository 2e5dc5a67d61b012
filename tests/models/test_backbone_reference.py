"""The recipe backbones compute the features the reference reads, checked on tiny models.

* CLIP: the reference reads Hugging Face ``CLIPVisionModel.last_hidden_state`` (QuickGELU, no
  final LayerNorm); a tiny random HF model's weights, renamed to timm's QuickGELU CLIP ViT (by
  :mod:`anomalyvfm.convert`, which does so for the released models), give the same tokens
  through :class:`Backbone` with ``norm: false``.
* SigLIP 2 NaFlex: the reference feeds Hugging Face ``Siglip2VisionModel`` pre-patchified
  patches with their grid shape; a tiny random one, converted to timm's NaFlexVit, gives the same
  ``last_hidden_state`` and ``pooler_output`` through :class:`Backbone`. So does timm's own NaFlex
  path (patches with grid coordinates) on the same model.
* DINOv2 with registers and DINOv3: the reference loads Meta's original models (torch.hub) and
  reads ``forward_features``' ``x_norm_patchtokens`` and ``x_norm_clstoken``: the last block's
  tokens after the final LayerNorm, registers skipped. A tiny random Hugging Face model of each
  (``last_hidden_state`` is the same normalised sequence), its weights written in Meta's original
  layout and read through timm's own checkpoint filter, gives the same patch tokens and class
  token through :class:`Backbone` with ``norm: true`` (the recipe's).
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
DINOV2 = "vit_large_patch14_reg4_dinov2"
DINOV3 = "vit_large_patch16_dinov3"
# The normalisations the reference's transforms apply (OpenAI CLIP, SigLIP).
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
# The reference's DINOv2 / DINOv3 transforms normalise with the ImageNet mean and std.
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def hf_dino_blocks_to_original(
    hf: dict[str, Tensor], layers: str, mlp: tuple[str, str], norm: str
) -> dict[str, Tensor]:
    """The transformer blocks and final norm of a Hugging Face DINOv2 / DINOv3 model in Meta's
    original layout, the one the reference loads through torch.hub (``layers``: the Hugging Face
    block prefix, ``mlp``: its two MLP layer names, ``norm``: its final norm)."""
    out = {f"norm.{p}": hf[f"{norm}.{p}"] for p in ("weight", "bias")}
    depth = 1 + max(int(k[len(layers) :].split(".")[0]) for k in hf if k.startswith(layers))
    for i in range(depth):
        src, dst = f"{layers}{i}.", f"blocks.{i}."
        out[f"{dst}ls1.gamma"] = hf[f"{src}layer_scale1.lambda1"]
        out[f"{dst}ls2.gamma"] = hf[f"{src}layer_scale2.lambda1"]
        out[f"{dst}attn.qkv.weight"] = torch.cat(
            [hf[f"{src}attention.{n}_proj.weight"] for n in "qkv"]
        )
        if f"{src}attention.q_proj.bias" in hf:
            # Meta's fused qkv bias; DINOv3 keeps the key part at zero (HF: no key bias).
            q = hf[f"{src}attention.q_proj.bias"]
            k = hf.get(f"{src}attention.k_proj.bias", torch.zeros_like(q))
            out[f"{dst}attn.qkv.bias"] = torch.cat([q, k, hf[f"{src}attention.v_proj.bias"]])
        pairs = (
            ("attention.o_proj", "attn.proj"),
            ("norm1", "norm1"),
            ("norm2", "norm2"),
            (f"mlp.{mlp[0]}", "mlp.fc1"),
            (f"mlp.{mlp[1]}", "mlp.fc2"),
        )
        for p in ("weight", "bias"):
            for a, b in pairs:
                out[f"{dst}{b}.{p}"] = hf[f"{src}{a}.{p}"]
    return out


def hf_dinov2_to_original(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face ``Dinov2WithRegistersModel`` weights as Meta's ``dinov2_vit*_reg`` weights."""
    out = hf_dino_blocks_to_original(hf, "encoder.layer.", ("fc1", "fc2"), "layernorm")
    for p in ("weight", "bias"):
        out[f"patch_embed.proj.{p}"] = hf[f"embeddings.patch_embeddings.projection.{p}"]
    # The class token's position sits first in pos_embed; registers have none.
    out["pos_embed"] = hf["embeddings.position_embeddings"]
    out["cls_token"] = hf["embeddings.cls_token"]
    out["register_tokens"] = hf["embeddings.register_tokens"]
    out["mask_token"] = hf["embeddings.mask_token"].reshape(1, -1)
    return out


def hf_dinov3_to_original(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face ``DINOv3ViTModel`` weights as Meta's ``dinov3_vit*16`` weights."""
    out = hf_dino_blocks_to_original(hf, "model.layer.", ("up_proj", "down_proj"), "norm")
    for p in ("weight", "bias"):
        out[f"patch_embed.proj.{p}"] = hf[f"embeddings.patch_embeddings.{p}"]
    out["cls_token"] = hf["embeddings.cls_token"]
    out["storage_tokens"] = hf["embeddings.register_tokens"]
    out["mask_token"] = hf["embeddings.mask_token"].reshape(1, -1)
    return out


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

    names = (f"{CLIP}.openai", f"{NAFLEX}.v2_webli", f"{RADIO}.c_radio")
    for name in (*names, f"{DINOV2}.lvd142m", f"{DINOV3}.lvd1689m"):
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


def dino_features(
    name: str, path: Path, img_size: int, images: Tensor, norm: bool
) -> tuple[Tensor, Tensor]:
    """(B, N, C) patch tokens and the summary of the tiny ``name`` loaded from ``path``."""
    cfg = BackboneConfig(
        name, checkpoint_path=str(path), summary="cls", norm=norm, model_kwargs=dict(TINY_VIT)
    )
    bb = Backbone(cfg, img_size=img_size).eval()
    with torch.no_grad():
        out = bb(images)
    return out.patch_features.flatten(2).transpose(1, 2), out.summary


def assert_dino_reads_normalised_tokens(
    name: str, path: Path, img_size: int, images: Tensor, tokens: Tensor, num_patches: int
) -> None:
    """Our backbone with ``norm`` equals the reference's normalised ``tokens`` (class token
    first, then 4 registers, then the patches), and without ``norm`` it does not."""
    patches, summary = dino_features(name, path, img_size, images, norm=True)
    assert patches.shape == (2, num_patches, 32)
    torch.testing.assert_close(patches, tokens[:, 5:], atol=1e-5, rtol=1e-5)  # registers skipped
    torch.testing.assert_close(summary, tokens[:, 0], atol=1e-5, rtol=1e-5)
    other, other_summary = dino_features(name, path, img_size, images, norm=False)
    assert (other - tokens[:, 5:]).abs().max() > 1e-2
    assert (other_summary - tokens[:, 0]).abs().max() > 1e-2


def test_dinov2_reg_features_equal_hugging_face_normalised_tokens(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = transformers.Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=56,  # a 4 x 4 position grid (the real model's is 37 x 37, from 518 px)
        patch_size=14,
        num_register_tokens=4,
    )
    hf = perturbed(transformers.Dinov2WithRegistersModel(config))
    path = tmp_path / "dinov2_reg.safetensors"
    save_file(hf_dinov2_to_original(hf.state_dict()), path)

    # 84 px: the position grid upsampled 4 x 4 -> 6 x 6 (as 37 x 37 -> 48 x 48 at 672 px). Both
    # resize it to the token grid with antialiased bicubic (so does Meta's ``_reg`` models'
    # interpolation), timm once at load time, Hugging Face at each call.
    images = torch.rand(2, 3, 84, 84)
    with torch.no_grad():
        ref = hf(pixel_values=(images - IMAGENET_MEAN) / IMAGENET_STD).last_hidden_state
    assert_dino_reads_normalised_tokens(DINOV2, path, 84, images, ref, num_patches=36)


@pytest.mark.parametrize(
    ("name", "qv_bias"),
    [
        # The recipe's: no q/v biases. Meta's ViT-L is built with them; timm's filter says they
        # are all zero in its weights and drops them for this variant.
        (DINOV3, False),
        (f"{DINOV3}_qkvb", True),  # timm's variant that keeps them
    ],
)
def test_dinov3_features_equal_hugging_face_normalised_tokens(
    tmp_path: Path, name: str, qv_bias: bool
) -> None:
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = transformers.DINOv3ViTConfig(
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=16,
        num_register_tokens=4,
        query_bias=qv_bias,
        value_bias=qv_bias,
    )
    hf = perturbed(transformers.DINOv3ViTModel(config))
    path = tmp_path / "dinov3.safetensors"
    save_file(hf_dinov3_to_original(hf.state_dict()), path)

    # RoPE positions, no table to resize: any grid, here 3 x 5 (rows and columns apart).
    images = torch.rand(2, 3, 48, 80)
    with torch.no_grad():
        ref = hf(pixel_values=(images - IMAGENET_MEAN) / IMAGENET_STD).last_hidden_state
    assert_dino_reads_normalised_tokens(name, path, 64, images, ref, num_patches=15)


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
