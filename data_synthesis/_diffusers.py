"""Lazy loading and seeding helpers shared by the diffusion generators (imports torch lazily)."""

from __future__ import annotations

from typing import Any, Literal

DType = Literal["auto", "float32", "float16", "bfloat16"]
Device = Literal["auto", "cpu", "cuda"]
PipelineKind = Literal["inpaint", "text2img"]
# Seeds for torch.Generator are drawn below 2**63 so they fit a signed 64-bit integer.
SEED_HIGH = 2**63 - 1
# A checkpoint saved as a pipeline whose class name holds one of these already takes a mask.
MASK_PIPELINE_TAGS = ("Inpaint", "Fill")


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


def checkpoint_class(model: str) -> str | None:
    """The pipeline class a checkpoint was saved as (``_class_name`` of its model_index.json).

    None when the checkpoint has no readable model_index.json (e.g. a single-file checkpoint).
    """
    from diffusers import DiffusionPipeline

    try:
        config = DiffusionPipeline.load_config(model)
    except (OSError, ValueError):
        return None
    name = config.get("_class_name")
    return name if isinstance(name, str) else None


def pipeline_loader(kind: PipelineKind, model: str, pipeline_class: str | None = None) -> Any:
    """The class whose ``from_pretrained`` loads ``model`` as a ``kind`` pipeline.

    ``pipeline_class`` (a diffusers class name) wins when given. Otherwise, for inpainting, a
    checkpoint saved as a mask-taking pipeline (``*InpaintPipeline``, ``FluxFillPipeline``) is
    loaded as that class, and any other checkpoint through ``AutoPipelineForInpainting``, which
    picks its family's inpainting pipeline: ``FluxPipeline`` (FLUX.1-dev, FLUX.1-Krea-dev) ->
    ``FluxInpaintPipeline``, ``StableDiffusionXLPipeline`` -> ``StableDiffusionXLInpaintPipeline``.
    Text-to-image always goes through ``AutoPipelineForText2Image``.
    """
    import diffusers

    if pipeline_class is not None:
        cls = getattr(diffusers, pipeline_class, None)
        if cls is None or not hasattr(cls, "from_pretrained"):
            raise ValueError(f"pipeline_class: diffusers has no pipeline class {pipeline_class!r}")
        return cls
    if kind == "text2img":
        return diffusers.AutoPipelineForText2Image
    name = checkpoint_class(model)
    if name is not None and any(tag in name for tag in MASK_PIPELINE_TAGS):
        cls = getattr(diffusers, name, None)
        if cls is not None:
            return cls
    return diffusers.AutoPipelineForInpainting


def load_pipeline(
    kind: PipelineKind,
    model: str,
    dtype: DType,
    device: Device,
    attention_slicing: bool,
    pipeline_class: str | None = None,
) -> Any:
    """Load an inpainting or text-to-image pipeline by hub id or local folder.

    The class is chosen by :func:`pipeline_loader`.

    Raises:
        ImportError: If diffusers is not installed (``pip install anomalyvfm[diffusion]``).
    """
    try:
        import diffusers  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "the diffusion generators need diffusers: pip install 'anomalyvfm[diffusion]'"
        ) from exc
    dev = resolve_device(device)
    loader = pipeline_loader(kind, model, pipeline_class)
    pipe = loader.from_pretrained(model, torch_dtype=resolve_dtype(dtype, dev))
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
    pipeline_class: str | None = None
    _pipe: Any

    @property
    def pipeline(self) -> Any:
        """The diffusers pipeline, loaded on first access."""
        if self._pipe is None:
            if self.model is None:
                raise ValueError(f"{type(self).__name__} needs `model` or `pipeline`")
            self._pipe = load_pipeline(
                self.pipeline_kind,
                self.model,
                self.dtype,
                self.device,
                self.attention_slicing,
                self.pipeline_class,
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
