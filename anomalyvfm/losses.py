"""Confidence-weighted pixel loss and image focal loss (docs/method.md, section 6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import sigmoid_focal_loss

from anomalyvfm import options


@dataclass
class LossConfig:
    """Loss weights and options.

    Args:
        focal_weight: weight of the pixel focal term (5).
        focal_alpha: focal alpha for pixel and image terms (0.25).
        focal_gamma: focal gamma (2).
        clip_low: lower clip of sigmoid(m) in the L1 term (reference 0.1; paper 0).
        clip_high: upper clip (reference 0.9; paper 1).
        confidence: use the learned confidence weighting (off: C = 1, plain mean of L_base).
        confidence_alpha: a in ``C * L_base - a * log C`` (0.1).
        image_weight: weight of the image focal loss (1).
    """

    focal_weight: float = 5.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    clip_low: float = 0.1
    clip_high: float = 0.9
    confidence: bool = True
    confidence_alpha: float = 0.1
    image_weight: float = 1.0

    def __post_init__(self) -> None:
        options.in_unit_interval("model.loss.clip_low", self.clip_low)
        options.in_unit_interval("model.loss.clip_high", self.clip_high)
        if self.clip_low >= self.clip_high:
            raise ValueError(
                f"model.loss.clip_low must be below model.loss.clip_high; got {self.clip_low} "
                f">= {self.clip_high}"
            )
        options.non_negative_number("model.loss.focal_weight", self.focal_weight)
        options.non_negative_number("model.loss.focal_gamma", self.focal_gamma)
        options.non_negative_number("model.loss.confidence_alpha", self.confidence_alpha)
        options.non_negative_number("model.loss.image_weight", self.image_weight)


class LossOutput(NamedTuple):
    """Total loss and its parts (all scalars)."""

    loss: Tensor
    pixel: Tensor
    image: Tensor
    confidence_mean: Tensor


def resize_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """Resizes (B, H, W) or (B, 1, H, W) masks to ``size`` and thresholds at 0.5."""
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    mask = mask.float()
    if tuple(mask.shape[-2:]) != tuple(size):
        mask = F.interpolate(
            mask, size=tuple(size), mode="bilinear", antialias=True, align_corners=False
        )
    return (mask > 0.5).float()


class AnomalyVFMLoss(nn.Module):
    """``L = mean(C * L_base - a log C) + focal(image)`` with ``C = 1 + exp(c)``.

    ``L_base = w * focal(m, y) + |clip(sigmoid(m), lo, hi) - y|`` per pixel.
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()

    def pixel_base(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-pixel L_base."""
        cfg = self.config
        focal = sigmoid_focal_loss(
            logits, target, alpha=cfg.focal_alpha, gamma=cfg.focal_gamma, reduction="none"
        )
        probs = torch.sigmoid(logits).clamp(cfg.clip_low, cfg.clip_high)
        return cfg.focal_weight * focal + (probs - target).abs()

    def forward(
        self,
        anomaly_logits: Tensor,
        confidence_logits: Tensor,
        image_logits: Tensor,
        masks: Tensor,
        labels: Tensor,
    ) -> LossOutput:
        """Loss of a batch; masks (B, H, W) at any resolution, labels (B,) in {0, 1}."""
        cfg = self.config
        # The loss is computed in fp32 even under bf16 autocast: exp(c) and the log need range.
        m = anomaly_logits.float()
        y = resize_mask(masks, m.shape[-2:])
        base = self.pixel_base(m, y)
        if cfg.confidence:
            c = confidence_logits.float()
            conf = 1.0 + torch.exp(c)
            # log(1 + exp(c)) is softplus(c): finite even where exp(c) overflows.
            pixel = (conf * base - cfg.confidence_alpha * F.softplus(c)).mean()
            conf_mean = conf.detach().mean()
        else:
            pixel = base.mean()
            conf_mean = torch.ones((), device=m.device)
        image = sigmoid_focal_loss(
            image_logits.float(),
            labels.float(),
            alpha=cfg.focal_alpha,
            gamma=cfg.focal_gamma,
            reduction="mean",
        )
        return LossOutput(pixel + cfg.image_weight * image, pixel, image, conf_mean)
