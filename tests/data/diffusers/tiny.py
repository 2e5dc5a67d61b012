"""Builds tiny, randomly initialised diffusers pipelines offline (run as a script or import).

``write_inpaint(root)`` saves a ``StableDiffusionInpaintPipeline``, ``write_text2img(root)`` a
``StableDiffusionPipeline`` and ``write_flux(root)`` a ``FluxPipeline`` (the architecture of
FLUX.1-Krea-dev: FLUX transformer, 16-channel-packed VAE latents, CLIP + T5 text encoders,
flow-matching scheduler); all are a few hundred kB, load back by local path through
``AutoPipelineForInpainting`` / ``AutoPipelineForText2Image`` (FLUX: ``FluxInpaintPipeline`` /
``FluxPipeline``) and run 2 steps at 32-64 px on CPU in well under a second. Pixels are
meaningless; shapes, files and code paths are real. The CLIP tokenizer is a byte-level BPE whose
vocabulary is the 256 byte symbols (plain and word-final), the two special tokens and a handful of
merges; the T5 tokenizer is a unigram model over single characters (plus word-initial letters),
so any prompt tokenises without network access.
"""

from __future__ import annotations

import string
import sys
from pathlib import Path
from typing import Any

import torch

# A few merges so the BPE does more than split into bytes; they cover common prompt fragments.
_MERGES = ("t h", "th e</w>", "o n", "a n", "i n", "e r", "r e", "o f</w>", "a n</w>")
_MAX_TOKENS = 77


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2 / CLIP scheme)."""
    keep = list(range(ord("!"), ord("~") + 1))
    keep += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    # Non-printable bytes map, in byte order, to the code points from 256 upwards.
    codes, extra = [], 0
    for b in range(256):
        codes.append(b if b in keep else 256 + extra)
        extra += b not in keep
    return [chr(c) for c in codes]


def tokenizer() -> Any:
    """A tiny offline ``CLIPTokenizer`` (byte symbols + word-final forms + specials + merges)."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(
        vocab=vocab, merges=[tuple(m.split()) for m in _MERGES], model_max_length=_MAX_TOKENS
    )


def t5_tokenizer() -> Any:
    """A tiny offline T5 tokenizer: a unigram vocabulary of characters and word-initial letters."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("\u2581" + c, -2.5) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def write_flux(root: str | Path, seed: int = 0) -> Path:
    """Save a tiny ``FluxPipeline`` (text-to-image, loadable as ``FluxInpaintPipeline``)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tok, tok2 = tokenizer(), t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 VAE channels x 2 x 2 packed patches
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,  # T5 width
        pooled_projection_dim=16,  # CLIP width
        axes_dims_rope=(2, 2, 4),
        guidance_embeds=True,  # FLUX.1-dev and Krea-dev: guidance is a model input
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
        use_quant_conv=False,  # as FLUX's VAE
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    clip = _text_encoder(tok)
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(tok2),
            d_model=16,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=clip,
        tokenizer=tok,
        text_encoder_2=t5,
        tokenizer_2=tok2,
        transformer=transformer,
    )
    pipe.save_pretrained(root, safe_serialization=True)
    return Path(root)


def _text_encoder(tok: Any) -> Any:
    """A one-layer CLIP text encoder of width 16 for the tokenizer ``tok``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=_MAX_TOKENS,
            projection_dim=16,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )


def _components(in_channels: int, seed: int) -> dict[str, Any]:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    tok = tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    text_encoder = _text_encoder(tok)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tok,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def write_inpaint(root: str | Path, seed: int = 0) -> Path:
    """Save a tiny ``StableDiffusionInpaintPipeline`` (9-channel UNet) to ``root``."""
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(**_components(9, seed))
    pipe.save_pretrained(root, safe_serialization=True)
    return Path(root)


def write_text2img(root: str | Path, seed: int = 0) -> Path:
    """Save a tiny ``StableDiffusionPipeline`` (4-channel UNet) to ``root``."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**_components(4, seed))
    pipe.save_pretrained(root, safe_serialization=True)
    return Path(root)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_diffusers")
    print(
        write_inpaint(out / "inpaint"), write_text2img(out / "text2img"), write_flux(out / "flux")
    )
