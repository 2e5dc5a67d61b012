"""A frozen timm backbone that yields a patch-feature map and summary features.

Any timm vision transformer works by its registry name (``forward_intermediates`` gives the
patch tokens of chosen blocks and the prefix tokens), NaFlexVit included (its patch embedding is
``embeds``, not ``patch_embed``, and it takes every input size without ``dynamic_img_size``);
timm CNNs work through ``features_only``.
Per-model facts (patch size, prefix-token count, mean/std) are read from the model, never tabled.

How to add a backbone family: nothing to do if timm ships it and it implements
``forward_intermediates`` (all timm ViT-like models do). A model outside timm needs a wrapper
with the same ``forward`` contract as :class:`Backbone` in this file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, cast, get_args

import torch
from torch import Tensor, nn

from anomalyvfm import options
from anomalyvfm.backbones import timm_models

log = logging.getLogger(__name__)

SummaryKind = Literal["auto", "cls", "prefix", "head"]


@dataclass
class BackboneConfig:
    """Which backbone to build and how to read features from it.

    Args:
        name: timm registry name, e.g. ``vit_large_patch16_radio_v3.c_radio``.
        pretrained: download (or read from the Hugging Face cache) the pretrained weights.
        checkpoint_path: a local weights file (``.safetensors``, ``.pth``, ``.bin``); loaded with
            ``weights_only=True`` through timm's own filters (so original checkpoints and
            position-embedding resampling work). Takes precedence over the hub download.
        layers: indices of the blocks whose patch tokens feed the decoder (negative from the end).
            The reference uses the last block only; several layers are concatenated channel-wise.
        summary: image-level features for the image head: ``cls`` the class token(s) without
            registers, ``prefix`` all prefix tokens (class + registers) flattened, ``head`` the
            model's own pooling (MAP for SigLIP, average for CNNs), ``auto`` ``cls`` when the
            model has a class token, else ``head``.
        summary_tokens: with summary ``cls`` or ``prefix``, keep only the first k of those prefix
            tokens (flattened, k x width features); ``null`` keeps them all. The reference reads
            the first 3 of RADIO's 8 prefix tokens (``summary: prefix``, ``summary_tokens: 3``).
        norm: apply the model's final norm to the patch tokens read and to the prefix tokens of
            the ``cls``/``prefix`` summary (the reference leaves it out for CLIP).
        model_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``depth``,
            ``embed_dim``, ``num_heads`` to build a tiny model of the same architecture).
        grad_checkpointing: recompute each block's activations in the backward pass instead of
            keeping them (timm's activation checkpointing): about a third more backbone compute
            for a much smaller activation memory, i.e. larger micro-batches.
    """

    name: str = "vit_large_patch16_radio_v3.c_radio"
    pretrained: bool = False
    checkpoint_path: str | None = None
    layers: list[int] = field(default_factory=lambda: [-1])
    summary: SummaryKind = "auto"
    summary_tokens: int | None = None
    norm: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"model.backbone.name must be a timm model name; got {self.name!r}")
        if self.checkpoint_path is not None and not str(self.checkpoint_path).strip():
            raise ValueError("model.backbone.checkpoint_path is empty; give a file or null")
        layers = list(self.layers)
        if not layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
            raise ValueError(
                f"model.backbone.layers must be a non-empty list of block indices; got {layers!r}"
            )
        options.one_of("model.backbone.summary", self.summary, get_args(SummaryKind))
        if self.summary_tokens is not None:
            options.positive_int("model.backbone.summary_tokens", self.summary_tokens)


class BackboneOutput(NamedTuple):
    """Features of one batch.

    Attributes:
        patch_features: (B, C, h, w) map; C = width x number of layers.
        summary: (B, S) image-level features for the image head.
    """

    patch_features: Tensor
    summary: Tensor


class Backbone(nn.Module):
    """timm model wrapper with a uniform ``forward`` for ViTs and CNNs.

    Args:
        config: see :class:`BackboneConfig`.
        img_size: input size the model is built for (position embeddings are resampled to it).
            Other inputs that are a multiple of the patch size also work (dynamic size).
    """

    def __init__(self, config: BackboneConfig, img_size: int | None = None) -> None:
        super().__init__()
        if img_size is not None:
            options.positive_int("model.image_size", img_size)
        self.config = config
        # Any: timm models expose family-specific methods (forward_intermediates, ...).
        model: Any = create_timm_model(config, img_size)
        self.model = model
        if config.grad_checkpointing:
            if not hasattr(model, "set_grad_checkpointing"):
                raise ValueError(
                    f"backbone.grad_checkpointing=true but {config.name} does not support "
                    "activation checkpointing (no set_grad_checkpointing in timm)"
                )
            model.set_grad_checkpointing(True)
        embed = patch_embed_of(model)
        self.is_vit = hasattr(model, "forward_intermediates") and embed is not None
        cfg = model.pretrained_cfg
        mean = cfg.get("mean", (0.485, 0.456, 0.406))
        std = cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if self.is_vit:
            self.patch_size = int(_pair(embed.patch_size)[0])
            self._check_vit_options(img_size)
            self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0))
            # Class tokens come first; the rest of the prefix are registers (Eva, the DINOv3
            # class, has no num_reg_tokens attribute, so count from cls_token instead; NaFlexVit
            # keeps its tokens in the embedding module).
            cls_token = getattr(model, "cls_token", getattr(embed, "cls_token", None))
            n_cls = int(cls_token.shape[1]) if cls_token is not None else 0
            self.num_reg_tokens = self.num_prefix_tokens - n_cls
            self.width = int(model.embed_dim)
            self.feature_dim = self.width * len(config.layers)
            self.summary_kind = self._resolve_summary(config.summary)
            # How many leading prefix tokens the summary keeps (class tokens come first).
            self.num_summary_tokens = self._summary_token_count()
            self.summary_dim = int(model.num_features) * self.num_summary_tokens
            if self.summary_kind == "head":
                self.summary_dim = int(model.head_hidden_size)
        else:
            info = model.feature_info
            self.patch_size = int(info.reduction()[0])
            self.num_prefix_tokens = 0
            self.num_reg_tokens = 0
            self.width = int(info.channels()[-1])
            self.feature_dim = int(sum(info.channels()))
            self.summary_kind = "head"
            self.num_summary_tokens = 0
            self.summary_dim = self.width
            if config.summary_tokens is not None:
                raise ValueError(
                    f"model.backbone.summary_tokens is set but {config.name} is a CNN without "
                    "prefix tokens; use null"
                )

    def _check_vit_options(self, img_size: int | None) -> None:
        name, patch = self.config.name, self.patch_size
        if img_size is not None and img_size % patch:
            lower = max(img_size // patch, 1) * patch
            raise ValueError(
                f"model.image_size {img_size} (linked from data.image_size) is not a multiple of "
                f"the patch size {patch} of {name}; use {lower} or {lower + patch}"
            )
        depth = len(getattr(self.model, "blocks", ()))
        bad = [i for i in self.config.layers if depth and not -depth <= i < depth]
        if bad:
            raise ValueError(
                f"model.backbone.layers {bad} out of range for {name} with {depth} blocks "
                f"(use {-depth}..{depth - 1})"
            )

    def _resolve_summary(self, kind: SummaryKind) -> SummaryKind:
        n_cls = self.num_prefix_tokens - self.num_reg_tokens
        if kind == "auto":
            return "cls" if n_cls > 0 else "head"
        if kind == "cls" and n_cls == 0:
            raise ValueError(
                f"backbone.summary='cls' but {self.config.name} has no class token; "
                "use 'head' (the model's own pooling) or 'auto'"
            )
        if kind == "prefix" and self.num_prefix_tokens == 0:
            raise ValueError(
                f"backbone.summary='prefix' but {self.config.name} has no prefix tokens"
            )
        return kind

    def _summary_token_count(self) -> int:
        """Leading prefix tokens in the summary: all of the kind, or ``summary_tokens`` of them."""
        n_cls = self.num_prefix_tokens - self.num_reg_tokens
        available = {"cls": n_cls, "prefix": self.num_prefix_tokens}.get(self.summary_kind, 0)
        k = self.config.summary_tokens
        if k is None:
            return available
        if self.summary_kind == "head":
            raise ValueError(
                f"model.backbone.summary_tokens={k} needs summary cls or prefix; {self.config.name}"
                " reads its pooling head here (summary 'head'): set summary_tokens to null"
            )
        if k > available:
            more = (
                f", or summary 'prefix' for up to {self.num_prefix_tokens}"
                if self.summary_kind == "cls" and self.num_prefix_tokens > available
                else ""
            )
            raise ValueError(
                f"model.backbone.summary_tokens={k} out of range for {self.config.name}: summary "
                f"'{self.summary_kind}' has {available} token(s) (use 1..{available}{more})"
            )
        return k

    def normalize(self, images: Tensor) -> Tensor:
        """Maps images in [0, 1] to the backbone's own input normalisation."""
        mean, std = cast(Tensor, self.mean), cast(Tensor, self.std)
        return (images - mean) / std

    def forward(self, images: Tensor) -> BackboneOutput:
        """Features of a batch of [0, 1] RGB images of shape (B, 3, H, W)."""
        x = self.normalize(images)
        if not self.is_vit:
            feats = self.model(x)
            # Deeper maps are upsampled to the finest selected one, keeping small defects.
            size = feats[0].shape[-2:]
            resized = [
                f if f.shape[-2:] == size else nn.functional.interpolate(f, size, mode="bilinear")
                for f in feats
            ]
            return BackboneOutput(torch.cat(resized, 1), feats[-1].mean(dim=(2, 3)))
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"input size {h}x{w} is not a multiple of the patch size {self.patch_size} "
                f"of {self.config.name}"
            )
        model: Any = self.model
        final, inter = model.forward_intermediates(
            x,
            indices=list(self.config.layers),
            return_prefix_tokens=self.num_prefix_tokens > 0,
            norm=self.config.norm,
            output_fmt="NCHW",
        )
        if self.num_prefix_tokens > 0:
            maps = [t[0] for t in inter]
            prefix = inter[-1][1]
        else:
            maps, prefix = list(inter), None
        return BackboneOutput(torch.cat(maps, 1), self._summary(final, prefix))

    def _summary(self, final: Tensor, prefix: Tensor | None) -> Tensor:
        if self.summary_kind == "head":
            head: Any = self.model
            return head.forward_head(final, pre_logits=True)
        assert prefix is not None
        # timm puts class tokens before register tokens.
        return prefix[:, : self.num_summary_tokens].flatten(1)


def create_timm_model(config: BackboneConfig, img_size: int | None) -> nn.Module:
    """Builds the timm model of ``config`` (see :func:`timm_models.create_timm_model`).

    Raises:
        FileNotFoundError: ``checkpoint_path`` does not exist.
        ValueError: unknown model name, unreadable ``checkpoint_path``.
        WeightsUnavailableError: the pretrained weights are not local and cannot be downloaded
            now; the message says what to set instead.
    """
    return timm_models.create_timm_model(
        config.name,
        pretrained=config.pretrained,
        checkpoint_path=config.checkpoint_path,
        img_size=img_size,
        model_kwargs=config.model_kwargs,
    )


def patch_embed_of(model: nn.Module) -> Any:
    """The patch-embedding module of a ViT (``embeds`` in NaFlexVit), None for other models
    (also read by the synthesis filter, data_synthesis/filter.py)."""
    for attr in ("patch_embed", "embeds"):
        embed = getattr(model, attr, None)
        if embed is not None and hasattr(embed, "patch_size"):
            return embed
    return None


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
