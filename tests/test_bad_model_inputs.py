"""The real command line with a bad model option fails, and its output names the option or file.

Only the exit status and the presence of the name are checked, not how the CLI lays out the
message. Each case is a fresh ``python -m anomalyvfm fit`` process on the tiny config (a few
seconds each, so only one case per kind of check; tests/test_model_options.py covers every
option in-process).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_offline import DNS_FAILURE, child_env, silent_server

TINY = str(REPO / "tests" / "conf" / "anomalyvfm_tiny.yaml")
PRETRAINED = "--model.backbone.name=vit_small_patch14_dinov2.lvd142m"


def fit(tmp: Path, normal_dir: Path, *overrides: str, env: dict[str, str] | None = None):
    cmd = [
        sys.executable,
        "-m",
        "anomalyvfm",
        "fit",
        "--config",
        TINY,
        f"--data.normal_dir={normal_dir}",
        f"--trainer.default_root_dir={tmp / 'runs'}",
        "--trainer.max_steps=1",
        *overrides,
    ]
    env = env if env is not None else child_env(tmp, offline=True)
    start = time.monotonic()
    res = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=180)
    return res.returncode, res.stdout + res.stderr, time.monotonic() - start


def write_noise(path: Path, size: int = 2048) -> Path:
    path.write_bytes(bytes(range(256)) * (size // 256))
    return path


# id -> (overrides given the test's tmp folder, texts the output must contain)
CASES: dict[str, tuple[Callable[[Path], list[str]], list[str]]] = {
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


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_option_fails_naming_it(case: str, tmp_path: Path, normal_dir: Path) -> None:
    overrides, expected = CASES[case]
    code, out, _ = fit(tmp_path, normal_dir, *overrides(tmp_path))
    assert code != 0, out[-3000:]
    for text in expected:
        assert text in out, (text, out[-3000:])


@pytest.mark.parametrize("network", ["dns_failure", "never_answers"])
def test_unreachable_hub_fails_fast_through_the_cli(
    network: str, tmp_path: Path, normal_dir: Path
) -> None:
    with silent_server() as silent:
        endpoint = DNS_FAILURE if network == "dns_failure" else silent
        env = child_env(tmp_path, HF_ENDPOINT=endpoint)  # HF_HUB_OFFLINE unset
        code, out, wall = fit(
            tmp_path, normal_dir, PRETRAINED, "--model.backbone.pretrained=true", env=env
        )
    assert code != 0, out[-3000:]
    assert "model.backbone.checkpoint_path" in out and "HF_HUB_OFFLINE" in out, out[-3000:]
    assert "Retrying" not in out
    # Python and the CLI start in a few seconds; the hub gets 5 s to answer.
    assert wall < 30.0, wall
