"""Ablation configs: each changes exactly its keys of the paper config, and they train."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.helpers import fit_args, run

RADIO = REPO / "experiments" / "configs" / "anomalyvfm_radio.yaml"
ABLATIONS = REPO / "experiments" / "configs" / "ablations"
MODEL = "model.init_args."
GENERATORS = "data.init_args.generators"

# What each file must change (flattened printed config keys -> value); generator files instead
# keep one entry of the paper config's generator list (by index).
EXPECTED: dict[str, dict[str, Any]] = {
    "lora": {MODEL + "adapter.type": "lora"},
    "rank_16": {MODEL + "adapter.rank": 16},
    "rank_128": {MODEL + "adapter.rank": 128},
    "adapters_qkv": {MODEL + "adapter.qkv_parts": "qkv"},
    "adapters_none": {MODEL + "adapter.type": "none"},
    "no_confidence": {MODEL + "loss.confidence": False},
    "no_clip": {MODEL + "loss.clip_low": 0.0, MODEL + "loss.clip_high": 1.0},
    "two_upblocks": {MODEL + "decoder.num_up_blocks": 2},
    "reference_fp32": {
        "trainer.precision": "32-true",
        MODEL + "compile": "never",
        MODEL + "decoder.channels_last": False,
    },
}
KEEP_GENERATOR = {"generators_noise_only": 0, "generators_cutpaste_only": 1}


def printed_config(*args: str) -> dict[str, Any]:
    """``anomalyvfm fit <args> --print_config`` parsed back."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        run("fit", *args, "--print_config")
    assert exc.value.code in (0, None)
    return yaml.safe_load(out.getvalue())


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {
            k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}{key}.").items()
        }
    if isinstance(tree, list):
        return {
            k: v for i, sub in enumerate(tree) for k, v in flatten(sub, f"{prefix}{i}.").items()
        }
    return {prefix[:-1]: tree}


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return printed_config("--config", str(RADIO))


def test_every_ablation_file_is_covered() -> None:
    assert {p.stem for p in ABLATIONS.glob("*.yaml")} == set(EXPECTED) | set(KEEP_GENERATOR)
    for path in ABLATIONS.glob("*.yaml"):
        text = path.read_text()
        # Each file says what it ablates, where docs/method.md discusses it, and how to run it.
        assert text.startswith("# Ablation: ") and "docs/method.md" in text
        assert f"--config experiments/configs/ablations/{path.name}" in text


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=str)
def test_ablation_changes_only_its_keys(name: str, base: dict[str, Any]) -> None:
    printed = flatten(
        printed_config("--config", str(RADIO), "--config", str(ABLATIONS / f"{name}.yaml"))
    )
    reference = flatten(base)
    changed = {
        k: printed.get(k)
        for k in set(printed) | set(reference)
        if printed.get(k) != reference.get(k)
    }
    assert changed == EXPECTED[name]
    assert all(reference[k] != v for k, v in EXPECTED[name].items())  # a real change


@pytest.mark.parametrize("name", sorted(KEEP_GENERATOR), ids=str)
def test_generator_ablation_keeps_one_paper_generator(name: str, base: dict[str, Any]) -> None:
    printed = printed_config("--config", str(RADIO), "--config", str(ABLATIONS / f"{name}.yaml"))
    paper = base["data"]["init_args"]["generators"]
    assert len(paper) == 4  # noise textures, then cut-paste with three mask types
    assert printed["data"]["init_args"]["generators"] == [paper[KEEP_GENERATOR[name]]]
    # The paper config's weights go with its list (one generator needs none).
    assert printed["data"]["init_args"]["generator_weights"] is None
    generator_keys = (GENERATORS, "data.init_args.generator_weights")
    rest = {k: v for k, v in flatten(printed).items() if not k.startswith(generator_keys)}
    assert rest == {k: v for k, v in flatten(base).items() if not k.startswith(generator_keys)}


def test_no_adapters_and_no_confidence_train(tmp_path: Path, normal_dir: Path) -> None:
    ablations = [f"--config={ABLATIONS / n}.yaml" for n in ("adapters_none", "no_confidence")]
    cli = run(*fit_args(tmp_path, normal_dir, *ablations, "--trainer.max_steps=1"))
    assert cli.trainer.global_step == 1
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    backbone, decoder = cli.model.model.backbone, cli.model.model.decoder
    assert not any(p.requires_grad for p in backbone.parameters())  # decoder and head only
    assert all(p.requires_grad for p in decoder.parameters())
    assert cli.model.loss_config.confidence is False


def test_two_upblocks_with_cutpaste_only_train(tmp_path: Path, normal_dir: Path) -> None:
    ablations = [
        f"--config={ABLATIONS / n}.yaml" for n in ("two_upblocks", "generators_cutpaste_only")
    ]
    cli = run(*fit_args(tmp_path, normal_dir, *ablations, "--trainer.max_steps=1"))
    assert cli.trainer.global_step == 1
    assert [type(g).__name__ for g in cli.datamodule.generators] == ["CutPasteGenerator"]
    model = cli.model.model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 56, 56))
    # 56 px / patch 14 = 4x4 tokens, two x2 up-blocks -> 16x16 maps.
    assert len(model.decoder.up_blocks) == 2 and out.anomaly_logits.shape[-2:] == (16, 16)
