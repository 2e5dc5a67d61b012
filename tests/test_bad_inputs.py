"""Every command, run as a user runs it, on bad or awkward input: the exit status, and a short
message that names the offending option or file.

Each case is a real subprocess of a console command (``anomalyvfm``, ``lightning``,
``python -m anomalyvfm``, ``anomalyvfm-report``, ``python -m data_synthesis``, the benchmark).
Starting one costs ~6 s of imports, so the module is marked slow (CI runs it after the default
suite); one fast case per kind of failure stays in the default suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA

TINY = REPO / "tests" / "conf" / "anomalyvfm_tiny.yaml"
BIN = Path(sys.executable).parent
ANOMALYVFM = [str(BIN / "anomalyvfm")]
LIGHTNING = [str(BIN / "lightning")]
MODULE = [sys.executable, "-m", "anomalyvfm"]
REPORT = [str(BIN / "anomalyvfm-report")]
SYNTHESIS = [sys.executable, "-m", "data_synthesis"]
BENCH = [sys.executable, "-m", "anomalyvfm.bench"]


@dataclass
class Env:
    """Files the cases refer to (made once per session)."""

    tmp: Path
    normals: Path
    ckpt: Path

    def fit(self, *extra: str) -> list[str]:
        return [
            "fit",
            f"--config={TINY}",
            f"--data.normal_dir={self.normals}",
            f"--trainer.default_root_dir={self.tmp / 'runs'}",
            *extra,
        ]

    def eval(self, subcommand: str, *extra: str, ckpt: Path | bool = True) -> list[str]:
        """``subcommand`` on MPDD with the session's checkpoint (``ckpt``: another path, or
        False for none)."""
        args = [
            subcommand,
            f"--config={TINY}",
            f"--trainer.default_root_dir={self.tmp / 'runs'}",
            "--data.test_datasets+=MPDD",
            f"--data.test_datasets.root={SHARED_DATA / 'mpdd'}",
            "--trainer.limit_test_batches=1",
            "--trainer.limit_predict_batches=1",
        ]
        if subcommand == "validate":
            args[3:5] = [
                "--data.val_datasets+=MPDD",
                f"--data.val_datasets.root={SHARED_DATA}/mpdd",
            ]
            args.append("--trainer.limit_val_batches=1")
        if ckpt:
            args.append(f"--ckpt_path={self.ckpt if ckpt is True else ckpt}")
        return args + list(extra)


@dataclass
class Case:
    """One bad input: the command (built from the session's files), the expected exit status,
    and strings the output (stdout + stderr) must contain."""

    id: str
    command: Callable[[Env], list[str]]
    code: int | tuple[int, ...]
    names: list[str] | Callable[[Env], list[str]]
    fast: bool = False
    no_traceback: bool = True
    env: dict[str, str] = field(default_factory=dict)


def _truncated(env: Env) -> Path:
    path = env.tmp / "truncated.ckpt"
    path.write_bytes(env.ckpt.read_bytes()[:4096])
    return path


def _garbage(env: Env) -> Path:
    path = env.tmp / "garbage.ckpt"
    path.write_text("not a checkpoint\n")
    return path


def _empty_dir(env: Env) -> Path:
    path = env.tmp / "empty_run"
    path.mkdir(exist_ok=True)
    return path


CASES = [
    # --- option parsing (jsonargparse): one line, exit 2 ---
    Case(
        "fit-rank-not-int",
        lambda e: ANOMALYVFM + e.fit("--model.init_args.adapter.rank=abc"),
        2,
        ["--model.init_args.adapter.rank", "abc"],
        fast=True,
    ),
    Case(
        "fit-unknown-option",
        lambda e: ANOMALYVFM + e.fit("--model.init_args.no_such_option=1"),
        2,
        ["no_such_option"],
    ),
    Case(
        "fit-missing-config",
        lambda e: ANOMALYVFM + ["fit", f"--config={e.tmp / 'nope.yaml'}"],
        2,
        lambda e: [str(e.tmp / "nope.yaml")],
    ),
    Case(
        "fit-max-steps-not-int",
        lambda e: LIGHTNING + e.fit("--trainer.max_steps=abc"),
        2,
        ["--trainer.max_steps", "abc"],
    ),  # fmt: skip
    Case("module-no-subcommand", lambda e: MODULE, 2, ["subcommand"]),
    Case("module-unknown-subcommand", lambda e: MODULE + ["train"], 2, ["train"]),
    Case(
        "lightning-bad-image-score",
        lambda e: LIGHTNING + e.fit("--model.init_args.image_score=maximum"),
        2,
        ["image_score", "maximum"],
    ),
    # --- errors raised while building or running: one message, exit 1 ---
    Case(
        "fit-missing-normal-dir",
        lambda e: ANOMALYVFM + e.fit(f"--data.normal_dir={e.tmp / 'no_normals'}"),
        1,
        lambda e: [str(e.tmp / "no_normals")],
        fast=True,
    ),
    Case(
        "test-missing-checkpoint",
        lambda e: ANOMALYVFM + e.eval("test", ckpt=e.tmp / "missing.ckpt"),
        1,
        lambda e: ["--ckpt_path", str(e.tmp / "missing.ckpt")],
        fast=True,
    ),
    Case(
        "test-truncated-checkpoint",
        lambda e: ANOMALYVFM + e.eval("test", ckpt=_truncated(e)),
        1,
        lambda e: [str(e.tmp / "truncated.ckpt"), "cannot be read"],
    ),
    Case(
        "predict-garbage-checkpoint",
        lambda e: MODULE + e.eval("predict", ckpt=_garbage(e)),
        1,
        lambda e: [str(e.tmp / "garbage.ckpt"), "cannot be read"],
    ),
    Case(
        "validate-missing-checkpoint",
        lambda e: LIGHTNING + e.eval("validate", ckpt=e.tmp / "gone.ckpt"),
        1,
        lambda e: [str(e.tmp / "gone.ckpt")],
    ),
    Case(
        "test-architecture-contradicts-checkpoint",
        lambda e: ANOMALYVFM + e.eval("test", "--model.init_args.adapter.rank=8"),
        1,
        ["model.init_args.adapter.rank=8", "checkpoint: 4"],
        fast=True,
    ),
    Case(
        "test-backbone-contradicts-checkpoint",
        lambda e: (
            ANOMALYVFM + e.eval("test", "--model.init_args.backbone.name=vit_small_patch16_224")
        ),
        1,
        ["model.init_args.backbone.name", "vit_small_patch16_224"],
    ),
    Case(
        "test-decoder-contradicts-checkpoint",
        lambda e: MODULE + e.eval("test", "--model.init_args.decoder.num_up_blocks=2"),
        1,
        ["model.init_args.decoder.num_up_blocks"],
    ),
    Case(
        "test-wrong-dataset-root",
        lambda e: ANOMALYVFM + e.eval("test", f"--data.test_datasets.root={e.tmp / 'no_mpdd'}"),
        1,
        lambda e: [str(e.tmp / "no_mpdd")],
    ),
    Case(
        "fit-gpu-without-gpu",
        lambda e: ANOMALYVFM + e.fit("--trainer.accelerator=gpu"),
        1,
        ["gpu"],
    ),
    # --- not failures, but said: exit 0 with a one-line notice ---
    Case(
        "fit-ckpt-last-without-checkpoint",
        lambda e: (
            ANOMALYVFM
            + e.fit("--ckpt_path=last", f"--trainer.default_root_dir={e.tmp / 'fresh_root'}")
        ),
        0,
        ["--ckpt_path last: no last checkpoint", "from scratch"],
    ),
    Case(
        "test-without-checkpoint-warns",
        lambda e: ANOMALYVFM + e.eval("test", ckpt=False),
        0,
        ["no --ckpt_path given"],
    ),
    # --- the other tools ---
    Case(
        "report-missing-run",
        lambda e: REPORT + [str(e.tmp / "no_run"), "--out", str(e.tmp / "report")],
        (1, 2),
        lambda e: [str(e.tmp / "no_run")],
    ),
    Case(
        "report-run-without-results",
        lambda e: REPORT + [str(_empty_dir(e)), "--out", str(e.tmp / "report")],
        (1, 2),
        lambda e: [str(e.tmp / "empty_run")],
    ),
    Case("synthesis-unknown-command", lambda e: SYNTHESIS + ["make"], 2, ["make"]),
    Case(
        "synthesis-missing-config",
        lambda e: (
            SYNTHESIS
            + ["generate", "--config", str(e.tmp / "nope.yaml"), "--out", str(e.tmp / "syn")]
        ),
        (1, 2),
        lambda e: [str(e.tmp / "nope.yaml")],
    ),
    Case(
        "synthesis-preview-missing-source",
        lambda e: (
            SYNTHESIS
            + ["preview", "--source", str(e.tmp / "no_src"), "--out", str(e.tmp / "p.png")]
        ),
        (1, 2),
        lambda e: [str(e.tmp / "no_src")],
    ),
    Case(
        "bench-zero-steps",
        lambda e: BENCH + ["--config", str(TINY), "--steps", "0"],
        2,
        ["--steps", "at least 1"],
        fast=True,
    ),
    Case(
        "bench-missing-config",
        lambda e: BENCH + ["--config", str(e.tmp / "nope.yaml"), "--loader-only"],
        (1, 2),
        lambda e: [str(e.tmp / "nope.yaml")],
    ),
]


@pytest.fixture(scope="session")
def bad_env(tmp_path_factory: pytest.TempPathFactory, normal_dir: Path) -> Env:
    """A tiny trained checkpoint (one real ``anomalyvfm fit``) and a scratch folder."""
    tmp = tmp_path_factory.mktemp("bad_inputs")
    proc = subprocess.run(
        ANOMALYVFM
        + [
            "fit",
            f"--config={TINY}",
            f"--data.normal_dir={normal_dir}",
            f"--trainer.default_root_dir={tmp / 'trained'}",
            "--trainer.max_steps=1",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Env(tmp, normal_dir, next((tmp / "trained").rglob("*.ckpt")))


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "CUDA_VISIBLE_DEVICES": "",
    }
    env.pop("ANOMALYVFM_DEBUG", None)
    return {**env, **(extra or {})}


def _params() -> list:
    return [
        pytest.param(case, id=case.id, marks=() if case.fast else pytest.mark.slow)
        for case in CASES
    ]


@pytest.mark.skipif(not (SHARED_DATA / "mpdd").is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize("case", _params())
def test_bad_input_fails_in_one_clear_message(case: Case, bad_env: Env) -> None:
    proc = subprocess.run(
        case.command(bad_env),
        capture_output=True,
        text=True,
        env=_env(case.env),
        cwd=bad_env.tmp,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    assert proc.returncode in codes, output[-3000:]
    names = case.names(bad_env) if callable(case.names) else case.names
    for name in names:
        assert name in output, f"{name!r} not in:\n{output[-3000:]}"
    if case.no_traceback:
        assert "Traceback" not in output, output[-3000:]
    if proc.returncode:
        # The error itself is short: the line naming it and a hint (no usage text).
        error_lines = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
        assert error_lines and len(proc.stderr.strip().splitlines()) < 40, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mpdd").is_dir(), reason="needs ../shared/data")
def test_debug_shows_the_traceback(bad_env: Env) -> None:
    args = ANOMALYVFM + bad_env.eval("test", ckpt=_garbage(bad_env))
    for extra_args, env in (([*args, "--debug"], {}), (args, {"ANOMALYVFM_DEBUG": "1"})):
        proc = subprocess.run(
            extra_args, capture_output=True, text=True, env=_env(env), cwd=bad_env.tmp
        )
        assert proc.returncode == 1
        assert "Traceback" in proc.stderr and "garbage.ckpt" in proc.stderr
