"""The real command line on tiny configs: fit, test, predict, checkpoints, configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from anomalyvfm.checkpoint_options import file_sha256
from anomalyvfm.cli import main
from tests.conftest import REPO, SHARED_DATA
from tests.helpers import FAMILIES, TINY, fit_args, run

EXPERIMENTS = sorted((REPO / "experiments" / "configs").glob("anomalyvfm_*.yaml"))


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_configs_resolve(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run("fit", "--config", str(config), "--print_config")
    assert exc.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    # Each backbone config is an overlay on base.yaml that names its backbone by a dotted key.
    source = yaml.safe_load(config.read_text())
    init = printed["model"]["init_args"]
    assert init["backbone"]["name"] == source["model.init_args.backbone.name"]
    assert init["adapter"]["rank"] == 64 and init["adapter"]["alpha"] == 1.0
    # Every backbone gets a 48x48 token grid (model.image_size is linked from data.image_size).
    patch = 14 if "patch14" in init["backbone"]["name"] else 16
    assert printed["data"]["init_args"]["image_size"] == 48 * patch
    assert (
        printed["trainer"]["accumulate_grad_batches"] * printed["data"]["init_args"]["batch_size"]
        == 32
    )


SUITES = {
    "industrial": [
        "MVTecAD",
        "VisA",
        "RealIAD",
        "MPDD",
        "BTAD",
        "KSDD",
        "KSDD2",
        "DAGM",
        "DTDSynthetic",
    ],
    "medical": [
        "HeadCT",
        "BrainMRI",
        "Br35H",
        "ISIC",
        "CVCClinicDB",
        "CVCColonDB",
        "Kvasir",
        "Endo",
        "TN3K",
    ],
    "shared_data": ["MTD", "MPDD", "HeadCT"],
}


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_eval_suite_config_composes(suite: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(
            "test",
            "--config",
            str(EXPERIMENTS[0]),
            "--config",
            str(REPO / f"experiments/configs/eval/{suite}.yaml"),
            "--config",
            str(REPO / "experiments/configs/eval/reference_protocol.yaml"),
            "--print_config",
        )
    printed = yaml.safe_load(capsys.readouterr().out)
    names = [d["class_path"] for d in printed["data"]["init_args"]["test_datasets"]]
    assert names == [f"anomalyvfm.data.{n}" for n in SUITES[suite]]
    callbacks = [c["class_path"].rsplit(".", 1)[-1] for c in printed["trainer"]["callbacks"]]
    assert callbacks == ["ResultsWriter", "WorstBestGrid"]
    assert printed["data"]["init_args"]["eval_mask_size"] == 96
    assert printed["model"]["init_args"]["metric_mode"] == "reference_binned"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_backbone_family_trains_through_the_cli(family, tmp_path, normal_dir) -> None:
    size = 56 if "patch14" in FAMILIES[family] else 64
    cli = run(
        *fit_args(
            tmp_path,
            normal_dir,
            f"--model.backbone.name={FAMILIES[family]}",
            f"--data.image_size={size}",
            "--trainer.enable_checkpointing=false",
        )
    )
    assert cli.trainer.global_step == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


def test_gradient_accumulation_counts_optimizer_steps(tmp_path, normal_dir) -> None:
    cli = run(
        *fit_args(
            tmp_path,
            normal_dir,
            "--trainer.max_steps=3",
            "--trainer.accumulate_grad_batches=3",
            "--trainer.enable_checkpointing=false",
        )
    )
    assert cli.trainer.global_step == 3
    assert cli.trainer.fit_loop.epoch_loop.batch_progress.total.completed == 9


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_precisions_train(precision, tmp_path, normal_dir) -> None:
    cli = run(
        *fit_args(
            tmp_path,
            normal_dir,
            f"--trainer.precision={precision}",
            "--trainer.enable_checkpointing=false",
        )
    )
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


def test_dotted_overrides_reach_the_model(tmp_path, normal_dir) -> None:
    cli = run(
        *fit_args(
            tmp_path,
            normal_dir,
            "--model.adapter.rank=8",
            "--model.adapter.type=lora",
            "--model.lr=3e-4",
            "--trainer.max_steps=1",
            "--trainer.enable_checkpointing=false",
        )
    )
    qkv = cli.model.model.backbone.model.blocks[0].attn.qkv
    assert qkv.rank == 8 and not qkv.dora
    assert cli.model.hparams["image_size"] == cli.datamodule.image_size == 56  # linked
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(3e-4)


@pytest.mark.parametrize(
    "option", ["--model.init_args.backbone.checkpoint_path", "--model.backbone.checkpoint_path"]
)
def test_an_optional_option_can_be_reset_to_null(option: str, tmp_path: Path) -> None:
    # A weights file set by one config and reset on the command line: the model gets None (a
    # random backbone), not the string "None" (which it would try to open as a file).
    base = tmp_path / "with_weights.yaml"
    base.write_text(
        "model:\n  init_args:\n    backbone:\n      checkpoint_path: /weights/vit.safetensors\n"
    )
    cli = main(["--config", TINY, "--config", str(base), f"{option}=null"], run=False)
    assert cli.model.backbone_config.checkpoint_path is None
    assert cli.model.backbone_config.name == "vit_small_patch14_dinov2"


def test_checkpoint_keeps_only_trained_weights_and_reloads(tmp_path, normal_dir, mvtec_root):
    # A backbone with a weights source (here a local file) is not stored in the checkpoint.
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "backbone.safetensors"
    src = timm.create_model(
        "vit_small_patch14_dinov2",
        pretrained=False,
        img_size=56,
        depth=2,
        embed_dim=32,
        num_heads=2,
    )
    save_file(src.state_dict(), weights)
    source = f"--model.backbone.checkpoint_path={weights}"
    cli = run(*fit_args(tmp_path, normal_dir, source, "--trainer.max_steps=2"))
    ckpt_path = next((tmp_path).rglob("*.ckpt"))
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    keys = set(ckpt["state_dict"])
    trainable = {f"model.{n}" for n, p in cli.model.model.named_parameters() if p.requires_grad}
    assert trainable <= keys
    assert not any(k.startswith("model.backbone.model.patch_embed") for k in keys)
    assert ckpt["hyper_parameters"]["adapter"]["rank"] == 4

    results = tmp_path / "results.json"
    test = run(
        "test",
        "--config",
        TINY,
        source,
        f"--data.normal_dir={normal_dir}",
        f"--trainer.default_root_dir={tmp_path}",
        f"--ckpt_path={ckpt_path}",
        "--trainer.callbacks+=ResultsWriter",
        f"--trainer.callbacks.path={results}",
        "--data.test_datasets+=MVTecAD",
        f"--data.test_datasets.root={mvtec_root}",
    )
    # The reloaded model equals the trained one on every trained weight.
    trained = cli.model.state_dict()
    for key, value in test.model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    payload = json.loads(results.read_text())
    cats = payload["datasets"]["mvtec_ad"]["categories"]
    assert set(cats) == {"bottle", "tile"}
    for values in cats.values():
        assert set(values) == {
            "image_AUROC",
            "image_AP",
            "image_F1max",
            "pixel_AUROC",
            "pixel_AP",
            "pixel_F1max",
            "pixel_AUPRO",
        }
        assert all(0.0 <= v <= 1.0 for v in values.values())
    assert payload["eval_resolution"] == 28
    # What made the results: the checkpoint by path and hash, the backbone, the thresholds.
    assert payload["model"] == {
        "checkpoint": str(ckpt_path),
        "checkpoint_sha256": file_sha256(ckpt_path),
        "backbone": "vit_small_patch14_dinov2",
        "calibrated": False,
        "image_threshold": 0.5,
        "pixel_threshold": 0.5,
        "threshold_rule": None,
    }
    logged = test.trainer.callback_metrics
    assert "test/mvtec_ad/bottle/pixel_AUPRO" in logged and "test/mean/image_AUROC" in logged


def test_checkpoint_from_other_config_fails_clearly(tmp_path, normal_dir) -> None:
    run(*fit_args(tmp_path, normal_dir, "--trainer.max_steps=1"))
    ckpt_path = next(tmp_path.rglob("*.ckpt"))
    from anomalyvfm.tasks import AnomalyVFM

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "decoder" not in k}
    torch.save(ckpt, tmp_path / "broken.ckpt")
    with pytest.raises(KeyError, match="checkpoint lacks"):
        AnomalyVFM.load_from_checkpoint(tmp_path / "broken.ckpt", weights_only=True)
    model = AnomalyVFM.load_from_checkpoint(ckpt_path, weights_only=True)
    assert model.hparams["image_size"] == 56


def test_predict_from_checkpoint(tmp_path, normal_dir, mvtec_root) -> None:
    run(*fit_args(tmp_path, normal_dir, "--trainer.max_steps=1"))
    ckpt_path = next(tmp_path.rglob("*.ckpt"))
    cli = main(
        [
            "predict",
            "--config",
            TINY,
            f"--ckpt_path={ckpt_path}",
            f"--trainer.default_root_dir={tmp_path}",
            "--data.test_datasets+=MVTecAD",
            f"--data.test_datasets.root={mvtec_root}",
            "--data.test_datasets.categories=[tile]",
        ]
    )
    preds = cli.trainer.predict_loop.predictions
    assert sum(len(p["path"]) for p in preds) == 6
    assert preds[0]["anomaly_map"].shape[-2:] == (56, 56)


@pytest.mark.slow
def test_console_scripts_and_module_entry_point() -> None:
    bindir = Path(sys.executable).parent
    for cmd in (
        [str(bindir / "lightning"), "fit", "--help"],
        [str(bindir / "anomalyvfm"), "--help"],
        [sys.executable, "-m", "anomalyvfm", "test", "--help"],
    ):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "--config" in out.stdout


def _subprocess(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def _trained_checkpoint(tmp_path: Path, normal_dir: Path) -> Path:
    proc = _subprocess(
        [
            sys.executable,
            "-m",
            "anomalyvfm",
            *fit_args(tmp_path, normal_dir, "--trainer.max_steps=1"),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mpdd").is_dir(), reason="needs ../shared/data")
def test_evaluation_options_given_at_test_time_apply_over_the_checkpoint(
    tmp_path: Path, normal_dir: Path
) -> None:
    ckpt = _trained_checkpoint(tmp_path, normal_dir)
    out = tmp_path / "eval"
    proc = _subprocess(
        [
            str(Path(sys.executable).parent / "anomalyvfm"),
            "test",
            f"--config={TINY}",
            f"--config={REPO / 'experiments' / 'configs' / 'eval' / 'reference_protocol.yaml'}",
            f"--ckpt_path={ckpt}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.callbacks+=ResultsWriter",
            f"--trainer.callbacks.path={out / 'results.json'}",
            "--data.test_datasets+=MPDD",
            f"--data.test_datasets.root={SHARED_DATA / 'mpdd'}",
            "--trainer.limit_test_batches=2",
            "--model.init_args.fpr_limit=0.1",
            "--model.init_args.image_score=map_max",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    protocol = json.loads((out / "results.json").read_text())["protocol"]
    assert protocol["metric_mode"] == "reference_binned"  # from reference_protocol.yaml
    assert protocol["resolution"] == 96
    assert protocol["fpr_limit"] == 0.1 and protocol["image_score"] == "map_max"
    # What the checkpoint fixes still comes from it (the tiny config trains at 56 px).
    assert protocol["image_size"] == 56


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mpdd").is_dir(), reason="needs ../shared/data")
def test_every_command_exits_zero_on_success(tmp_path: Path, normal_dir: Path) -> None:
    bindir = Path(sys.executable).parent
    ckpt = _trained_checkpoint(tmp_path, normal_dir)  # python -m anomalyvfm fit
    data = [
        "--data.test_datasets+=MPDD",
        f"--data.test_datasets.root={SHARED_DATA / 'mpdd'}",
        "--trainer.limit_test_batches=1",
        "--trainer.limit_predict_batches=1",
    ]
    common = [f"--config={TINY}", f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={ckpt}"]
    results = tmp_path / "eval" / "results.json"
    commands = [
        [str(bindir / "anomalyvfm"), *fit_args(tmp_path / "again", normal_dir)],
        [
            str(bindir / "lightning"),
            "validate",
            *common,
            "--data.val_datasets+=MPDD",
            f"--data.val_datasets.root={SHARED_DATA / 'mpdd'}",
            "--trainer.limit_val_batches=1",
        ],
        [
            str(bindir / "anomalyvfm"),
            "test",
            *common,
            *data,
            "--trainer.callbacks+=ResultsWriter",
            f"--trainer.callbacks.path={results}",
        ],
        [sys.executable, "-m", "anomalyvfm", "predict", *common, *data],
        [str(bindir / "anomalyvfm-report"), str(results), "--out", str(tmp_path / "report")],
        [sys.executable, "-m", "anomalyvfm.report", str(results), "--out", str(tmp_path / "r2")],
        [
            sys.executable,
            "-m",
            "data_synthesis",
            "preview",
            "--source",
            str(normal_dir),
            "--generator",
            "cutpaste",
            "--num",
            "2",
            "--out",
            str(tmp_path / "sheet.png"),
        ],
        [
            sys.executable,
            "-m",
            "anomalyvfm.bench",
            f"--config={TINY}",
            f"--normal-dir={normal_dir}",
            "--loader-only",
            "--loader-batches=1",
        ],
    ]
    for cmd in commands:
        proc = _subprocess(cmd, tmp_path)
        assert proc.returncode == 0, (cmd, proc.stderr[-3000:])
    assert results.is_file() and (tmp_path / "sheet.png").is_file()
