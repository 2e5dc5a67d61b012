"""Model options from a checkpoint, merged with the options given at ``test``/``predict`` time.

A checkpoint stores the model's configuration. When it is given with ``--ckpt_path``:

* **architecture** options (:data:`ARCHITECTURE`: the backbone's name and features, the
  adapters, the decoder's layers, the input size) come from the checkpoint, whose weights only
  fit that architecture. One given with another value than the checkpoint's is refused, naming
  the option;
* every other option (the evaluation protocol: mean filter, image score, metric mode, FPR limit,
  metrics, metrics on CPU; the backbone's weight source; compilation; training options) is the
  value given on the command line or in a config file when one was given, else the
  checkpoint's.

"Given" means different from the option's default in this code: a default cannot be told
apart from an explicitly written value equal to it, so the checkpoint wins there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

# Checkpoint key of a detector's calibration (thresholds, rule, calibration-set size), written
# by ``Detector.save`` / ``anomalyvfm calibrate`` next to Lightning's own keys.
CALIBRATION_KEY = "anomalyvfm_calibration"


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file (checkpoints are recorded by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Dotted keys under model.init_args whose value decides the weights' shapes or meaning.
ARCHITECTURE = (
    "backbone.name",
    "backbone.layers",
    "backbone.summary",
    "backbone.summary_tokens",
    "backbone.norm",
    "backbone.model_kwargs",
    "adapter.type",
    "adapter.rank",
    "adapter.alpha",
    "adapter.targets",
    "adapter.qkv_parts",
    "adapter.backend",
    "decoder.num_up_blocks",
    "decoder.width",
    "decoder.num_groups",
    "image_size",
)


# Dict-valued options compared as a whole (their keys are the user's, not options).
OPAQUE = ("model_kwargs",)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a Lightning checkpoint on the CPU (``weights_only``), naming the file on failure."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        OSError,
        ValueError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        IndexError,
    ) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = reason.split(". ")[0][:120]
        raise ValueError(
            f"checkpoint {path} cannot be read ({reason}): is it a complete .ckpt file "
            "written by `anomalyvfm fit`? A copy interrupted mid-way gives this error."
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"checkpoint {path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def flatten_dotted(
    tree: dict[str, Any], leaves: tuple[str, ...] = (), prefix: str = ""
) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``; dicts under a key named in ``leaves`` stay whole."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in leaves:
            flat.update(flatten_dotted(value, leaves, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _plain(value: Any) -> Any:
    """Namespaces, dataclasses and tuples as plain dicts and lists, for comparison."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if hasattr(value, "as_dict"):  # jsonargparse Namespace
        return _plain(value.as_dict())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def class_defaults(class_path: str) -> dict[str, Any]:
    """Flattened default init arguments of the model class (dataclass options expanded)."""
    module_name, _, name = class_path.rpartition(".")
    cls = getattr(__import__(module_name, fromlist=[name]), name)
    defaults: dict[str, Any] = {}
    for param in inspect.signature(cls.__init__).parameters.values():
        if param.default is inspect.Parameter.empty or param.name == "self":
            continue
        defaults[param.name] = _plain(param.default)
    return flatten_dotted(defaults, OPAQUE)


def merge_checkpoint_options(cfg: Any, hparams: dict[str, Any], ckpt_name: str) -> list[str]:
    """Merges a checkpoint's hyper-parameters into the subcommand's parsed config ``cfg``
    (in place) by the rules of this module; returns the keys taken from the checkpoint.

    Raises:
        ValueError: an architecture option given with another value than the checkpoint's, or a
            checkpoint of another model class.
    """
    hparams = dict(hparams)
    class_path = hparams.pop("_class_path", None)
    model = cfg["model"]
    given_class = model.get("class_path") if hasattr(model, "get") else None
    if class_path and given_class and class_path != given_class:
        raise ValueError(
            f"--ckpt_path {ckpt_name} holds a {class_path} model but model.class_path is "
            f"{given_class}: give the config the checkpoint was trained with"
        )
    init = model["init_args"]
    defaults = class_defaults(str(class_path or given_class))
    given = flatten_dotted(_plain(init), OPAQUE)
    taken: list[str] = []
    conflicts: list[str] = []
    for key, ckpt_value in flatten_dotted(_plain(hparams), OPAQUE).items():
        if key not in given:
            continue
        value, default = given[key], defaults.get(key, ckpt_value)
        if value == ckpt_value:
            continue
        user_set = value != default
        if key in ARCHITECTURE and user_set:
            conflicts.append(f"model.init_args.{key}={value!r} (checkpoint: {ckpt_value!r})")
            continue
        if not user_set:
            init[key] = ckpt_value
            taken.append(key)
    if conflicts:
        raise ValueError(
            f"--ckpt_path {ckpt_name} was trained with another architecture: "
            + "; ".join(conflicts)
            + ". Drop these options or give the config the checkpoint was trained with."
        )
    if "image_size" in taken and cfg.get("data") is not None:
        data_init = cfg["data"].get("init_args")
        if data_init is not None and "image_size" in data_init:
            data_init["image_size"] = init["image_size"]  # the link, kept in step
    return taken
