"""Building timm models: name checks, local weight files and pretrained weights from the hub.

The model backbone (:mod:`anomalyvfm.backbones.timm_backbone`) and the synthesis filter
(:mod:`data_synthesis.filter`) both build their timm models here, so both fail the same way:

* an unknown registry name or pretrained tag is named, with the ``timm`` call that lists them;
* a missing or unreadable local weights file (``checkpoint_path``) is named;
* pretrained weights that are neither local nor reachable fail within seconds. When the weights
  are not in the local cache, the hub endpoint (``HF_ENDPOINT``, default huggingface.co) is asked
  first with a short deadline, because Hugging Face's own client retries for tens of seconds on
  DNS failures and much longer on a network that accepts connections but never answers. With
  ``HF_HUB_OFFLINE=1`` and nothing cached the build fails at once.
"""

from __future__ import annotations

import difflib
import os
import re
import ssl
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from torch import nn


def _import_timm() -> Any:
    """timm, imported without letting it import W&B.

    ``timm.utils.summary`` imports ``wandb`` whenever it is installed (for timm's own training
    scripts, which this project does not use). That costs a second and loads W&B in runs that
    never log to it. The guard lasts only for timm's own import: a W&B logger imports W&B
    normally afterwards.
    """
    if "timm" in sys.modules or "wandb" in sys.modules:
        import timm

        return timm
    sys.modules["wandb"] = None  # type: ignore[assignment]  # makes `import wandb` fail
    try:
        import timm
    finally:
        del sys.modules["wandb"]
    return timm


timm = _import_timm()

