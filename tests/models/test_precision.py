"""The speed settings keep the numbers: bf16 vs fp32, channels-last, checkpointing, compile."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor

from anomalyvfm.backbones.adapters import AdapterConfig
from anomalyvfm.backbones.timm_backbone import BackboneConfig
from anomalyvfm.batch import Batch
from anomalyvfm.bench.loops import TrainStepper
from anomalyvfm.bench.syncs import HostSyncCounter, optimizer_host_tensors
from anomalyvfm.models.decoder import Decoder, DecoderConfig
from anomalyvfm.tasks import AnomalyVFM
from tests.conftest import TINY_VIT


def tiny_task(seed: int = 0, **kwargs: object) -> AnomalyVFM:
    torch.manual_seed(seed)
    backbone = BackboneConfig(
        name="vit_small_patch14_dinov2",
        model_kwargs=dict(TINY_VIT),
        grad_checkpointing=bool(kwargs.pop("grad_checkpointing", False)),
    )
    task = AnomalyVFM(backbone=backbone, adapter=AdapterConfig(rank=4), image_size=56, **kwargs)
    # Non-zero B, so the adapters (and DoRA's norms) take part in the numbers compared.
    with torch.no_grad():
        for name, p in task.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    return task


def batches(count: int, seed: int = 1) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        mask = (torch.rand(2, 56, 56, generator=g) > 0.85).float()
        mask[0] = 0
        batch = {"image": torch.rand(2, 3, 56, 56, generator=g), "mask": mask}
        batch["label"] = torch.tensor([0.0, 1.0])
        out.append(batch)
    return out  # type: ignore[return-value]


def trainer(precision: str) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        precision=precision,  # type: ignore[arg-type]
        accumulate_grad_batches=1,
        max_steps=100,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )


def loss_and_grads(task: AnomalyVFM, batch: Batch, precision: str) -> tuple[Tensor, Tensor]:
    plugin = trainer(precision).precision_plugin
    with plugin.forward_context():
        loss = task.losses(batch).loss
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in task.parameters() if p.grad is not None])
    task.zero_grad(set_to_none=True)
    return loss.detach().float(), grads.float()


def test_bf16_and_fp32_losses_and_gradients_agree() -> None:
    task = tiny_task()
    batch = batches(1)[0]
    loss32, grad32 = loss_and_grads(task, batch, "32-true")
    loss16, grad16 = loss_and_grads(task, batch, "bf16-mixed")
    assert loss16 != loss32  # bf16 really ran (different rounding)
    assert abs(loss16 - loss32) / loss32 < 1e-2
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cosine > 0.99


def test_bf16_training_tracks_fp32_training() -> None:
    data = batches(6)
    curves = {}
    for precision in ("32-true", "bf16-mixed"):
        task = tiny_task(lr=1e-3)
        stepper = TrainStepper(task, trainer(precision))
        curves[precision] = torch.stack([stepper.step(b) for b in data]).float()
    fp32, bf16 = curves["32-true"], curves["bf16-mixed"]
    assert not torch.equal(fp32, bf16)
    assert torch.allclose(bf16, fp32, rtol=2e-2), (fp32, bf16)
    assert fp32[-1] != fp32[0]  # the weights moved, so later steps compare trained models


def test_training_step_makes_no_host_syncs() -> None:
    task = tiny_task()
    stepper = TrainStepper(task, trainer("bf16-mixed"))
    data = batches(3)
    stepper.step(data[0])  # creates the optimizer state
    with HostSyncCounter(optimizer_host_tensors(stepper.optimizer)) as syncs:
        for batch in data[1:]:
            stepper.step(batch)
    assert syncs.total == 0, syncs.calls
    # The counter does see syncs: branching on the loss and reading it are two.
    with HostSyncCounter(optimizer_host_tensors(stepper.optimizer)) as syncs:
        loss = stepper.step(data[0])
        if loss > 0:
            loss.item()
    assert dict(syncs.calls) == {"__bool__": 1, "item": 1}
    # Without the exclusion, AdamW's host-side step counters are read once per parameter.
    with HostSyncCounter() as syncs:
        stepper.step(data[0])
    assert syncs.calls["item"] == len(stepper.optimizer.state)


def test_channels_last_decoder_matches_nchw() -> None:
    torch.manual_seed(0)
    plain = Decoder(64, DecoderConfig(channels_last=False))
    fast = Decoder(64, DecoderConfig(channels_last=True))
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(2, 64, 6, 6)
    a, b = plain(x), fast(x)
    assert b.anomaly_logits.is_contiguous(memory_format=torch.channels_last)
    assert next(fast.parameters()).is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(a.anomaly_logits, b.anomaly_logits, atol=1e-5)
    assert torch.allclose(a.confidence_logits, b.confidence_logits, atol=1e-5)


def test_grad_checkpointing_recomputes_blocks_with_equal_gradients() -> None:
    batch = batches(1)[0]
    results = {}
    for checkpointing in (False, True):
        task = tiny_task(grad_checkpointing=checkpointing)
        calls: list[int] = []
        for block in task.model.backbone.model.blocks:
            block.register_forward_pre_hook(lambda *_, log=calls: log.append(1))
        results[checkpointing] = (*loss_and_grads(task, batch, "32-true"), len(calls))
    (loss_a, grad_a, calls_a), (loss_b, grad_b, calls_b) = results[False], results[True]
    assert torch.equal(loss_a, loss_b)
    assert torch.allclose(grad_a, grad_b, atol=1e-6)
    depth = TINY_VIT["depth"]
    # Each block starts again in the backward (the recomputation stops early once it has the
    # saved tensors it needs, so only pre-hooks see it).
    assert (calls_a, calls_b) == (depth, 2 * depth)


def test_compile_cuda_leaves_cpu_runs_eager() -> None:
    task = tiny_task(compile="cuda")
    assert task.compile_modules(torch.device("cpu")) is False
    assert task.model.backbone._compiled_call_impl is None


@pytest.mark.slow
def test_compiled_training_matches_eager() -> None:
    """torch.compile on CPU (inductor needs a C++ compiler; about a minute on 2 cores)."""
    batch = batches(1)[0]
    eager = tiny_task()
    compiled = tiny_task(compile="always")
    assert compiled.compile_modules(torch.device("cpu")) is True
    loss_a, grad_a = loss_and_grads(eager, batch, "32-true")
    loss_b, grad_b = loss_and_grads(compiled, batch, "32-true")
    assert torch.allclose(loss_a, loss_b, rtol=1e-5)
    assert torch.allclose(grad_a, grad_b, atol=1e-5)


def test_compiled_parts_trace_without_graph_breaks() -> None:
    """Backbone (timm forward_intermediates with DoRA adapters), decoder and loss each trace
    into one graph: a graph break would fall back to eager Python in the middle of a step."""
    import torch._dynamo as dynamo

    task = tiny_task()
    batch = batches(1)[0]
    feats = task.model.backbone(batch["image"])
    dec = task.model.decoder(feats.patch_features)
    calls = [
        (task.model.backbone, (batch["image"],)),
        (task.model.decoder, (feats.patch_features,)),
        (
            task.criterion,
            (
                dec.anomaly_logits,
                dec.confidence_logits,
                torch.zeros(2),
                batch["mask"],
                batch["label"],
            ),
        ),
    ]
    for module, args in calls:
        explained = dynamo.explain(module)(*args)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), (
            type(module).__name__,
            [b.reason for b in explained.break_reasons],
        )


def test_compile_applies_to_fit_and_to_evaluation_only_on_request() -> None:
    """setup() compiles for fit; test runs stay eager unless compile_eval (compilation of a large
    backbone costs more than a benchmark-sized test set)."""
    trainer_ = trainer("32-true")
    for stage, compile_eval, expected in (
        ("fit", False, True),
        ("test", False, False),
        ("test", True, True),
    ):
        task = tiny_task(compile="always", compile_eval=compile_eval)
        task.trainer = trainer_
        task.setup(stage)
        assert task.compiled is expected
        assert (task.model.backbone._compiled_call_impl is not None) is expected
