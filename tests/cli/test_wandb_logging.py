"""W&B: offline without credentials (never waits on the network), config and metrics logged."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from anomalyvfm.loggers import WandbLogger, wandb_credentials_present
from tests.helpers import TINY, run


@pytest.fixture
def no_wandb_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_offline_decision(no_wandb_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not wandb_credentials_present()
    assert WandbLogger(project="p", save_dir=str(no_wandb_credentials))._offline
    (no_wandb_credentials / "netrc").write_text("machine api.wandb.ai login user password k\n")
    assert wandb_credentials_present()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not WandbLogger(project="p", save_dir=str(no_wandb_credentials))._offline
    assert WandbLogger(offline=True, save_dir=str(no_wandb_credentials))._offline


def test_default_loggers_write_an_offline_wandb_run_and_csv(no_wandb_credentials, normal_dir):
    tmp = no_wandb_credentials
    # The tiny config switches logging off; without that key the CLI's defaults apply.
    config = yaml.safe_load(Path(TINY).read_text())
    del config["trainer"]["logger"]
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(config))
    cli = run(
        "fit",
        "--config",
        str(tmp / "tiny.yaml"),
        f"--data.normal_dir={normal_dir}",
        f"--trainer.default_root_dir={tmp}",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_checkpointing=false",
    )
    names = sorted(type(lg).__name__ for lg in cli.trainer.loggers)
    assert names == ["CSVLogger", "WandbLogger"]
    import wandb

    wandb.finish()  # the run stays open after fit; finishing flushes its files (as at exit)
    # Both default loggers write under trainer.default_root_dir (not ./runs).
    assert not (tmp / "runs").exists()
    runs = list((tmp / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
    rows = list(csv.DictReader(next(tmp.rglob("metrics.csv")).open()))
    assert any(r.get("train/loss") for r in rows)
