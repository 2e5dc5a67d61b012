"""Lazy loading and seeding helpers shared by the diffusion generators (imports torch lazily)."""

from __future__ import annotations

from typing import Any, Literal

DType = Literal["auto", "float32", "float16", "bfloat16"]
Device = Literal["auto", "cpu", "cuda"]
PipelineKind = Literal["inpaint", "text2img"]
# Seeds for torch.Generator are drawn below 2**63 so they fit a signed 64-bit integer.
SEED_HIGH = 2**63 - 1


def resolve_device(device: Device) -> str:
    """ "auto" -> "cuda" when a GPU is visible, else "cpu"."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: DType, device: str) -> Any:
    """ "auto" -> bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


def load_pipeline(
    kind: PipelineKind, model: str, dtype: DType, device: Device, attention_slicing: bool
) -> Any:
    """Load an inpainting or text-to-image pipeline by hub id or local folder via AutoPipeline.

    Raises:
        ImportError: If diffusers is not installed (``pip install anomalyvfm[diffusion]``).
    """
    try:
        from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image
    except ImportError as exc:
        raise ImportError(
            "the diffusion generators need diffusers: pip install 'anomalyvfm[diffusion]'"
        ) from exc
    dev = resolve_device(device)
    auto = AutoPipelineForInpainting if kind == "inpaint" else AutoPipelineForText2Image
    pipe = auto.from_pretrained(model, torch_dtype=resolve_dtype(dtype, dev))
    pipe = pipe.to(dev)
    if attention_slicing:
        pipe.enable_attention_slicing()
    pipe.set_progress_bar_config(disable=True)
    return pipe


class LazyPipeline:
    """Mixin: ``pipeline`` is the one given to the constructor, or ``model`` loaded on first use.

    Construction therefore never downloads. Subclasses set ``pipeline_kind`` and the attributes
    below in ``__init__``.
    """

    pipeline_kind: PipelineKind
    model: str | None
    dtype: DType
    device: Device
    attention_slicing: bool
    _pipe: Any

    @property
    def pipeline(self) -> Any:
        """The diffusers pipeline, loaded on first access."""
        if self._pipe is None:
            if self.model is None:
                raise ValueError(f"{type(self).__name__} needs `model` or `pipeline`")
            self._pipe = load_pipeline(
                self.pipeline_kind, self.model, self.dtype, self.device, self.attention_slicing
            )
        return self._pipe


def generators(seeds: list[int]) -> list[Any]:
    """One CPU ``torch.Generator`` per item.

    CPU generators make the initial noise identical on every device (diffusers draws it on the
    CPU and moves it), and one generator per item makes each item's noise independent of the
    other items in the batch.
    """
    import torch

    return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]


def run_pipeline(pipeline: Any, count: int, **kwargs: Any) -> list[Any]:
    """Calls a diffusers pipeline on a batch of ``count`` items; returns float32 HWC arrays.

    Options given as None (``guidance_scale``, ``strength``, ``negative_prompt``, ...) are left
    out, so each pipeline keeps its own default and pipelines without an option (FLUX has no
    negative prompt) never receive it. A single ``negative_prompt`` is repeated per item.
    """
    import numpy as np
    import torch

    call = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(call.get("negative_prompt"), str):
        call["negative_prompt"] = [call["negative_prompt"]] * count
    with torch.inference_mode():
        images = pipeline(output_type="np", **call).images
    return [np.asarray(im, dtype=np.float32) for im in images]
