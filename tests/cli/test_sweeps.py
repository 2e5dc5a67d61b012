"""W&B sweep files: valid, and the exact command an agent runs trains through our CLI.

The command is built with wandb's own agent helpers (``create_sweep_command``,
``create_sweep_command_args``), which render ``${args}`` as ``--name=value``; the macros are
filled as ``wandb agent`` fills them. wandb's schema validation needs the optional ``sweeps``
package (not installed: it pins an older numpy), so the schema fields are checked here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from anomalyvfm.cli import main
from tests.conftest import REPO
from tests.helpers import TINY

SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
METHODS = {"grid", "random", "bayes"}
DISTRIBUTIONS = {"uniform", "log_uniform_values", "int_uniform", "q_uniform", "categorical"}
PAPER_BACKBONES = {
    "vit_large_patch16_radio_v3.c_radio",
    "vit_large_patch14_reg4_dinov2.lvd142m",
    "vit_large_patch16_dinov3.lvd1689m",
    "naflexvit_so400m_patch16_siglip.v2_webli",
    "vit_large_patch14_clip_quickgelu_336.openai",
}


def backbone_name(config: Path) -> str:
    """The backbone a paper config names (an overlay on base.yaml, with dotted keys)."""
    return str(yaml.safe_load(config.read_text())["model.init_args.backbone.name"])


def check_schema(sweep: dict[str, Any], name: str) -> None:
    """The fields ``wandb sweep`` requires of a ``command:`` sweep."""
    assert sweep.get("method") in METHODS, f"{name}: method must be one of {METHODS}"
    if sweep["method"] == "bayes" or "metric" in sweep:
        assert sweep["metric"]["goal"] in ("minimize", "maximize") and sweep["metric"]["name"]
    params = sweep["parameters"]
    assert params, f"{name}: no parameters"
    for key, spec in params.items():
        assert key.replace(".", "").replace("_", "").isalnum(), f"{name}: bad name {key}"
        kinds = {"value", "values", "distribution"} & set(spec)
        assert len(kinds) == 1, f"{name}: {key} needs exactly one of value/values/distribution"
        if "distribution" in spec:
            assert spec["distribution"] in DISTRIBUTIONS and spec["min"] < spec["max"]
            assert sweep["method"] != "grid", f"{name}: grid cannot sample {key}"
    command = sweep["command"]
    assert command[:5] == ["${env}", "${interpreter}", "-m", "anomalyvfm", "fit"], name
    assert command[-1] == "${args}" and "${program}" not in command


def sample(sweep: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One parameter set, drawn as a random/grid search would draw it."""
    out: dict[str, Any] = {}
    for key, spec in sweep["parameters"].items():
        if "value" in spec:
            out[key] = spec["value"]
        elif "values" in spec:
            out[key] = spec["values"][int(rng.integers(len(spec["values"])))]
        elif spec["distribution"] == "log_uniform_values":
            out[key] = float(math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"]))))
        elif spec["distribution"] == "int_uniform":
            out[key] = int(rng.integers(spec["min"], spec["max"] + 1))
        else:
            out[key] = float(rng.uniform(spec["min"], spec["max"]))
    return out


def agent_command(sweep: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The argv ``wandb agent`` runs for ``params`` (as in ``wandb_agent.Agent._command_run``)."""
    from wandb.sdk.launch.sweeps import utils

    command = utils.create_sweep_command(list(sweep["command"]))
    macros = utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    macros.update(interpreter=["python"], env=["/usr/bin/env"])
    argv: list[str] = []
    for chunk in map(str, command):
        is_macro = chunk.startswith("${") and chunk.endswith("}")
        argv += (macros.get(chunk[2:-1]) or []) if is_macro else [chunk]
    return argv


def to_tiny(argv: list[str], tmp: Path, normal_dir: Path) -> list[str]:
    """CLI args of ``argv`` with the tiny config and few steps, for a CPU test run."""
    assert argv[:4] == ["/usr/bin/env", "python", "-m", "anomalyvfm"]
    args, out, i = argv[4:], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--config":
            assert (REPO / args[i + 1]).is_file(), args[i + 1]
            out += ["--config", TINY]
            i += 2
            continue
        if arg.startswith("--config="):
            assert (REPO / arg.split("=", 1)[1]).is_file(), arg
            arg = f"--config={TINY}"
        elif arg.startswith("--trainer.max_steps="):
            arg = "--trainer.max_steps=2"
        out.append(arg)
        i += 1
    return [*out, f"--data.normal_dir={normal_dir}", f"--trainer.default_root_dir={tmp}"]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_samples_run_through_the_cli(path: Path, tmp_path: Path, normal_dir: Path) -> None:
    sweep = yaml.safe_load(path.read_text())
    check_schema(sweep, path.name)
    params = sample(sweep, np.random.default_rng(0))
    argv = agent_command(sweep, params)
    # wandb renders every parameter as --name=value after the fixed part of the command.
    assert argv[-len(params) :] == [f"--{k}={v}" for k, v in params.items()]
    cli = main(to_tiny(argv, tmp_path, normal_dir))
    assert cli.trainer.global_step == 2
    hparams = cli.model.hparams
    if "model.init_args.lr" in params:
        assert hparams["lr"] == pytest.approx(params["model.init_args.lr"])
        lr = cli.trainer.optimizers[0].param_groups[0]["lr"]
        assert lr == pytest.approx(params["model.init_args.lr"])
    if "model.init_args.adapter.rank" in params:
        assert hparams["adapter"]["rank"] == params["model.init_args.adapter.rank"]
        qkv = cli.model.model.backbone.model.blocks[0].attn.qkv
        assert qkv.rank == params["model.init_args.adapter.rank"]
    if "config" in params:
        assert backbone_name(REPO / params["config"]) in PAPER_BACKBONES


def test_backbone_sweep_covers_the_five_paper_configs() -> None:
    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "backbones.yaml").read_text())
    names = {backbone_name(REPO / p) for p in sweep["parameters"]["config"]["values"]}
    assert sweep["method"] == "grid" and names == PAPER_BACKBONES
