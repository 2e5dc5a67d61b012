"""Every command, run as a user runs it, on bad or awkward input: the exit status, and a short
message that names the offending option or file.

Each case is a real subprocess of a console command (``anomalyvfm``, ``lightning``,
``python -m anomalyvfm``, ``anomalyvfm-report``, ``python -m data_synthesis``, the benchmark).
Starting one costs ~6 s of imports, so the module is marked slow (CI runs it after the default
suite); two fast cases (an option parse error, an option that contradicts a checkpoint) and
one of the benchmark stay in the default suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import REPO, SHARED_DATA
from tests.data.mvtec import data as mvtec_data
from tests.helpers import DNS_FAILURE, TINY, child_env, fit_args, silent_server

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
        return fit_args(self.tmp / "runs", self.normals, *extra)

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
    ),
    Case(
        "test-missing-checkpoint",
        lambda e: ANOMALYVFM + e.eval("test", ckpt=e.tmp / "missing.ckpt"),
        1,
        lambda e: ["--ckpt_path", str(e.tmp / "missing.ckpt")],
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
        lambda e: BENCH + ["--config", TINY, "--steps", "0"],
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
        ANOMALYVFM + fit_args(tmp / "trained", normal_dir, "--trainer.max_steps=1"),
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


# --- ``anomalyvfm test`` on bad data sets and unusual mask files -------------------------------
# Every case writes a tiny data set and runs ``python -m anomalyvfm test`` with the tiny config.

SIZE = 32
NUM = 3  # normal and anomalous images per set


def region_mask(i: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[4 : 12 + i, 6:18] = True
    return mask


# How the anomalous region of a mask is encoded in its file.
MASK_ENCODINGS = {
    "zero_255": lambda m: Image.fromarray(m.astype(np.uint8) * 255),
    "zero_one": lambda m: Image.fromarray(m.astype(np.uint8)),
    "red_on_black": lambda m: Image.fromarray(
        np.stack([m * 255, m * 0, m * 0], -1).astype(np.uint8)
    ),
    "all_black": lambda m: Image.fromarray(np.zeros(m.shape, np.uint8)),
}


def folder_set(root: Path, encoding: str = "zero_255", seed: int = 0) -> dict[str, Any]:
    """Writes a flat folder set (normal/, abnormal/, masks/) and returns its YAML entry."""
    rng = np.random.default_rng(seed)
    for sub in ("normal", "abnormal", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(NUM):
        normal = rng.uniform(0.3, 0.6, (SIZE, SIZE, 3))
        anomalous = rng.uniform(0.3, 0.6, (SIZE, SIZE, 3))
        anomalous[region_mask(i)] = 0.95
        Image.fromarray((normal * 255).astype(np.uint8)).save(root / "normal" / f"{i:02d}.png")
        Image.fromarray((anomalous * 255).astype(np.uint8)).save(root / "abnormal" / f"{i:02d}.png")
        MASK_ENCODINGS[encoding](region_mask(i)).save(root / "masks" / f"{i:02d}.png")
    return {
        "class_path": "FolderDataset",
        "init_args": {
            "normal_dir": "normal",
            "abnormal_dir": "abnormal",
            "mask_dir": "masks",
            "root": str(root),
            "name": root.name,
        },
    }


def run_cli(tmp: Path, datasets: list[dict[str, Any]], *extra: str) -> tuple[int, str, Path]:
    """Runs ``python -m anomalyvfm test`` on ``datasets``; returns (status, output, results)."""
    results = tmp / "out" / "results.json"
    config = {
        "trainer": {
            "callbacks": [
                {
                    "class_path": "ResultsWriter",
                    "init_args": {"path": str(results), "log_wandb": False},
                }
            ]
        },
        "data": {"init_args": {"test_datasets": datasets}},
    }
    config_file = tmp / "bad_data.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "1000",  # long paths stay on one line whatever prints them
    }
    command = [
        sys.executable,
        "-m",
        "anomalyvfm",
        "test",
        "--config",
        TINY,
        "--config",
        str(config_file),
        f"--trainer.default_root_dir={tmp / 'runs'}",
        *extra,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp, env=env)
    return done.returncode, done.stdout + done.stderr, results


def assert_fails_naming(status: int, output: str, *names: object) -> None:
    assert status != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for name in names:
        assert str(name) in output, f"{name} not in the output:\n{output[-3000:]}"


@pytest.mark.slow
class TestCommandLineOnBadData:
    """The command line on bad data: a non-zero status and the offending file or option named;
    on unusual but valid masks: a zero status and the masks read as drawn."""

    def test_missing_mask_file(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        (tmp_path / "parts" / "masks" / "01.png").unlink()
        status, output, results = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, tmp_path / "parts" / "masks" / "01", "is missing")
        assert not results.exists()

    def test_mask_of_the_wrong_size(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        mask = tmp_path / "parts" / "masks" / "02.png"
        Image.new("L", (SIZE // 2, SIZE)).save(mask)
        status, output, _ = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, mask, "is 16x32", "its image")

    def test_mask_file_that_is_not_an_image(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        mask = tmp_path / "parts" / "masks" / "00.png"
        mask.write_text("this is not a PNG")
        status, output, _ = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, f"cannot read mask {mask}")

    def test_empty_category_folder(self, tmp_path: Path) -> None:
        root = mvtec_data.write(tmp_path / "mvtec", size=SIZE, num_good=1, num_bad=1)
        for folder in (root / "tile" / "test").iterdir():
            for file in folder.iterdir():
                file.unlink()
        entry = {"class_path": "MVTecAD", "init_args": {"root": str(root)}}
        status, output, _ = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, f"no test images under {root / 'tile' / 'test'}")

    def test_eval_mask_size_zero(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        status, output, results = run_cli(tmp_path, [entry], "--data.eval_mask_size=0")
        assert_fails_naming(status, output, "data.eval_mask_size", "got 0")
        assert not results.exists()

    def test_eval_batch_size_zero(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        status, output, _ = run_cli(tmp_path, [entry], "--data.eval_batch_size=0")
        assert_fails_naming(status, output, "data.eval_batch_size must be a positive integer")

    def test_mask_threshold_given_as_a_grey_value(self, tmp_path: Path) -> None:
        entry = folder_set(tmp_path / "parts")
        entry["init_args"]["mask_threshold"] = 127
        status, output, _ = run_cli(tmp_path, [entry])
        assert_fails_naming(status, output, "mask_threshold must be a fraction in [0, 1)", "127")

    def test_corrupt_image_in_the_second_dataset_keeps_the_first_results(
        self, tmp_path: Path
    ) -> None:
        first = folder_set(tmp_path / "first")
        second = folder_set(tmp_path / "second", seed=1)
        broken = tmp_path / "second" / "abnormal" / "01.png"
        broken.write_bytes(broken.read_bytes()[:120])  # the header survives, the pixels do not
        status, output, results = run_cli(tmp_path, [first, second])
        assert_fails_naming(status, output, broken)
        payload = json.loads(results.read_text())
        assert list(payload["datasets"]) == ["first"]
        assert payload["datasets"]["first"]["categories"]["folder"]["pixel_AUROC"] is not None
        assert payload["incomplete"]["datasets_without_results"] == ["second"]
        assert str(broken) in payload["incomplete"]["error"]

    def test_coloured_and_zero_one_masks_read_as_drawn_and_empty_ones_are_reported(
        self, tmp_path: Path
    ) -> None:
        encodings = ["zero_255", "red_on_black", "zero_one", "all_black"]
        entries = [folder_set(tmp_path / name, name) for name in encodings]
        status, output, results = run_cli(tmp_path, entries)
        assert status == 0, output[-3000:]
        datasets = json.loads(results.read_text())["datasets"]
        assert list(datasets) == encodings
        reference = datasets["zero_255"]["categories"]["folder"]
        assert reference["pixel_AUROC"] is not None
        for name in ("red_on_black", "zero_one"):
            # Same images, same masks once read: the same pixel metrics as the 0/255 set.
            values = datasets[name]["categories"]["folder"]
            assert datasets[name]["empty_masks"] == 0
            for metric in ("pixel_AUROC", "pixel_AP", "pixel_AUPRO"):
                assert values[metric] == pytest.approx(reference[metric]), (name, metric)
        assert datasets["all_black"]["empty_masks"] == NUM
        assert datasets["all_black"]["categories"]["folder"]["pixel_AUROC"] is None
        example = tmp_path / "all_black" / "abnormal" / "00.png"
        warning = f"all_black: {NUM} defective image(s) have an empty mask, e.g. {example}"
        assert output.count(warning) == 1
        assert output.count("have an empty mask") == 1  # no other set is reported


# --- ``anomalyvfm fit`` with a bad model option or no way to the weights ---------------------

PRETRAINED = "--model.backbone.name=vit_small_patch14_dinov2.lvd142m"


def fit_cli(tmp: Path, normal_dir: Path, *overrides: str, env: dict[str, str] | None = None):
    cmd = MODULE + fit_args(tmp / "runs", normal_dir, "--trainer.max_steps=1", *overrides)
    env = env if env is not None else child_env(tmp, offline=True)
    start = time.monotonic()
    res = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=180)
    return res.returncode, res.stdout + res.stderr, time.monotonic() - start


def write_noise(path: Path, size: int = 2048) -> Path:
    path.write_bytes(bytes(range(256)) * (size // 256))
    return path


# id -> (overrides given the test's tmp folder, texts the output must contain)
MODEL_CASES: dict[str, tuple[Callable[[Path], list[str]], list[str]]] = {
    "negative_rank": (lambda tmp: ["--model.adapter.rank=-4"], ["model.adapter.rank"]),
    "unknown_backbone": (
        lambda tmp: ["--model.backbone.name=vit_smal_patch14_dinov2"],
        ["model.backbone.name", "vit_smal_patch14_dinov2", "timm.list_models"],
    ),
    "corrupt_safetensors": (
        lambda tmp: [f"--model.backbone.checkpoint_path={write_noise(tmp / 'broken.safetensors')}"],
        ["model.backbone.checkpoint_path", "broken.safetensors", "not a readable safetensors"],
    ),
    "missing_checkpoint": (
        lambda tmp: [f"--model.backbone.checkpoint_path={tmp / 'absent.safetensors'}"],
        ["model.backbone.checkpoint_path", "absent.safetensors", "does not exist"],
    ),
    "summary_tokens_out_of_range": (
        lambda tmp: ["--model.backbone.summary=prefix", "--model.backbone.summary_tokens=3"],
        ["model.backbone.summary_tokens=3 out of range", "'prefix' has 1 token(s)"],
    ),
    "clip_low_above_high": (
        lambda tmp: ["--model.loss.clip_low=0.95", "--model.loss.clip_high=0.9"],
        ["model.loss.clip_low"],
    ),
    "even_mean_filter": (lambda tmp: ["--model.mean_filter_size=4"], ["model.mean_filter_size"]),
    "image_size_not_patch_multiple": (
        lambda tmp: ["--data.image_size=60"],
        ["image_size", "patch size 14"],
    ),
    "offline_mode_nothing_cached": (
        lambda tmp: [PRETRAINED, "--model.backbone.pretrained=true"],
        ["model.backbone.checkpoint_path", "HF_HUB_OFFLINE"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_bad_model_option_fails_naming_it(case: str, tmp_path: Path, normal_dir: Path) -> None:
    overrides, expected = MODEL_CASES[case]
    code, out, _ = fit_cli(tmp_path, normal_dir, *overrides(tmp_path))
    assert code == 1 and "Traceback" not in out, out[-3000:]
    for text in expected:
        assert text in out, (text, out[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("network", ["dns_failure", "never_answers"])
def test_unreachable_hub_fails_fast_through_the_cli(
    network: str, tmp_path: Path, normal_dir: Path
) -> None:
    with silent_server() as silent:
        endpoint = DNS_FAILURE if network == "dns_failure" else silent
        env = child_env(tmp_path, HF_ENDPOINT=endpoint)  # HF_HUB_OFFLINE unset
        code, out, wall = fit_cli(
            tmp_path, normal_dir, PRETRAINED, "--model.backbone.pretrained=true", env=env
        )
    assert code == 1 and "Traceback" not in out, out[-3000:]
    assert "model.backbone.checkpoint_path" in out and "HF_HUB_OFFLINE" in out, out[-3000:]
    assert "Retrying" not in out
    # Python and the CLI start in a few seconds; the hub gets 5 s to answer.
    assert wall < 30.0, wall


def test_demo_with_missing_mobilenet_weights_names_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    args = ["--backbone", "mobilenetv2", "--weights", str(missing), "--out", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "anomalyvfm.demo", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"--weights {missing} does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) < 5
    assert not (tmp_path / "data").exists()  # refused before any demo data is built
