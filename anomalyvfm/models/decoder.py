"""Convolutional decoder on the patch-feature map, with anomaly and confidence heads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from anomalyvfm import options


@dataclass
class DecoderConfig:
    """Decoder shape.

    Args:
        num_up_blocks: x2 upsampling blocks after the bottleneck (reference code 1, paper 2).
        width: channel width of the bottleneck; ``None`` uses the backbone feature width D.
        num_groups: GroupNorm groups (reference 32); reduced to a divisor of narrow layers.
        channels_last: run the convolutions in channels-last memory format (NHWC), the layout
            tensor cores and cuDNN's fused kernels want; same numbers up to float rounding.
    """

    num_up_blocks: int = 1
    width: int | None = None
    num_groups: int = 32
    channels_last: bool = True

    def __post_init__(self) -> None:
        options.non_negative_int("model.decoder.num_up_blocks", self.num_up_blocks)
        if self.width is not None:
            options.positive_int("model.decoder.width", self.width)
        options.positive_int("model.decoder.num_groups", self.num_groups)


class DecoderOutput(NamedTuple):
    """Logit maps of shape (B, 1, h * 2**k, w * 2**k)."""

    anomaly_logits: Tensor
    confidence_logits: Tensor


def conv_gn_relu(c_in: int, c_out: int, groups: int) -> list[nn.Module]:
    """A 3x3 convolution, GroupNorm and ReLU."""
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.GroupNorm(math.gcd(groups, c_out), c_out),
        nn.ReLU(inplace=True),
    ]


class Decoder(nn.Module):
    """Bottleneck (two conv-GN-ReLU at width D), up-blocks halving the width, two 1x1 heads.

    Args:
        in_channels: channels of the backbone feature map.
        config: see :class:`DecoderConfig`.
    """

    def __init__(self, in_channels: int, config: DecoderConfig | None = None) -> None:
        super().__init__()
        config = config or DecoderConfig()
        width = config.width or in_channels
        g = config.num_groups
        self.bottleneck = nn.Sequential(*conv_gn_relu(in_channels, width, g))
        self.bottleneck.extend(conv_gn_relu(width, width, g))
        blocks: list[nn.Module] = []
        for _ in range(config.num_up_blocks):
            out = max(width // 2, 1)
            # Nearest-neighbour x2 then two conv-GN-ReLU, as the reference code does.
            blocks.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    *conv_gn_relu(width, out, g),
                    *conv_gn_relu(out, out, g),
                )
            )
            width = out
        self.up_blocks = nn.Sequential(*blocks)
        self.anomaly_head = nn.Conv2d(width, 1, 1)
        self.confidence_head = nn.Conv2d(width, 1, 1)
        self.upscale = 2**config.num_up_blocks
        self.channels_last = config.channels_last
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, features: Tensor) -> DecoderOutput:
        if self.channels_last:
            features = features.contiguous(memory_format=torch.channels_last)
        x = self.up_blocks(self.bottleneck(features))
        return DecoderOutput(self.anomaly_head(x), self.confidence_head(x))
