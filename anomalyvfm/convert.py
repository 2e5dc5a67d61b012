"""Converts a model released by the AnomalyVFM authors into this package's checkpoint.

    python -m anomalyvfm.convert anomalyvfm_dinov2.pkl converted.ckpt
    anomalyvfm-convert path/to/hf_download converted.ckpt --backbone clip

Two released formats are read:

* the ``.pkl`` their ``train.py`` writes (``torch.save`` of a dict with ``model_state_dict``,
  the whole backbone wrapper with its adapters; ``decoder_state_dict``; ``predictor_state_dict``);
* the Hugging Face upload of their ``hf_model.AnomalyVFM`` (``model.safetensors`` whose keys
  start with ``model.``, ``decoder.`` and ``predictor.``, and ``config.json`` naming the
  backbone), given as the folder or the ``.safetensors`` file.

The adapters (LoRA/DoRA on the query and value slices of the attention input projection, and on
its output projection), the decoder and the image head are renamed onto this package's modules
(:mod:`anomalyvfm.backbones.adapters`, :mod:`anomalyvfm.models.decoder`); every tensor is
checked against the shape of the model the converted checkpoint builds. The output is the
checkpoint ``fit`` writes (Lightning format, only the trained weights, the model options as
hyper-parameters), so ``anomalyvfm test --ckpt_path converted.ckpt`` evaluates it. The frozen
backbone is rebuilt from timm's pretrained weights of the same model, or, with
``--backbone-weights``, from the released file's own backbone tensors (written to that file and
read through timm's checkpoint filters; the transformers layout of the CLIP and SigLIP 2
releases is renamed to timm's here). What each released backbone becomes is explained in
docs/method.md ("Using the authors' released models").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

FAMILIES = ("radio", "dinov2", "clip", "siglip2")


@dataclass(frozen=True)
class Family:
    """How one released backbone maps onto this package.

    Attributes:
        timm_name: the timm model holding the same backbone (architecture and weights).
        image_size: the released model's input size.
        summary: what the image head reads (``backbone.summary``).
        norm: whether the released features pass the final norm (``backbone.norm``).
        adapter_pattern: regex of an adapter tensor: groups (block, module, tensor name).
        weights_prefix: the backbone weights' prefix as timm's checkpoint filter reads them
            (replacing ``net.``), for layouts timm reads.
        to_timm: renames a transformers-layout backbone (``net.`` stripped) to timm's names;
            None for layouts timm reads (``weights_prefix``).
        model_kwargs: timm keyword arguments that make timm's model the released architecture.
        summary_tokens: how many leading summary tokens the image head reads (None: all).
        unused_adapters: regex of adapter tensors the released model holds but its forward never
            reads; left out.
    """

    timm_name: str
    image_size: int
    summary: str
    norm: bool
    adapter_pattern: str
    weights_prefix: str = ""
    to_timm: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    summary_tokens: int | None = None
    unused_adapters: str | None = None


_FUSED = (
    r"blocks\.(\d+)\.attn\.(qkv|proj)\."
    r"(lora_A_q|lora_B_q|lora_A_v|lora_B_v|mag_q|mag_v|lora_A|lora_B|magnitude)"
)
_SPLIT = r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|v_proj|out_proj)\.(lora_A|lora_B|magnitude)"


def transformers_encoder_to_timm(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """The transformer blocks and final norm of a transformers CLIP / SigLIP 2 vision model as
    timm block weights (both libraries' encoders share one layout; q, k, v fused)."""
    out = {f"norm.{p}": hf[f"post_layernorm.{p}"] for p in ("weight", "bias")}
    depth = 1 + max(int(k.split(".")[2]) for k in hf if k.startswith("encoder.layers."))
    pairs = (
        ("self_attn.out_proj", "attn.proj"),
        ("layer_norm1", "norm1"),
        ("layer_norm2", "norm2"),
        ("mlp.fc1", "mlp.fc1"),
        ("mlp.fc2", "mlp.fc2"),
    )
    for i in range(depth):
        src, dst = f"encoder.layers.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}attn.qkv.{p}"] = torch.cat(
                [hf[f"{src}self_attn.{n}_proj.{p}"] for n in "qkv"]
            )
            for a, b in pairs:
                out[f"{dst}{b}.{p}"] = hf[f"{src}{a}.{p}"]
    return out


