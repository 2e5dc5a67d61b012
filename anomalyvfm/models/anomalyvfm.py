"""The AnomalyVFM model in pure PyTorch: adapted frozen backbone, decoder and image head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anomalyvfm import options
from anomalyvfm.backbones.adapters import AdapterConfig, apply_adapters
from anomalyvfm.backbones.timm_backbone import Backbone, BackboneConfig
from anomalyvfm.models.decoder import Decoder, DecoderConfig


class AnomalyVFMOutput(NamedTuple):
    """Raw outputs used by the loss.

    Attributes:
        anomaly_logits: (B, 1, h', w') pixel anomaly logits m.
        confidence_logits: (B, 1, h', w') confidence logits c (training only).
        image_logits: (B,) image anomaly logits.
    """

    anomaly_logits: Tensor
    confidence_logits: Tensor
    image_logits: Tensor


class AnomalyPrediction(NamedTuple):
    """Inference outputs, in the field names anomaly tooling expects.

    Attributes:
        anomaly_map: (B, H, W) pixel scores in [0, 1] at the input resolution.
        pred_score: (B,) image scores in [0, 1].
    """

    anomaly_map: Tensor
    pred_score: Tensor


def check_model_options(
    image_size: int, mean_filter_size: int, image_score: str, mean_filter_padding: str
) -> None:
    """Raises ValueError naming the first invalid option."""
    options.positive_int("model.image_size", image_size)
    options.positive_int("model.mean_filter_size", mean_filter_size)
    if mean_filter_size % 2 == 0:
        raise ValueError(
            f"model.mean_filter_size must be an odd number (1 turns the filter off); "
            f"got {mean_filter_size}"
        )
    options.one_of("model.image_score", image_score, ("head", "map_max", "mean"))
    options.one_of("model.mean_filter_padding", mean_filter_padding, ("replicate", "zeros"))


def _keep_frozen_in_eval(module: nn.Module, parent_training: bool) -> None:
    """Puts ``module`` and its children in eval mode where they hold no trainable parameter."""
    params = list(module.parameters())
    training = any(p.requires_grad for p in params) if params else parent_training
    module.training = training
    for child in module.children():
        _keep_frozen_in_eval(child, training)


class AnomalyVFMModel(nn.Module):
    """Backbone with adapters, convolutional decoder and a linear image head.

    Args:
        backbone: backbone configuration.
        adapter: adapter configuration.
        decoder: decoder configuration.
        image_size: square training input size (768 for patch 16, 672 for patch 14 gives 48x48).
        mean_filter_size: odd k of the k x k mean filter on the anomaly map at inference (5).
        mean_filter_padding: border handling of the mean filter: ``replicate`` (border scores
            unbiased) or ``zeros`` (the reference code's ``AvgPool2d(k, 1, k // 2)``, which
            counts the zero padding and darkens borders).
        image_score: ``head`` (the method: sigmoid of the image head), ``map_max`` (maximum of
            the filtered anomaly map, the usual zero-shot baseline) or ``mean`` of the two.
    """

    def __init__(
        self,
        backbone: BackboneConfig,
        adapter: AdapterConfig,
        decoder: DecoderConfig,
        image_size: int,
        mean_filter_size: int = 5,
        image_score: Literal["head", "map_max", "mean"] = "head",
        mean_filter_padding: Literal["replicate", "zeros"] = "replicate",
    ) -> None:
        super().__init__()
        check_model_options(image_size, mean_filter_size, image_score, mean_filter_padding)
        self.backbone = Backbone(backbone, img_size=image_size)
        apply_adapters(self.backbone.model, adapter)
        self.decoder = Decoder(self.backbone.feature_dim, decoder)
        self.image_head = nn.Linear(self.backbone.summary_dim, 1)
        self.image_size = image_size
        self.mean_filter_size = mean_filter_size
        self.image_score = image_score
        self.mean_filter_padding = mean_filter_padding
        self.train(self.training)  # frozen backbone parts start (and stay) in eval mode

    def train(self, mode: bool = True) -> AnomalyVFMModel:
        """Sets training mode, except for the frozen parts of the backbone, which stay in eval.

        A module of the backbone trains only when it holds trainable parameters; modules
        without parameters (dropout, drop-path, activations) follow their parent. So a frozen
        backbone's BatchNorm statistics do not drift and its dropout does not act during
        training, which keeps training-time features equal to the ones a reloaded checkpoint
        (whose frozen backbone comes from its source) computes. Adapters, decoder and head
        train as usual, and a fully fine-tuned backbone (``adapter.type: full``) trains whole.
        """
        super().train(mode)
        if mode:
            _keep_frozen_in_eval(self.backbone, parent_training=True)
        return self

    def forward(self, images: Tensor) -> AnomalyVFMOutput:
        """Logits for a batch of [0, 1] RGB images (B, 3, H, W)."""
        feats = self.backbone(images)
        dec = self.decoder(feats.patch_features)
        image_logits = self.image_head(feats.summary).squeeze(1)
        return AnomalyVFMOutput(dec.anomaly_logits, dec.confidence_logits, image_logits)

    def postprocess(self, out: AnomalyVFMOutput, size: Sequence[int]) -> AnomalyPrediction:
        """Sigmoid, k x k mean filter, then bilinear resize of the map to ``size``."""
        amap = torch.sigmoid(out.anomaly_logits.float())
        k = self.mean_filter_size
        if k > 1:
            # Replicate padding keeps border scores unbiased (zero padding would dim them).
            if self.mean_filter_padding == "zeros":
                amap = F.avg_pool2d(amap, k, stride=1, padding=k // 2, count_include_pad=True)
            else:
                amap = F.avg_pool2d(F.pad(amap, (k // 2,) * 4, mode="replicate"), k, stride=1)
        score = torch.sigmoid(out.image_logits.float())
        if self.image_score != "head":
            # Maximum at the decoder's resolution (after the filter), before any upsampling.
            map_max = amap.flatten(1).max(1).values
            score = map_max if self.image_score == "map_max" else 0.5 * (score + map_max)
        if tuple(amap.shape[-2:]) != tuple(size):
            amap = F.interpolate(amap, size=tuple(size), mode="bilinear", align_corners=False)
        return AnomalyPrediction(amap.squeeze(1), score)

    @torch.no_grad()
    def predict(self, images: Tensor) -> AnomalyPrediction:
        """Anomaly maps at the input resolution and image scores."""
        return self.postprocess(self(images), images.shape[-2:])

    def parameter_report(self) -> dict[str, int]:
        """Trainable parameter counts per part, plus frozen backbone parameters."""

        def count(m: nn.Module, trainable: bool = True) -> int:
            return sum(p.numel() for p in m.parameters() if p.requires_grad == trainable)

        report = {
            "backbone_trainable": count(self.backbone),
            "decoder": count(self.decoder),
            "image_head": count(self.image_head),
            "backbone_frozen": count(self.backbone, trainable=False),
        }
        report["total_trainable"] = (
            report["backbone_trainable"] + report["decoder"] + report["image_head"]
        )
        return report
