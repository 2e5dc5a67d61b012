"""Model options are checked where they enter, with messages that name the option."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch

from anomalyvfm.backbones.adapters import AdapterConfig
from anomalyvfm.backbones.timm_backbone import Backbone, BackboneConfig
from anomalyvfm.losses import LossConfig
from anomalyvfm.models.decoder import DecoderConfig
from anomalyvfm.tasks import AnomalyVFM
from data_synthesis import FeatureDistanceFilter
from tests.conftest import TINY_VIT

VIT = "vit_small_patch14_dinov2"


def task(**kwargs: Any) -> AnomalyVFM:
    backbone = BackboneConfig(name=VIT, model_kwargs=dict(TINY_VIT))
    kwargs.setdefault("adapter", AdapterConfig(rank=2))
    return AnomalyVFM(backbone=backbone, image_size=kwargs.pop("image_size", 56), **kwargs)


BAD: dict[str, tuple[Callable[[], object], str]] = {
    "rank_negative": (
        lambda: AdapterConfig(rank=-4),
        "model.adapter.rank must be a positive integer; got -4",
    ),
    "rank_zero": (lambda: AdapterConfig(rank=0), "model.adapter.rank must be a positive integer"),
    "rank_float": (lambda: AdapterConfig(rank=2.5), "model.adapter.rank"),  # type: ignore[arg-type]
    "alpha": (lambda: AdapterConfig(alpha=0.0), "model.adapter.alpha must be a positive number"),
    "adapter_type": (
        lambda: AdapterConfig(type="dorra"),  # type: ignore[arg-type]
        "model.adapter.type must be one of dora, lora, none, full; got 'dorra'",
    ),
    "qkv_parts": (
        lambda: AdapterConfig(qkv_parts="kv"),  # type: ignore[arg-type]
        "model.adapter.qkv_parts must be one of qv, qkv",
    ),
    "adapter_dropout": (lambda: AdapterConfig(dropout=1.0), r"model.adapter.dropout .*\[0, 1\)"),
    "up_blocks": (
        lambda: DecoderConfig(num_up_blocks=-1),
        "model.decoder.num_up_blocks must be an integer >= 0; got -1",
    ),
    "width": (lambda: DecoderConfig(width=0), "model.decoder.width must be a positive integer"),
    "clip_order": (
        lambda: LossConfig(clip_low=0.9, clip_high=0.1),
        "model.loss.clip_low must be below model.loss.clip_high; got 0.9 >= 0.1",
    ),
    "clip_equal": (lambda: LossConfig(clip_low=0.5, clip_high=0.5), "model.loss.clip_low"),
    "clip_high_range": (lambda: LossConfig(clip_high=1.5), r"model.loss.clip_high .*\[0, 1\]"),
    "clip_low_range": (lambda: LossConfig(clip_low=-0.1), r"model.loss.clip_low .*\[0, 1\]"),
    "loss_weight": (lambda: LossConfig(image_weight=-1.0), "model.loss.image_weight"),
    "layers_empty": (lambda: BackboneConfig(layers=[]), "model.backbone.layers"),
    "summary": (
        lambda: BackboneConfig(summary="mean"),  # type: ignore[arg-type]
        "model.backbone.summary must be one of auto, cls, prefix, head",
    ),
    "mean_filter_even": (
        lambda: task(mean_filter_size=4),
        r"model.mean_filter_size must be an odd number .*; got 4",
    ),
    "mean_filter_zero": (lambda: task(mean_filter_size=0), "model.mean_filter_size"),
    "fpr_limit_zero": (lambda: task(fpr_limit=0.0), r"model.fpr_limit .*\(0, 1\]; got 0.0"),
    "fpr_limit_high": (lambda: task(fpr_limit=1.5), "model.fpr_limit"),
    "lr_zero": (lambda: task(lr=0.0), "model.lr must be a positive number; got 0.0"),
    "lr_negative": (lambda: task(lr=-1e-4), "model.lr must be a positive number"),
    "warmup": (lambda: task(warmup_steps=-1), "model.warmup_steps must be an integer >= 0"),
    "betas": (lambda: task(betas=(0.9, 1.0)), r"model.betas .*\[0, 1\)"),
    "image_size_zero": (lambda: task(image_size=0), "model.image_size must be a positive"),
    "image_size_patch": (
        lambda: task(image_size=60),
        "model.image_size 60 .*not a multiple of the patch size 14 .*; use 56 or 70",
    ),
    "adapter_dict": (lambda: task(adapter={"rank": -4}), "model.adapter.rank"),
    "layers_range": (
        lambda: Backbone(BackboneConfig(name=VIT, model_kwargs=TINY_VIT, layers=[0, 2]), 56),
        r"model.backbone.layers \[2\] out of range .* 2 blocks \(use -2..1\)",
    ),
    "unknown_name": (
        lambda: Backbone(BackboneConfig(name="vit_smal_patch14_dinov2"), 56),
        r"model.backbone.name 'vit_smal_patch14_dinov2' is not a timm model "
        r"\(close: vit_small_patch14_dinov2.*timm.list_models\('\*vit\*'\)",
    ),
    "unknown_tag": (
        lambda: Backbone(BackboneConfig(name="resnet18.nope"), 64),
        r"'nope' is not a pretrained tag of resnet18; .*timm.list_pretrained\('resnet18.\*'\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_option_is_named(case: str) -> None:
    make, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        make()


def test_limits_themselves_are_accepted() -> None:
    assert AdapterConfig(type="none", rank=1, alpha=1e-3).rank == 1
    assert DecoderConfig(num_up_blocks=0, width=1).num_up_blocks == 0
    assert LossConfig(clip_low=0.0, clip_high=1.0).clip_high == 1.0
    model = task(mean_filter_size=1, fpr_limit=1.0, warmup_steps=0, betas=(0.0, 0.999))
    assert model.hparams["fpr_limit"] == 1.0
    # CNNs take any input size; ViTs any multiple of the patch size.
    assert Backbone(BackboneConfig(name="resnet18"), 70).patch_size == 32
    assert Backbone(BackboneConfig(name=VIT, model_kwargs=TINY_VIT), 70).patch_size == 14


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good weights file of the tiny ViT in both formats, and broken ones."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("weights")
    model = timm.create_model(VIT, img_size=56, **TINY_VIT)
    files = {"good.safetensors": root / "good.safetensors", "good.pth": root / "good.pth"}
    save_file(model.state_dict(), files["good.safetensors"])
    torch.save(model.state_dict(), files["good.pth"])
    rng = np.random.default_rng(0)
    for name, good in (("safetensors", "good.safetensors"), ("pth", "good.pth")):
        data = files[good].read_bytes()
        files[f"truncated.{name}"] = root / f"truncated.{name}"
        files[f"truncated.{name}"].write_bytes(data[: len(data) // 2])
        files[f"noise.{name}"] = root / f"noise.{name}"
        files[f"noise.{name}"].write_bytes(rng.bytes(4096))
    wide = timm.create_model(VIT, img_size=56, **{**TINY_VIT, "embed_dim": 64})
    files["wide.safetensors"] = root / "wide.safetensors"
    save_file(wide.state_dict(), files["wide.safetensors"])
    return files


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("noise.safetensors", "is not a readable safetensors file .*header"),
        ("truncated.safetensors", "is not a readable safetensors file"),
        ("noise.pth", "is not a readable PyTorch weights file"),
        ("truncated.pth", "is not a readable PyTorch weights file .*zip archive"),
        ("wide.safetensors", "does not fit model.backbone.name 'vit_small_patch14_dinov2' .*size"),
    ],
)
def test_broken_weight_files_are_named(weight_files, file: str, message: str) -> None:
    path = weight_files[file]
    config = BackboneConfig(name=VIT, model_kwargs=TINY_VIT, checkpoint_path=str(path))
    with pytest.raises(
        ValueError, match=f"^model.backbone.checkpoint_path {re.escape(str(path))} "
    ):
        Backbone(config, 56)
    with pytest.raises(ValueError, match=message):
        Backbone(config, 56)


def test_good_weight_files_still_load(weight_files) -> None:
    for file in ("good.safetensors", "good.pth"):
        config = BackboneConfig(
            name=VIT, model_kwargs=TINY_VIT, checkpoint_path=str(weight_files[file])
        )
        assert Backbone(config, 56).width == 32


def test_missing_weight_file_is_named(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "w.safetensors"
    config = BackboneConfig(name=VIT, model_kwargs=TINY_VIT, checkpoint_path=str(missing))
    with pytest.raises(FileNotFoundError, match=f"checkpoint_path {re.escape(str(missing))} does"):
        Backbone(config, 56)
    with pytest.raises(FileNotFoundError, match="is not a file"):
        Backbone(BackboneConfig(name=VIT, checkpoint_path=str(tmp_path)), 56)


def test_filter_shares_the_checks_with_its_own_option_names(weight_files) -> None:
    image = np.full((28, 28, 3), 0.5, np.float32)
    broken = FeatureDistanceFilter(
        VIT, checkpoint_path=str(weight_files["truncated.safetensors"]), model_kwargs=TINY_VIT
    )
    with pytest.raises(ValueError, match="filter.init_args.checkpoint_path .*not a readable"):
        broken(image, image)
    with pytest.raises(ValueError, match="filter.init_args.backbone 'vit_smal' is not a timm"):
        _ = FeatureDistanceFilter("vit_smal", pretrained=False, device="cpu").model
    # Offline (HF_HUB_OFFLINE=1 here) with nothing cached: the same advice as the backbone's.
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    offline = FeatureDistanceFilter(f"{VIT}.lvd142m", model_kwargs=TINY_VIT, device="cpu")
    with pytest.raises(RuntimeError, match="set filter.init_args.checkpoint_path .*HF_HOME"):
        _ = offline.model
