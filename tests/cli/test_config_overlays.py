"""Backbone configs are small overlays on ``experiments/configs/base.yaml``.

Each ``anomalyvfm_<backbone>.yaml`` pulls the shared recipe in with a top-level ``config:
base.yaml`` (jsonargparse applies a config key found inside a config file) and sets the values
that differ as dotted keys. The fully resolved config of each (``--print_config``) must equal
its snapshot in ``tests/conf/resolved/``, taken from the self-contained files the overlays
replaced. When a default changes on purpose, rewrite the snapshots with
``python -m tests.cli.test_config_overlays`` and review the diff.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from anomalyvfm.cli import main
from tests.conftest import REPO

CONFIGS = REPO / "experiments" / "configs"
BASE = CONFIGS / "base.yaml"
OVERLAYS = sorted(CONFIGS.glob("anomalyvfm_*.yaml"))
SNAPSHOTS = REPO / "tests" / "conf" / "resolved"
# The resolved config reads these; unset, it takes the defaults the snapshots hold.
ENV = ("ANOMALYVFM_NORMALS", "ANOMALYVFM_TEXTURES")


@contextlib.contextmanager
def _without_env() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def resolve(config: Path) -> str:
    """``anomalyvfm fit --config <config> --print_config``, as printed."""
    out = io.StringIO()
    with _without_env(), contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(config), "--print_config"])
    assert exc.value.code in (0, None)
    return out.getvalue()


def _content(text: str) -> list[str]:
    # The first line names the Lightning version; comments are not configuration.
    return [line for line in text.splitlines() if not line.startswith("#")]


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict) and "class_path" not in tree:
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, dict):  # a class: its init_args are merged key by key as well
        out = {f"{prefix}class_path": tree["class_path"]}
        out.update(_flatten(tree.get("init_args") or {}, f"{prefix}init_args."))
        return out
    return {prefix[:-1]: tree}


def test_every_overlay_has_a_snapshot() -> None:
    assert OVERLAYS, "no experiments/configs/anomalyvfm_*.yaml"
    assert [p.name for p in OVERLAYS] == sorted(p.name for p in SNAPSHOTS.glob("*.yaml"))


@pytest.mark.parametrize("config", OVERLAYS, ids=lambda p: p.stem)
def test_overlay_resolves_to_its_snapshot(config: Path) -> None:
    printed = resolve(config)
    snapshot = (SNAPSHOTS / config.name).read_text()
    # Same text (so the same key order in saved configs), not only the same values.
    assert _content(printed) == _content(snapshot)


@pytest.mark.parametrize("config", OVERLAYS, ids=lambda p: p.stem)
def test_overlay_sets_only_what_differs(config: Path) -> None:
    overlay = yaml.safe_load(config.read_text())
    keys = list(overlay)
    assert keys[0] == "config" and overlay["config"] == "base.yaml"
    # A nested block after `config:` replaces the base's whole section: only dotted keys.
    assert all("." in key for key in keys[1:]), [k for k in keys[1:] if "." not in k]
    base = _flatten(yaml.safe_load(BASE.read_text()))
    restated = {"model.class_path", "data.class_path"}  # kept first in printed configs
    for key in keys[1:]:
        if key in restated:
            assert overlay[key] == base[key], key
        else:
            assert not any(b == key or b.startswith(f"{key}.") for b in base), (
                f"{config.name}: {key} is set in base.yaml too"
            )


def write_snapshots() -> None:
    """Rewrites every snapshot from the current configs."""
    for config in OVERLAYS:
        (SNAPSHOTS / config.name).write_text(resolve(config))
        print(f"wrote {SNAPSHOTS / config.name}")


if __name__ == "__main__":
    write_snapshots()