def transformers_clip_to_timm(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers ``CLIPVisionTransformer`` weights as timm ``VisionTransformer`` (CLIP) weights
    (no projection head: the vision tower has none, so the timm model takes ``num_classes: 0``)."""
    out = transformers_encoder_to_timm(hf)
    out["cls_token"] = hf["embeddings.class_embedding"].view(1, 1, -1)
    out["pos_embed"] = hf["embeddings.position_embedding.weight"].unsqueeze(0)
    out["patch_embed.proj.weight"] = hf["embeddings.patch_embedding.weight"]
    for p in ("weight", "bias"):
        out[f"norm_pre.{p}"] = hf[f"pre_layrnorm.{p}"]
    return out


def transformers_siglip2_to_timm(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers ``Siglip2VisionTransformer`` weights as timm ``NaFlexVit`` weights."""
    out = transformers_encoder_to_timm(hf)
    pos = hf["embeddings.position_embedding.weight"]
    side = int(pos.shape[0] ** 0.5)
    out["embeds.pos_embed"] = pos.reshape(1, side, side, -1)
    width = pos.shape[1]
    for p in ("weight", "bias"):
        # Both flatten a patch as (row, col, channel).
        out[f"embeds.proj.{p}"] = hf[f"embeddings.patch_embedding.{p}"]
        out[f"attn_pool.q.{p}"] = hf[f"head.attention.in_proj_{p}"][:width]
        out[f"attn_pool.kv.{p}"] = hf[f"head.attention.in_proj_{p}"][width:]
        out[f"attn_pool.proj.{p}"] = hf[f"head.attention.out_proj.{p}"]
        out[f"attn_pool.norm.{p}"] = hf[f"head.layernorm.{p}"]
        for fc in ("fc1", "fc2"):
            out[f"attn_pool.mlp.{fc}.{p}"] = hf[f"head.mlp.{fc}.{p}"]
    out["attn_pool.latent"] = hf["head.probe"]
    return out


FAMILY_SPECS = {
    # torch.hub facebookresearch/dinov2 dinov2_vitl14_reg: timm holds the same weights.
    "dinov2": Family("vit_large_patch14_reg4_dinov2.lvd142m", 672, "cls", True, rf"net\.{_FUSED}"),
    # transformers' openai/clip-vit-large-patch14-336 vision tower: QuickGELU, and the released
    # model reads the last hidden state (no final norm) for patches and the class token. The
    # tower has no projection head (num_classes 0).
    "clip": Family(
        "vit_large_patch14_clip_quickgelu_336.openai",
        672,
        "cls",
        False,
        rf"net\.{_SPLIT}",
        to_timm=transformers_clip_to_timm,
        model_kwargs={"num_classes": 0},
    ),
    # transformers' google/siglip2-so400m-patch16-naflex vision tower (timm's NaFlexVit, the
    # same model), fed the full grid of patches: patches from last_hidden_state (after the final
    # norm), image score from pooler_output (the attention-pooling head). Their adapters wrap
    # every q_proj/v_proj/out_proj, the pooling head's out_proj too; but nn.MultiheadAttention
    # reads out_proj.weight, which their wrapper returns unadapted, so those never act.
    "siglip2": Family(
        "naflexvit_so400m_patch16_siglip.v2_webli",
        768,
        "head",
        True,
        rf"net\.{_SPLIT}",
        to_timm=transformers_siglip2_to_timm,
        unused_adapters=r"net\.head\.attention\.out_proj\.(lora_A|lora_B|magnitude)",
    ),
    # RADIO v2.5-L (torch.hub NVlabs/RADIO, not in timm): timm's C-RADIO v3 ViT-L without its
    # layer scale (init_values 0) is its architecture, and timm reads RADIO's checkpoint layout
    # (under "radio_model."). The head reads the first 3 summary tokens.
    "radio": Family(
        "vit_large_patch16_radio_v3.c_radio",
        768,
        "prefix",
        True,
        rf"net\.model\.{_FUSED}",
        "radio_model.",
        model_kwargs={"init_values": 0},
        summary_tokens=3,
    ),
}

# Their decoder's module names -> ours (anomalyvfm.models.decoder.Decoder).
_DECODER = [
    (r"bot\.conv1\.", "bottleneck.0."),
    (r"bot\.bn1\.", "bottleneck.1."),
    (r"bot\.conv2\.", "bottleneck.3."),
    (r"bot\.bn2\.", "bottleneck.4."),
    (r"blocks\.(\d+)\.conv1\.", r"up_blocks.\1.1."),
    (r"blocks\.(\d+)\.bn1\.", r"up_blocks.\1.2."),
    (r"blocks\.(\d+)\.conv2\.", r"up_blocks.\1.4."),
    (r"blocks\.(\d+)\.bn2\.", r"up_blocks.\1.5."),
    (r"final\.", "anomaly_head."),
    (r"final_conf\.", "confidence_head."),
]
# Their adapter tensor -> (our module, our tensor, slice index). Fused qkv: slice 0 is the query,
# 1 the value; split projections (q_proj, v_proj, out_proj) land on the same slots.
_ADAPTER = {
    ("qkv", "lora_A_q"): ("qkv", "lora_A", 0),
    ("qkv", "lora_B_q"): ("qkv", "lora_B", 0),
    ("qkv", "mag_q"): ("qkv", "magnitude", 0),
    ("qkv", "lora_A_v"): ("qkv", "lora_A", 1),
    ("qkv", "lora_B_v"): ("qkv", "lora_B", 1),
    ("qkv", "mag_v"): ("qkv", "magnitude", 1),
    **{("proj", t): ("proj", t, 0) for t in ("lora_A", "lora_B", "magnitude")},
    **{("q_proj", t): ("qkv", t, 0) for t in ("lora_A", "lora_B", "magnitude")},
    **{("v_proj", t): ("qkv", t, 1) for t in ("lora_A", "lora_B", "magnitude")},
    **{("out_proj", t): ("proj", t, 0) for t in ("lora_A", "lora_B", "magnitude")},
}
_ADAPTER_NAMES = re.compile(r"\.(lora_[AB](_[qv])?|mag_[qv]|magnitude)$")


@dataclass
class Released:
    """The parts of a released model: backbone wrapper (with adapters), decoder, image head."""

    path: Path
    backbone: dict[str, Tensor]
    decoder: dict[str, Tensor]
    predictor: dict[str, Tensor]
    config: dict[str, Any]


def _fail(path: Path, message: str) -> ValueError:
    return ValueError(f"{path}: {message}")


def read_released(source: str | Path) -> Released:
    """Reads a released model (``.pkl`` of ``train.py``, or the Hugging Face folder/file).

    Raises:
        FileNotFoundError: no such file or folder, or a folder without ``model.safetensors``.
        ValueError: the file is not one of the released formats (the message names it).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file (give the released .pkl, or the folder or model.safetensors "
            "of the Hugging Face download)"
        )
    config: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            flat = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise _fail(path, f"cannot be read as safetensors ({exc})") from exc
        config_file = path.with_name("config.json")
        if config_file.is_file():
            config = json.loads(config_file.read_text())
        parts: dict[str, dict[str, Tensor]] = {"model": {}, "decoder": {}, "predictor": {}}
        for key, value in flat.items():
            head, _, rest = key.partition(".")
            if head not in parts:
                raise _fail(
                    path, f"unexpected tensor {key!r} (expected model./decoder./predictor.)"
                )
            parts[head][rest] = value
        return Released(path, parts["model"], parts["decoder"], parts["predictor"], config)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise _fail(path, f"cannot be read as a torch file ({reason})") from exc
    names = ("model_state_dict", "decoder_state_dict", "predictor_state_dict")
    if not isinstance(loaded, dict) or not all(isinstance(loaded.get(n), dict) for n in names):
        raise _fail(
            path,
            "not a released AnomalyVFM model: expected a dict with model_state_dict, "
            "decoder_state_dict and predictor_state_dict",
        )
    parts_pkl = [dict(loaded[n]) for n in names]
    return Released(path, parts_pkl[0], parts_pkl[1], parts_pkl[2], config)


def infer_family(released: Released) -> str:
    """The backbone family from ``config.json`` or, failing that, from the tensor names."""
    name = str(released.config.get("model_name", "")).lower()
    if name:
        return name
    keys = released.backbone
    if any(k.startswith(("net.input_conditioner.", "net.model.blocks.")) for k in keys):
        return "radio"
    if any(k.startswith("net.encoder.layers.") for k in keys):
        return "clip" if any(k.startswith("net.pre_layrnorm.") for k in keys) else "siglip2"
    if any(k.startswith("net.blocks.") for k in keys):
        return "dinov3" if any("storage_tokens" in k or "rope" in k for k in keys) else "dinov2"
    raise _fail(released.path, "cannot tell the backbone from the tensor names; give --backbone")


def _family_spec(family: str, path: Path) -> Family:
    if family not in FAMILY_SPECS:
        raise _fail(path, f"backbone {family!r} is not one of the released {list(FAMILIES)}")
    return FAMILY_SPECS[family]


def map_adapters(released: Released, spec: Family) -> tuple[dict[str, Tensor], str, int]:
    """Their adapter tensors under our names; the adapter type (``dora``/``lora``) and rank."""
    pattern = re.compile(spec.adapter_pattern)
    unused = re.compile(spec.unused_adapters or "(?!)")
    out: dict[str, Tensor] = {}
    for key, value in released.backbone.items():
        if unused.fullmatch(key):
            continue
        match = pattern.fullmatch(key)
        if match is None:
            if _ADAPTER_NAMES.search(key):
                raise _fail(released.path, f"adapter tensor {key!r} has an unexpected name")
            continue
        block, module, tensor = match.groups()
        ours = _ADAPTER.get((module, tensor))
        if ours is None:
            raise _fail(released.path, f"adapter tensor {key!r} has an unexpected name")
        target, name, slot = ours
        out[f"model.backbone.model.blocks.{block}.attn.{target}.{name}.{slot}"] = value
    if not out:
        raise _fail(
            released.path,
            "no LoRA/DoRA adapter tensors found for this backbone (a VPT model, another "
            "backbone than the one given, or not a released model)",
        )
    ranks = {v.shape[0] for k, v in out.items() if ".lora_A." in k}
    if len(ranks) != 1:
        raise _fail(released.path, f"adapters of several ranks {sorted(ranks)}")
    dora = any(".magnitude." in k for k in out)
    return out, "dora" if dora else "lora", ranks.pop()


def map_head(released: Released) -> tuple[dict[str, Tensor], int]:
    """Decoder and image head under our names, and the decoder's number of up-blocks."""
    out: dict[str, Tensor] = {}
    for key, value in released.decoder.items():
        for pattern, replacement in _DECODER:
            renamed, hits = re.subn(rf"^{pattern}", replacement, key)
            if hits:
                out[f"model.decoder.{renamed}"] = value
                break
        else:
            raise _fail(released.path, f"decoder tensor {key!r} has an unexpected name")
    for key, value in released.predictor.items():
        if key not in ("lin.weight", "lin.bias"):
            raise _fail(released.path, f"image head tensor {key!r} has an unexpected name")
        out[f"model.image_head.{key.split('.')[1]}"] = value
    blocks = {int(m.group(1)) for k in released.decoder if (m := re.match(r"blocks\.(\d+)\.", k))}
    return out, len(blocks)


def backbone_weights(released: Released, spec: Family) -> dict[str, Tensor]:
    """The released file's frozen backbone tensors, in a layout timm's checkpoint filter reads
    (adapter tensors left out, wrapped layers unwrapped, transformers names renamed)."""
    plain = {}
    for key, value in released.backbone.items():
        if not key.startswith("net.") or _ADAPTER_NAMES.search(key):
            continue
        plain[key[len("net.") :].replace(".layer.", ".")] = value
    if spec.to_timm is not None:
        try:
            return spec.to_timm(plain)
        except KeyError as exc:
            raise _fail(released.path, f"--backbone-weights: no backbone tensor {exc}") from exc
    return {spec.weights_prefix + k: v for k, v in plain.items()}


def convert(
    source: str | Path,
    out: str | Path,
    backbone: str | None = None,
    timm_name: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    image_size: int | None = None,
    weights_out: str | Path | None = None,
) -> dict[str, Any]:
    """Writes the checkpoint of ``source`` to ``out``; returns the checkpoint dict written.

    Raises:
        ValueError: an unreadable or unexpected file, another backbone than ``backbone``, or a
            tensor whose name or shape does not fit; the message names the file.
    """
    import lightning

    from anomalyvfm.backbones.adapters import AdapterConfig
    from anomalyvfm.backbones.timm_backbone import BackboneConfig
    from anomalyvfm.models.decoder import DecoderConfig
    from anomalyvfm.tasks import AnomalyVFM

    released = read_released(source)
    path = released.path
    family = infer_family(released)
    if backbone is not None and family != backbone:
        raise _fail(path, f"holds a {family} model, not {backbone}: drop --backbone or fix it")
    spec = _family_spec(family, path)
    if family == "radio" and weights_out is None:
        raise _fail(
            path,
            "radio: the released model's backbone is RADIO v2.5-L (torch.hub NVlabs/RADIO), "
            "which timm does not ship (its C-RADIO v3 has other weights); give "
            "--backbone-weights FILE to carry the file's own backbone",
        )
    adapters, adapter_type, rank = map_adapters(released, spec)
    head, num_up_blocks = map_head(released)
    size = image_size or int(released.config.get("image_size") or spec.image_size)
    config = BackboneConfig(
        name=timm_name or spec.timm_name,
        pretrained=False,  # the shapes only: nothing is downloaded
        summary=spec.summary,  # type: ignore[arg-type]
        summary_tokens=spec.summary_tokens,
        norm=spec.norm,
        model_kwargs={**spec.model_kwargs, **(model_kwargs or {})},
    )
    task = AnomalyVFM(
        backbone=config,
        adapter=AdapterConfig(type=adapter_type, rank=rank),  # type: ignore[arg-type]
        decoder=DecoderConfig(num_up_blocks=num_up_blocks),
        image_size=size,
    )
    # RADIO stores its input normalisation; the backbone normalises with timm's mean and std.
    wrapper: Any = task.model.backbone
    for name, ours_norm in (("mean", wrapper.mean), ("std", wrapper.std)):
        stored = released.backbone.get(f"net.input_conditioner.norm_{name}")
        if stored is not None and not torch.allclose(stored.flatten(), ours_norm.flatten()):
            raise _fail(
                path,
                f"its input normalisation {name} {stored.flatten().tolist()} differs from "
                f"{config.name}'s {ours_norm.flatten().tolist()}",
            )
    # The frozen backbone's source in the written options: timm's pretrained weights, or the
    # released file's own backbone, written to ``weights_out``.
    if weights_out is not None:
        weights = backbone_weights(released, spec)
        config.checkpoint_path = str(Path(weights_out).expanduser().resolve())
    else:
        config.pretrained = True
    task.backbone_config = config
    ours = task.state_dict()
    mapped = {**adapters, **head}
    keep = task.kept_state_keys()
    for key, value in mapped.items():
        if key not in ours:
            raise _fail(path, f"{key} has no counterpart in the {family} model ({config.name})")
        if tuple(value.shape) != tuple(ours[key].shape):
            raise _fail(
                path,
                f"{key}: shape {tuple(value.shape)} does not fit the {family} model's "
                f"{tuple(ours[key].shape)} ({config.name}, image size {size})",
            )
    missing = sorted(k for k in keep if k not in mapped)
    if missing:
        raise _fail(path, f"lacks {len(missing)} trained weights, first {missing[0]}")
    hparams = dict(task.hparams)
    hparams["backbone"] = dataclasses.asdict(config)
    hparams["_class_path"] = f"{AnomalyVFM.__module__.rsplit('.', 1)[0]}.{AnomalyVFM.__name__}"
    hparams["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    checkpoint: dict[str, Any] = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": {k: mapped[k].clone().contiguous() for k in sorted(keep)},
        "hparams_name": "kwargs",
        "hyper_parameters": hparams,
    }
    task.on_save_checkpoint(checkpoint)
    out_path = Path(out).expanduser()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if weights_out is not None:
        torch.save(weights, Path(str(config.checkpoint_path)))
    torch.save(checkpoint, out_path)
    return checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m anomalyvfm.convert`` and ``anomalyvfm-convert``."""
    parser = argparse.ArgumentParser(
        prog="anomalyvfm-convert", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("source", help="released model: .pkl, model.safetensors or its folder")
    parser.add_argument("out", help="the checkpoint to write (.ckpt)")
    parser.add_argument(
        "--backbone", choices=FAMILIES, help="backbone family (default: read from the file)"
    )
    parser.add_argument("--timm-name", help="timm model of the backbone (default: the family's)")
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default=None,
        help="JSON keyword arguments of the timm model (e.g. a reduced depth)",
    )
    parser.add_argument("--image-size", type=int, help="input size (default: the release's)")
    parser.add_argument(
        "--backbone-weights",
        metavar="FILE",
        help="write the released file's own frozen backbone here and have the checkpoint "
        "read it (default: timm's pretrained weights of the same model)",
    )
    args = parser.parse_args(argv)
    ckpt = convert(
        args.source,
        args.out,
        args.backbone,
        args.timm_name,
        args.model_kwargs,
        args.image_size,
        args.backbone_weights,
    )
    hp = ckpt["hyper_parameters"]
    print(
        f"wrote {args.out}: {hp['backbone']['name']}, {hp['adapter']['type']} rank "
        f"{hp['adapter']['rank']}, {len(ckpt['state_dict'])} tensors, image size "
        f"{hp['image_size']}. Evaluate it with: anomalyvfm test --ckpt_path {args.out} "
        "--config <eval suite> --config experiments/configs/eval/reference_protocol.yaml"
    )
    return 0


def console() -> int:
    """The ``anomalyvfm-convert`` command: :func:`main` with one-line user errors."""
    from anomalyvfm.errors import run_command

    return run_command("anomalyvfm-convert", main)


if __name__ == "__main__":
    sys.exit(console())
