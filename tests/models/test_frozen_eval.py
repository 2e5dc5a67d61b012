"""Frozen backbone parts stay in eval mode while the trainable parts train."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import timm
import torch
from torch import nn
from torch.utils.data import DataLoader

from anomalyvfm.backbones.adapters import AdapterConfig
from anomalyvfm.backbones.timm_backbone import BackboneConfig
from anomalyvfm.models.anomalyvfm import AnomalyVFMModel
from anomalyvfm.models.decoder import DecoderConfig
from anomalyvfm.tasks import AnomalyVFM
from tests.conftest import TINY_VIT

SIZE = 64


def batches(count: int, size: int = SIZE, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        # Bright images, far from the stored BatchNorm statistics, so that batch statistics
        # would differ clearly from them.
        image = 0.5 + 0.5 * torch.rand(2, 3, size, size, generator=g)
        mask = (torch.rand(2, size, size, generator=g) > 0.8).float()
        mask[0] = 0
        out.append({"image": image, "mask": mask, "label": torch.tensor([0.0, 1.0])})
    return out


def resnet_weights(path: Path) -> Path:
    """A resnet18 weights file whose BatchNorm statistics are not the init values (0 and 1)."""
    torch.manual_seed(0)
    src = timm.create_model("resnet18", pretrained=False)
    g = torch.Generator().manual_seed(2)
    for module in src.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=g) * 0.1)  # type: ignore[operator]
            module.running_var.copy_(torch.rand(n, generator=g) + 0.5)  # type: ignore[operator]
    torch.save(src.state_dict(), path)
    return path


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


class ModeRecorder(pl.Callback):
    """Records, at every training batch, which backbone modules train and which do not."""

    def __init__(self) -> None:
        self.modes: list[dict[str, bool]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, *args: Any) -> None:
        named = module.model.named_modules()
        self.modes.append({name: m.training for name, m in named})


def fit(task: AnomalyVFM, root: Path, steps: int, *callbacks: pl.Callback) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
        callbacks=list(callbacks),
    )
    trainer.fit(task, DataLoader(batches(steps), batch_size=None))  # type: ignore[arg-type]
    return trainer


def test_frozen_cnn_keeps_its_batchnorm_statistics_and_reloads_identically(tmp_path) -> None:
    weights = resnet_weights(tmp_path / "resnet18.pth")
    backbone = BackboneConfig(name="resnet18", checkpoint_path=str(weights))
    task = AnomalyVFM(backbone=backbone, adapter=AdapterConfig(type="none"), image_size=SIZE)
    before = bn_state(task.model.backbone)
    decoder_before = [p.detach().clone() for p in task.model.decoder.parameters()]
    recorder = ModeRecorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = fit(task, tmp_path, 3, recorder)
    assert not [w for w in caught if "eval mode" in str(w.message)]

    # Every training step ran with the frozen backbone in eval mode and the rest training.
    assert len(recorder.modes) == 3
    for modes in recorder.modes:
        assert not any(v for k, v in modes.items() if k.startswith("backbone"))
        assert modes["decoder"] and modes["image_head"] and modes[""]
    after = bn_state(task.model.backbone)
    assert before.keys() == after.keys() and len(before) > 40
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert any(
        not torch.equal(a, b)
        for a, b in zip(decoder_before, task.model.decoder.parameters(), strict=True)
    )

    # The checkpoint leaves the backbone out (it is rebuilt from the weights file), so the
    # reloaded model matches the trained one only if training left the statistics alone.
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith("model.backbone.") for k in saved)
    reloaded = AnomalyVFM.load_from_checkpoint(ckpt, weights_only=True).eval()
    images = batches(1, seed=9)[0]["image"]
    with torch.no_grad():
        expected = task.eval().model(images)
        got = reloaded.model(images)
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_full_fine_tuning_still_trains_the_whole_backbone(tmp_path) -> None:
    backbone = BackboneConfig(name="resnet18")
    task = AnomalyVFM(backbone=backbone, adapter=AdapterConfig(type="full"), image_size=SIZE)
    before = bn_state(task.model.backbone)
    recorder = ModeRecorder()
    fit(task, tmp_path, 2, recorder)
    assert all(all(modes.values()) for modes in recorder.modes)
    after = bn_state(task.model.backbone)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.endswith("running_mean") for k in changed)


def vit(adapter: AdapterConfig, **kwargs: Any) -> AnomalyVFMModel:
    torch.manual_seed(0)
    backbone = BackboneConfig(name="vit_small_patch14_dinov2", model_kwargs={**TINY_VIT, **kwargs})
    return AnomalyVFMModel(backbone, adapter, DecoderConfig(), image_size=56)


def test_frozen_vit_dropout_and_drop_path_do_not_act_in_training() -> None:
    model = vit(AdapterConfig(type="none"), drop_rate=0.5, drop_path_rate=0.5).train()
    x = torch.rand(2, 3, 56, 56)
    first = model.backbone(x).patch_features
    second = model.backbone(x).patch_features
    assert torch.equal(first, second)
    assert model.training and model.decoder.training and model.image_head.training
    # The same model fine-tuned in full: dropout and drop-path act again.
    full = vit(AdapterConfig(type="full"), drop_rate=0.5, drop_path_rate=0.5).train()
    assert not torch.equal(full.backbone(x).patch_features, full.backbone(x).patch_features)


def test_adapted_blocks_train_and_their_frozen_neighbours_do_not() -> None:
    model = vit(AdapterConfig(type="lora", rank=4), drop_path_rate=0.5)
    for mode in (False, True):  # eval() then train() again gives back the same split
        model.train(mode)
        inner = model.backbone.model
        assert inner.blocks[0].attn.training is mode  # holds the adapters
        assert inner.blocks[0].attn.qkv.lora_A.training is mode
        assert inner.blocks[0].drop_path1.training is mode  # follows its (adapted) block
        assert not inner.patch_embed.training  # frozen, no adapter
        assert not inner.blocks[0].norm1.training
        assert not inner.blocks[0].attn.qkv.base.training
        assert model.decoder.training is mode


@pytest.mark.parametrize("kind", ["none", "lora"])
def test_eval_mode_is_unchanged(kind: str) -> None:
    model = vit(AdapterConfig(type=kind, rank=4)).eval()
    assert not any(m.training for m in model.modules())
