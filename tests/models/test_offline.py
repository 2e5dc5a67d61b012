"""Pretrained weights without network: fail within seconds, saying what to set; cached weights load.

The network failures are simulated without any real network: an unresolvable host
(``.invalid`` never resolves) and a local TCP server that accepts connections and never answers.
Builds run in subprocesses, because Hugging Face's client reads HF_HUB_OFFLINE and HF_ENDPOINT
once, at import; this process keeps HF_HUB_OFFLINE=1 (see conftest).
"""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anomalyvfm.backbones.timm_models import endpoint_problem
from tests.conftest import TINY_VIT
from tests.helpers import DNS_FAILURE, child_env, silent_server

PRETRAINED = "vit_small_patch14_dinov2.lvd142m"


@pytest.fixture
def never_answers() -> Iterator[str]:
    with silent_server() as url:
        yield url


BUILD = f"""
import sys, time
from anomalyvfm.backbones.timm_backbone import Backbone, BackboneConfig
config = BackboneConfig(name="{PRETRAINED}", pretrained=True, model_kwargs={TINY_VIT!r})
start = time.monotonic()
try:
    Backbone(config, img_size=56)
except Exception as err:
    print(f"elapsed={{time.monotonic() - start:.2f}}")
    print(f"{{type(err).__name__}}: {{err}}")
    sys.exit(3)
print(f"elapsed={{time.monotonic() - start:.2f}}")
print("built")
"""


def build_backbone(env: dict[str, str]) -> tuple[int, str, float, float]:
    """(exit code, output, seconds the build took, seconds the whole process took)."""
    start = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-c", BUILD], env=env, capture_output=True, text=True, timeout=120
    )
    wall = time.monotonic() - start
    out = res.stdout + res.stderr
    found = re.search(r"elapsed=([\d.]+)", out)
    assert found, out[-3000:]
    return res.returncode, out, float(found.group(1)), wall


def assert_advice(out: str) -> None:
    assert "WeightsUnavailableError" in out, out[-3000:]
    assert "model.backbone.checkpoint_path" in out and "HF_HUB_OFFLINE" in out
    assert "Traceback" not in out and "Retrying" not in out


def test_unresolvable_hub_fails_within_seconds(tmp_path) -> None:
    code, out, build, wall = build_backbone(child_env(tmp_path, HF_ENDPOINT=DNS_FAILURE))
    assert code == 3
    assert_advice(out)
    assert "does-not-exist.invalid cannot be reached" in out
    # Immediate where the resolver answers; bounded by the 5 s deadline where it does not.
    assert build < 15.0 and wall < 30.0, (build, wall)


def test_hub_that_never_answers_fails_within_seconds(tmp_path, never_answers) -> None:
    code, out, build, wall = build_backbone(child_env(tmp_path, HF_ENDPOINT=never_answers))
    assert code == 3
    assert_advice(out)
    assert "no answer within 5 s" in out
    assert 4.0 < build < 15.0 and wall < 30.0, (build, wall)


def test_offline_mode_without_cached_weights_fails_at_once(tmp_path, never_answers) -> None:
    env = child_env(tmp_path, offline=True, HF_ENDPOINT=never_answers)
    code, out, build, _ = build_backbone(env)
    assert code == 3
    assert_advice(out)
    assert "HF_HUB_OFFLINE is set" in out
    assert build < 3.0, build  # no network request at all


def cache_tiny_weights(tmp: Path) -> None:
    """Puts tiny weights in the Hugging Face cache layout, as a download would have."""
    import timm
    from safetensors.torch import save_file

    repo = tmp / "hf" / "hub" / f"models--timm--{PRETRAINED}"
    (repo / "refs").mkdir(parents=True)
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    model = timm.create_model(PRETRAINED.split(".")[0], img_size=56, **TINY_VIT)
    save_file(model.state_dict(), repo / "snapshots" / "0123abc" / "model.safetensors")


@pytest.mark.parametrize("offline", [True, False], ids=["offline_mode", "unresolvable_hub"])
def test_cached_weights_load_without_network(tmp_path, offline: bool) -> None:
    cache_tiny_weights(tmp_path)
    code, out, build, _ = build_backbone(
        child_env(tmp_path, offline=offline, HF_ENDPOINT=DNS_FAILURE)
    )
    assert code == 0 and "built" in out, out[-3000:]
    assert build < 15.0, build


def test_endpoint_probe_is_bounded_and_counts_any_http_answer() -> None:
    with silent_server() as url:
        start = time.monotonic()
        assert endpoint_problem(url, timeout=1.0) == "no answer within 1 s"
        assert time.monotonic() - start < 3.0

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 (the http.server naming)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # A 404 is an answer: the hub is there, the download decides the rest.
        assert endpoint_problem(f"http://127.0.0.1:{server.server_port}", 2.0) is None
    finally:
        server.shutdown()
        server.server_close()
    refused = endpoint_problem(f"http://127.0.0.1:{server.server_port}", 2.0)
    assert refused is not None and "refused" in refused.lower()
