"""Crash-safe files and manifests for the offline generation pipeline.

Invariants that make a stage resumable (see :mod:`data_synthesis.pipeline`):

* every output file is written under a temporary name in its own folder, fsynced, then moved into
  place with ``os.replace`` (atomic on POSIX), so a file either has its old content or its complete
  new content, never a torn one;
* a manifest record (one JSON line) is appended to a per-process shard file only after all files of
  the item are in place, and carries each file's SHA-256; a record whose files are missing or hash
  differently is ignored, so the item is redone;
* records are pure functions of (config, seed, index): no time stamps, host names or ranks, so
  duplicates written by two processes are identical and the merged manifest is reproducible.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

Record = dict[str, Any]
MANIFEST_DIR = "manifest"
RUN_FILE = "run.json"
# Prefix of temporary files: hidden (list_images skips them) and recognisable for clean-up.
TMP_PREFIX = ".tmp-"


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an image in [0, 1] (H, W, 3) or a {0, 1} mask (H, W)."""
    arr = np.asarray(array, dtype=np.float32)
    pixels = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# (path, size, mtime_ns) -> hash: a resumed run checks each file once, not once per stage.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str | None:
    """Hex SHA-256 of a file's bytes, or None when it does not exist."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers (and a restart) never see a partial file.

    Args:
        path: Destination; its folder is created if needed.
        data: Complete file content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer: two ranks redoing the same item never share a temporary file.
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def append_record(path: str | Path, record: Record) -> None:
    """Append one record as a JSON line and fsync, so it survives a crash right after."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), default=_to_json) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _to_json(value: Any) -> Any:
    """numpy scalars/arrays and paths in generator params, as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (Path, tuple, set)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"manifest params must be JSON-serialisable, got {type(value).__name__}")


def shard_path(out: str | Path, stage: str) -> Path:
    """A new manifest shard for this process: never shared, so a torn last line stays isolated."""
    name = f"shard-{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
    return Path(out) / MANIFEST_DIR / stage / name


def read_records(out: str | Path, stage: str) -> Iterator[Record]:
    """All parseable records of ``stage`` from every shard (a torn last line is skipped)."""
    folder = Path(out) / MANIFEST_DIR / stage
    if not folder.is_dir():
        return
    for shard in sorted(folder.glob("*.jsonl")):
        with open(shard, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line a killed process was writing
                if isinstance(record, dict) and "index" in record:
                    yield record


def record_is_valid(out: str | Path, record: Record) -> bool:
    """True when every file the record names exists with the recorded SHA-256."""
    files: dict[str, dict[str, str]] = record.get("files", {})
    return all(sha256_file(Path(out) / f["path"]) == f["sha256"] for f in files.values())


def valid_records(out: str | Path, stage: str, indices: Iterable[int]) -> dict[int, Record]:
    """The first valid record of each wanted index of ``stage`` (indices without one are absent)."""
    wanted = set(indices)
    found: dict[int, Record] = {}
    for record in read_records(out, stage):
        index = int(record["index"])
        if index in wanted and index not in found and record_is_valid(out, record):
            found[index] = record
    return found


def config_hash(config: Any) -> str:
    """Stable SHA-256 of a JSON-serialisable config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(text.encode("utf-8"))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of nested dicts, for naming the option that differs."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, sub in value.items():
            flat.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def config_differences(recorded: Any, current: Any) -> list[str]:
    """Human-readable ``option: recorded X, now Y`` lines for every differing option."""
    old, new = _flatten(recorded), _flatten(current)
    return [
        f"{key}: recorded {old.get(key, '<unset>')!r}, now {new.get(key, '<unset>')!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key, "<unset>") != new.get(key, "<unset>")
    ]


def check_num(out: str | Path, num: int) -> None:
    """Record the largest ``num`` used in ``out``; refuse to shrink a dataset.

    Growing is safe (item i depends only on the seed and i); shrinking would leave items past
    the new ``num`` on disk but outside the manifest.

    Raises:
        ValueError: If ``num`` is below the recorded one (the message names the option).
    """
    path = Path(out) / MANIFEST_DIR / RUN_FILE
    run: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"stages": {}}
    recorded = int(run.get("num", 0))
    if num < recorded:
        raise ValueError(
            f"option 'num': {out} was generated with num={recorded}, now {num}; shrinking "
            "would leave items outside the manifest. Use --num >= the recorded one, or a new --out."
        )
    if num > recorded:
        run["num"] = num
        atomic_write(path, (json.dumps(run, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def check_run_config(out: str | Path, stage_configs: dict[str, Any], record: Iterable[str]) -> None:
    """Fail if a stage already (partly) generated in ``out`` had another config; record new ones.

    Args:
        out: Output folder.
        stage_configs: Stage name -> the config that determines its outputs (including the
            seed and every upstream stage's config). Every recorded stage is checked.
        record: Stages about to run: their configs are recorded when not yet present.

    Raises:
        ValueError: If a stage was already (partly) generated under a different config; the
            message names each differing option.
    """
    path = Path(out) / MANIFEST_DIR / RUN_FILE
    run: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"stages": {}}
    errors = []
    for stage, config in stage_configs.items():
        recorded = run["stages"].get(stage)
        if recorded is None:
            if stage in set(record):
                run["stages"][stage] = {"hash": config_hash(config), "config": config}
        elif recorded["hash"] != config_hash(config):
            diffs = config_differences(recorded["config"], config)
            errors.append(f"stage {stage!r}: " + "; ".join(diffs or ["config hash differs"]))
    if errors:
        raise ValueError(
            f"{out} was generated with a different config, so resuming would mix two datasets:\n  "
            + "\n  ".join(errors)
            + "\nUse the recorded values, or a new --out folder."
        )
    atomic_write(path, (json.dumps(run, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def remove_temporaries(out: str | Path) -> int:
    """Delete temporary files left by killed writers; returns how many were removed."""
    count = 0
    for tmp in Path(out).rglob(f"{TMP_PREFIX}*"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count
