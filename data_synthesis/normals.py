"""Normal (defect-free) images from a text-to-image pipeline over objects x backgrounds.

Prompt: "a close-up photo of a {object} for industrial visual inspection. Top down view.
Centered. {background} background." and, for texture objects, "a close-up photo of a {object}
texture ..." without the background clause. The reference uses FLUX.1-Krea-dev at 1024 x 1024
px, 20 steps, guidance 4 (the defaults here); ``model`` must still be given explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_synthesis._diffusers import (
    SEED_HIGH,
    Device,
    DType,
    LazyPipeline,
    generators,
    run_pipeline,
)
from data_synthesis.vocab import Vocabulary, load_vocabulary

NORMAL_TEMPLATE = (
    "a close-up photo of a {object} for industrial visual inspection. Top down view. "
    "Centered. {background} background."
)
TEXTURE_TEMPLATE = (
    "a close-up photo of a {object} texture for industrial visual inspection. "
    "Top down view. Centered."
)


class NormalImageGenerator(LazyPipeline):
    """Sample an (object, background) prompt and render it with a text-to-image pipeline.

    Randomness: object, background and the torch seed come from the numpy ``rng``; the noise
    comes from one CPU ``torch.Generator`` per item, so a batch item's noise does not depend on
    the rest of the batch (pixels then match single calls up to batched-kernel rounding).

    Args:
        model: Hub id or local folder, loaded with ``AutoPipelineForText2Image`` on first use
            (reference: FLUX.1-Krea-dev). Required unless ``pipeline`` is given.
        pipeline: An already built text-to-image pipeline (tests, benchmarks).
        vocabulary: Objects YAML file; None = the bundled ``objects.yaml``.
        backgrounds: Background list file; None = the bundled ``backgrounds.txt``.
        objects: Restrict the draw to these object names (must be in the vocabulary).
        height: Image height in px.
        width: Image width in px.
        steps: Denoising steps.
        guidance_scale: Guidance passed to the pipeline; None = the pipeline's default.
        negative_prompt: Passed to the pipeline when set.
        prompt_template: Template with ``{object}`` and ``{background}`` fields.
        texture_template: Template for texture objects (``{object}`` only).
        dtype: Weights dtype when loading ``model``.
        device: Device when loading ``model``.
        attention_slicing: Lower peak memory at some speed cost (only when loading ``model``).
        pipeline_class: diffusers class name to load ``model`` with (e.g. ``FluxPipeline``);
            None = ``AutoPipelineForText2Image``.
    """

    pipeline_kind = "text2img"

    def __init__(
        self,
        model: str | None = None,
        pipeline: Any = None,
        vocabulary: str | Path | None = None,
        backgrounds: str | Path | None = None,
        objects: Sequence[str] | None = None,
        height: int = 1024,
        width: int = 1024,
        steps: int = 20,
        guidance_scale: float | None = 4.0,
        negative_prompt: str | None = None,
        prompt_template: str = NORMAL_TEMPLATE,
        texture_template: str = TEXTURE_TEMPLATE,
        dtype: DType = "auto",
        device: Device = "auto",
        attention_slicing: bool = False,
        pipeline_class: str | None = None,
    ) -> None:
        if model is None and pipeline is None:
            raise ValueError("NormalImageGenerator needs model= (hub id or folder) or pipeline=")
        if min(height, width, steps) < 1:
            raise ValueError("height, width and steps must be >= 1")
        self.vocab: Vocabulary = load_vocabulary(vocabulary, backgrounds)
        self.objects = list(objects) if objects is not None else self.vocab.names
        if not self.objects:
            raise ValueError("objects: empty list")
        for name in self.objects:
            self.vocab.entry(name)
        self.model, self._pipe = model, pipeline
        self.height, self.width, self.steps = height, width, steps
        self.guidance_scale, self.negative_prompt = guidance_scale, negative_prompt
        self.prompt_template, self.texture_template = prompt_template, texture_template
        self.dtype, self.device, self.attention_slicing = dtype, device, attention_slicing
        self.pipeline_class = pipeline_class

    def sample_prompt(self, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
        """Draw object and background uniformly (and a torch seed) and build the prompt.

        The background is drawn for textures too (then unused), so every item consumes the
        same number of draws.

        Returns:
            The prompt and ``{object, background, texture, prompt, seed}``.
        """
        obj = self.objects[int(rng.integers(len(self.objects)))]
        background = self.vocab.backgrounds[int(rng.integers(len(self.vocab.backgrounds)))]
        texture = self.vocab.entry(obj).texture
        if texture:
            prompt = self.texture_template.format(object=obj)
        else:
            prompt = self.prompt_template.format(object=obj, background=background)
        params = {
            "object": obj,
            "background": None if texture else background,
            "texture": texture,
            "prompt": prompt,
            "seed": int(rng.integers(SEED_HIGH)),
        }
        return prompt, params

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """One normal image and its params (see :meth:`generate`)."""
        return self.generate([rng])[0]

    def generate(
        self, rngs: Sequence[np.random.Generator]
    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Render one image per rng in a single pipeline call.

        Returns:
            ``(image, params)`` pairs; image is float32 (height, width, 3) in [0, 1].
        """

        params = [self.sample_prompt(r)[1] for r in rngs]
        if not params:
            return []
        images = run_pipeline(
            self.pipeline,
            len(params),
            prompt=[p["prompt"] for p in params],
            height=self.height,
            width=self.width,
            num_inference_steps=self.steps,
            generator=generators([p["seed"] for p in params]),
            guidance_scale=self.guidance_scale,
            negative_prompt=self.negative_prompt,
        )
        extra = {"model": self.model, "steps": self.steps, "guidance_scale": self.guidance_scale}
        return [(np.clip(im, 0.0, 1.0), {**p, **extra}) for im, p in zip(images, params)]