# How long the hub may take to answer one HEAD request before the download is given up.
HUB_TIMEOUT_S = 5.0
_TRUE = {"1", "ON", "YES", "TRUE"}


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither local nor downloadable now."""


class ModelNameError(ValueError):
    """timm does not know the model name or tag, or the model is not of the required kind."""


def create_timm_model(
    name: str,
    *,
    pretrained: bool,
    checkpoint_path: str | None = None,
    img_size: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    cnn_features: bool = True,
    name_option: str = "model.backbone.name",
    path_option: str = "model.backbone.checkpoint_path",
) -> nn.Module:
    """``timm.create_model`` with checked names, local weight files and a bounded hub wait.

    Args:
        name: timm registry name, optionally with a pretrained tag (``arch.tag``), or
            ``hf-hub:org/repo``.
        pretrained: load the model's pretrained weights (local cache or download).
        checkpoint_path: a local ``.safetensors`` / ``.pth`` file; loaded through timm's
            checkpoint filters with ``weights_only=True``; takes precedence over ``pretrained``.
        img_size: input size for ViTs (position embeddings are resampled to it; other multiples
            of the patch size still work). CNNs reject it, see ``cnn_features``.
        model_kwargs: extra ``timm.create_model`` keyword arguments.
        cnn_features: build models that reject ``img_size`` (CNNs) as ``features_only``
            extractors; when False such a model is an error (a ViT is required).
        name_option: how error messages name the option that holds ``name``.
        path_option: how error messages name the option that holds ``checkpoint_path``.

    Raises:
        ValueError: unknown name or tag, unreadable or unfitting ``checkpoint_path``, or a CNN
            where a ViT is required.
        FileNotFoundError: ``checkpoint_path`` does not exist.
        WeightsUnavailableError: pretrained weights are not local and the hub is unreachable.
    """
    check_model_name(name, name_option)
    kwargs: dict[str, Any] = dict(model_kwargs or {})
    path: Path | None = None
    if checkpoint_path is not None:
        path = Path(checkpoint_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path_option} {path} does not exist")
        if not path.is_file():
            raise FileNotFoundError(f"{path_option} {path} is not a file")
        # timm reads safetensors or torch files with weights_only=True and applies the model's
        # checkpoint filter (original-format conversion, position-embedding resampling).
        overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
        overlay["file"] = str(path)
        kwargs["pretrained_cfg_overlay"] = overlay
        pretrained = True
    else:
        ensure_weights_reachable(name, pretrained, kwargs, name_option, path_option)
    try:
        return _create(name, pretrained, img_size, kwargs, cnn_features, name_option)
    except (WeightsUnavailableError, ModelNameError):
        raise
    except Exception as err:
        if path is not None:
            error = _weights_file_error(
                path, err, name, img_size, kwargs, cnn_features, name_option, path_option
            )
            if error is not None:
                raise error from err
            raise
        if pretrained and is_download_error(err):
            raise WeightsUnavailableError(
                f"could not download the pretrained weights of {name_option} '{name}' "
                f"({_first_line(err)}). {offline_advice(path_option)}"
            ) from err
        raise


def _create(
    name: str,
    pretrained: bool,
    img_size: int | None,
    kwargs: dict[str, Any],
    cnn_features: bool,
    name_option: str,
) -> nn.Module:
    if img_size is None:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    try:
        try:
            return timm.create_model(
                name, pretrained=pretrained, img_size=img_size, dynamic_img_size=True, **kwargs
            )
        except TypeError as err:
            # NaFlexVit takes any input size by construction and rejects the flag.
            if "dynamic_img_size" not in str(err):
                raise
            return timm.create_model(name, pretrained=pretrained, img_size=img_size, **kwargs)
    except TypeError as err:
        # CNNs reject img_size in their constructor (before any weights are read).
        if "img_size" not in str(err):
            raise
        if not cnn_features:
            raise ModelNameError(
                f"{name_option} '{name}' is not a timm vision transformer"
            ) from err
        # Built as feature extractors instead, the route DINOv3's ConvNeXt models need too.
        kwargs = dict(kwargs)
        out = kwargs.pop("out_indices", (-1,))
        return timm.create_model(
            name, pretrained=pretrained, features_only=True, out_indices=out, **kwargs
        )


# -- names ------------------------------------------------------------------------------------


def check_model_name(name: str, option: str = "model.backbone.name") -> None:
    """Raises ValueError naming ``option`` when timm does not know ``name`` or its tag."""
    if not isinstance(name, str) or not name:
        raise ModelNameError(f"{option} must be a timm model name; got {name!r}")
    if name.startswith(("hf-hub:", "local-dir:")):
        return  # the model's configuration comes from the hub repository or the folder
    from timm.models import get_arch_pretrained_cfgs, is_model, split_model_name_tag

    arch, tag = split_model_name_tag(name)
    if not is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.7)
        hint = f" (close: {', '.join(close)})" if close else ""
        stem = re.sub(r"\d+$", "", arch.split("_")[0]) or arch
        raise ModelNameError(
            f"{option} '{name}' is not a timm model{hint}; list the known names with "
            f"timm.list_models('*{stem}*')"
        )
    if tag and f"{arch}.{tag}" not in get_arch_pretrained_cfgs(arch):
        raise ModelNameError(
            f"{option} '{name}': '{tag}' is not a pretrained tag of {arch}; list them with "
            f"timm.list_pretrained('{arch}.*')"
        )


# -- pretrained weights -------------------------------------------------------------------------


def offline_advice(
    path_option: str = "model.backbone.checkpoint_path", offline: bool = False
) -> str:
    """What to set on a machine without network access (``offline``: HF_HUB_OFFLINE is set)."""
    local = f"set {path_option} to a local .safetensors or .pth file"
    if offline:
        return f"Offline, {local}, or fill the Hugging Face cache (HF_HOME) on a connected machine."
    return (
        f"Offline, {local}, or set HF_HUB_OFFLINE=1 to use the local Hugging Face cache only "
        "(filled on a connected machine, see HF_HOME)."
    )


def hub_offline() -> bool:
    """Whether Hugging Face's client is in offline mode (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def ensure_weights_reachable(
    name: str,
    pretrained: bool,
    model_kwargs: Mapping[str, Any] | None = None,
    name_option: str = "model.backbone.name",
    path_option: str = "model.backbone.checkpoint_path",
    timeout: float = HUB_TIMEOUT_S,
) -> None:
    """Fails fast when building ``name`` needs a download that cannot happen now.

    Nothing is checked when no download is needed: no pretrained weights, weights from a local
    file, or weights already in the Hugging Face (or torch hub) cache. Otherwise the hub must
    answer one request within ``timeout`` seconds, and in offline mode the build fails at once.

    Raises:
        WeightsUnavailableError: with what to set instead.
    """
    source = _download_source(name, pretrained, dict(model_kwargs or {}))
    if source is None:
        return
    what, url = source
    if hub_offline():
        raise WeightsUnavailableError(
            f"{what} of {name_option} '{name}' are not in the local cache and HF_HUB_OFFLINE "
            f"is set. {offline_advice(path_option, offline=True)}"
        )
    problem = endpoint_problem(url, timeout)
    if problem is not None:
        raise WeightsUnavailableError(
            f"{what} of {name_option} '{name}' are not in the local cache and {url} cannot be "
            f"reached ({problem}). {offline_advice(path_option)}"
        )


