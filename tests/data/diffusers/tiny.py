"""Builds tiny, randomly initialised diffusers pipelines offline (run as a script or import).

``write_inpaint(root)`` saves a ``StableDiffusionInpaintPipeline`` and ``write_text2img(root)`` a
``StableDiffusionPipeline``; both are a few hundred kB, load back by local path through
``AutoPipelineForInpainting`` / ``AutoPipelineForText2Image`` and run 2 steps at 32-64 px on CPU in
well under a second. Pixels are meaningless; shapes, files and code paths are real. The CLIP
tokenizer is a byte-level BPE whose vocabulary is the 256 byte symbols (plain and word-final), the
two special tokens and a handful of merges, so any prompt tokenises without network access.
"""

from __future__ import annotations

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


def _components(in_channels: int, seed: int) -> dict[str, Any]:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

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
    text_encoder = CLIPTextModel(
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
    print(write_inpaint(out / "inpaint"), write_text2img(out / "text2img"))