def _download_source(name: str, pretrained: bool, kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """(what, endpoint URL) of a download the build would start, or None when none is needed."""
    from huggingface_hub import constants

    if name.startswith("hf-hub:"):
        repo = name.split(":", 1)[1]
        # The model's configuration comes from the repository even without pretrained weights.
        return None if _hub_repo_cached(repo) else ("the configuration", constants.ENDPOINT)
    if not pretrained or name.startswith("local-dir:"):
        return None
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    values = cfg.to_dict() if cfg is not None else {}
    values.update(kwargs.get("pretrained_cfg_overlay") or {})
    if values.get("file") or values.get("state_dict") is not None:
        return None
    hub_id, url = values.get("hf_hub_id"), values.get("url")
    if hub_id:
        if _hub_repo_cached(hub_id):
            return None
        return "the pretrained weights", constants.ENDPOINT
    if url:
        if _torch_hub_cached(url):
            return None
        parts = urlsplit(url)
        return "the pretrained weights", f"{parts.scheme}://{parts.netloc}"
    return None


def _hub_repo_cached(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds any snapshot of ``repo_id`` (revision ignored).

    Deliberately generous: a partly cached repository is left to the hub client, which reads
    what it has and fails with its own message otherwise.
    """
    from huggingface_hub import constants

    repo = repo_id.split("@", 1)[0]
    folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--")) / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def _torch_hub_cached(url: str) -> bool:
    import torch

    filename = os.path.basename(urlsplit(url).path)
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Any HTTP status is an answer; redirects are not followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def endpoint_problem(url: str, timeout: float = HUB_TIMEOUT_S) -> str | None:
    """None when ``url`` answers a HEAD request with any HTTP status within ``timeout`` seconds.

    Otherwise a short reason. The request runs in a daemon thread so that the deadline also
    covers name resolution, which socket timeouts do not bound.
    """
    outcome: list[str | None] = []
    silent = f"no answer within {timeout:g} s"

    def ask() -> None:
        opener = urllib.request.build_opener(_NoRedirect)  # proxies from the environment
        try:
            with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                pass
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered, with whatever status
        except urllib.error.URLError as err:
            # A TLS failure means a server answered; the hub client may well trust it.
            if isinstance(err.reason, ssl.SSLError):
                outcome.append(None)
            else:
                timed_out = isinstance(err.reason, TimeoutError)
                outcome.append(silent if timed_out else _first_line(err.reason))
        except TimeoutError:
            outcome.append(silent)
        except Exception as err:
            outcome.append(_first_line(err))

    thread = threading.Thread(target=ask, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else silent


def is_download_error(err: BaseException) -> bool:
    """Whether ``err`` (or its cause) looks like a failed download rather than a model error."""
    seen: BaseException | None = err
    for _ in range(5):
        if seen is None:
            break
        module = type(seen).__module__
        if module.startswith(("huggingface_hub", "httpx", "requests", "urllib", "socket")):
            return True
        text = f"{type(seen).__name__} {seen}".lower()
        keys = ("connect", "resolve", "offline", "hub", "http", "network", "timed out", "retries")
        if any(k in text for k in keys):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# -- local weight files ------------------------------------------------------------------------


def _weights_file_error(
    path: Path,
    err: Exception,
    name: str,
    img_size: int | None,
    kwargs: dict[str, Any],
    cnn_features: bool,
    name_option: str,
    path_option: str,
) -> ValueError | None:
    """A ValueError naming ``path`` when ``err`` came from its weights; None when it did not."""
    problem = unreadable_weights(path)
    if problem is not None:
        kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch weights"
        return ValueError(f"{path_option} {path} is not a readable {kind} file ({problem})")
    # The file reads: either its weights do not fit the model, or the model itself fails.
    plain = {k: v for k, v in kwargs.items() if k != "pretrained_cfg_overlay"}
    try:
        _create(name, False, img_size, plain, cnn_features, name_option)
    except Exception:
        return None
    return ValueError(
        f"{path_option} {path} does not fit {name_option} '{name}' ({_first_line(err)})"
    )


def unreadable_weights(path: Path) -> str | None:
    """None when ``path`` loads as weights (safetensors, or torch with weights_only), else why."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            load_file(str(path), device="cpu")
        else:
            import torch

            torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if str(err).startswith("Weights only load failed"):
            return "torch.load with weights_only=True refused it: not a file of plain tensors"
        return _first_line(err)
    return None


def _first_line(err: object, limit: int = 160) -> str:
    """The gist of an error: its first line (with the next one when it ends in a colon)."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return type(err).__name__
    line = lines[0]
    if line.endswith(":") and len(lines) > 1:
        line = f"{line} {lines[1]}"
    if isinstance(err, KeyError):
        line = f"KeyError {line}"
    return line if len(line) <= limit else line[: limit - 3] + "..."
