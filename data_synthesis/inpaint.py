"""Diffusion-inpainted anomalies: a defect prompt inpainted into a box on the object.

A box (each side uniform in ``[box_min, box_max]`` px at ``reference_size``, scaled by
``sqrt(H * W) / reference_size``) is centred on a random foreground pixel and clipped to the
image; a diffusers inpainting pipeline fills it from "a close-up photo of a {defect}
{object} ... {background} background." (the normal image's own background; textures: "a
close-up photo of a {defect} {object} texture ..." with no background). For a FLUX text-to-image
checkpoint (the reference: FLUX.1-Krea-dev) that pipeline is ``FluxInpaintPipeline``: with
``strength`` 1.0 the box starts from pure noise and the latent outside it is reset to the
normal image's at every step. Outside the box the normal pixels are restored by default,
blended into the generated ones over ``feather`` px inside the box edge, so neither the VAE
round trip nor a hard seam is left as a shortcut (docs/method.md, section 1.1). diffusers is
imported only when the pipeline loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from data_synthesis._diffusers import (
    SEED_HIGH,
    Device,
    DType,
    LazyPipeline,
    generators,
    run_pipeline,
)
from data_synthesis.base import Anomaly, AnomalyGeneratorBase, as_image
from data_synthesis.foreground import SegmentationForeground, compute_foreground
from data_synthesis.io import resize_image
from data_synthesis.vocab import Vocabulary, load_vocabulary

DEFECT_TEMPLATE = (
    "a close-up photo of a {defect} {object} for industrial visual inspection. "
    "Top down view. Centered. {background} background."
)
TEXTURE_DEFECT_TEMPLATE = (
    "a close-up photo of a {defect} {object} texture for industrial visual inspection. "
    "Top down view. Centered."
)
ForegroundChoice = Literal["auto", "all", "threshold", "saliency"]
SegmenterSpec = SegmentationForeground | str | dict[str, Any] | None


def sample_box(
    shape: tuple[int, int],
    foreground: np.ndarray,
    rng: np.random.Generator,
    side_range: tuple[float, float],
) -> tuple[list[int], list[int]]:
    """Axis-aligned box with sides uniform in ``side_range`` centred on a foreground pixel.

    Returns:
        ``[y0, x0, y1, x1]`` (clipped to the image, half-open) and the centre ``[cy, cx]``.
    """
    h, w = shape
    bh, bw = (max(1, int(round(s))) for s in rng.uniform(*side_range, size=2))
    ys, xs = np.nonzero(foreground)
    k = int(rng.integers(len(ys)))
    cy, cx = int(ys[k]), int(xs[k])
    y0, x0 = max(0, cy - bh // 2), max(0, cx - bw // 2)
    y1, x1 = min(h, cy - bh // 2 + bh), min(w, cx - bw // 2 + bw)
    return [y0, x0, y1, x1], [cy, cx]


def blend_weights(mask: np.ndarray, feather: float) -> np.ndarray:
    """Weight of the generated pixels when the normal ones are restored outside ``mask``.

    0 outside the mask; inside, the Euclidean distance to the nearest outside pixel divided by
    ``feather + 1``, capped at 1, so the weight rises over the ``feather`` px next to the mask's
    edge. Edges on the image border are not blended (nothing lies beyond them). ``feather`` 0
    gives the mask itself: a hard paste.
    """
    inside = np.asarray(mask) > 0
    if feather <= 0 or inside.all() or not inside.any():
        return inside.astype(np.float32)
    dist = ndimage.distance_transform_edt(inside)
    return np.clip(dist / (feather + 1.0), 0.0, 1.0).astype(np.float32)


def build_segmenter(spec: SegmenterSpec) -> SegmentationForeground | None:
    """A segmenter from a model id or folder, a mapping of its options (YAML), or itself."""
    if spec is None or isinstance(spec, SegmentationForeground):
        return spec
    if isinstance(spec, str):
        return SegmentationForeground(model=spec)
    if isinstance(spec, dict):
        return SegmentationForeground(**spec)
    raise ValueError(f"segmenter: expected a model id, a mapping or None, got {spec!r}")


def working_shape(shape: tuple[int, int], resolution: int | None, multiple: int) -> tuple[int, int]:
    """Pipeline size: long side scaled to ``resolution`` (if set), rounded to ``multiple``."""
    h, w = shape
    scale = 1.0 if resolution is None else resolution / max(h, w)
    return tuple(
        max(multiple, int(np.floor(s * scale / multiple + 0.5)) * multiple) for s in (h, w)
    )  # type: ignore[return-value]


class DiffusionInpaintGenerator(LazyPipeline, AnomalyGeneratorBase):
    """Inpaint an object-specific defect into a box centred on the foreground.

    The defect prompt repeats the normal prompt's background sentence: the background comes with
    the image (``generate(..., backgrounds=...)``; the pipeline passes the normal's) or, when
    unknown, is drawn from the background list. Texture objects use ``texture_template``, which
    calls them textures and has no background.

    Randomness: every choice (object, defect, background, box, torch seed) comes from the numpy
    ``rng``; the diffusion noise comes from a CPU ``torch.Generator`` seeded from it, one per
    item. In a batch, each item's noise is therefore independent of the other items, and the box,
    prompt, mask and params are exactly those of a one-by-one call; the pixels match one-by-one
    calls only up to floating-point differences of batched kernels (about 1e-5 on CPU).

    Args:
        model: Hub id or local folder of a diffusers checkpoint, loaded on first use as an
            inpainting pipeline: a text-to-image checkpoint as its family's inpainting pipeline
            (FLUX.1-Krea-dev -> ``FluxInpaintPipeline``, SD/SDXL -> their inpainting pipelines),
            an inpainting or FLUX Fill checkpoint as itself.
        pipeline_class: diffusers class name to load ``model`` with instead (e.g.
            ``FluxInpaintPipeline``); None picks it as above.
        pipeline: An already built pipeline (tests, benchmarks); overrides ``model``.
        object_name: Object used by ``__call__``; None draws one from the vocabulary.
        vocabulary: Objects YAML file (see ``data_synthesis/vocab/objects.yaml``); None = bundled.
        backgrounds: Background list drawn from when an image's background is unknown; None =
            the bundled ``backgrounds.txt``.
        steps: Denoising steps.
        guidance_scale: Classifier-free guidance; None = the pipeline's default.
        strength: Noise strength of the masked region; 1.0 (the reference) starts the box from
            pure noise; None = the pipeline's default (1.0 for SD, 0.6 for FLUX inpainting).
        dtype: Weights dtype when loading ``model``; "auto" = bf16/fp16 on GPU, fp32 on CPU.
        device: Device when loading ``model``; "auto" = CUDA if available.
        box_min: Smallest box side in px at ``reference_size``.
        box_max: Largest box side in px at ``reference_size``.
        reference_size: Image side the box range refers to (1024 in the reference).
        resolution: Long side the pipeline runs at (e.g. 512 for SD 1.5); None = image size.
            Either way the size is rounded to ``size_multiple`` and the result resized back.
        size_multiple: Pipeline sizes are multiples of this (8 for SD VAEs, 16 for FLUX).
        prompt_template: Defect prompt with ``{defect}``, ``{object}`` and ``{background}``
            fields.
        texture_template: Defect prompt of texture objects (``{defect}``, ``{object}``).
        negative_prompt: Passed to the pipeline when set (not every pipeline accepts one).
        restore_outside: Restore the normal pixels outside the box.
        feather: Width in px (at ``reference_size``, scaled like the box) of the band inside
            the box edge over which generated pixels are blended into the restored ones; 0 =
            hard paste.
        foreground: "auto" ("all" for textures, "threshold" otherwise) or a method name.
        segmenter: Segmentation model used instead of ``foreground`` for non-texture objects:
            a :class:`SegmentationForeground`, a transformers model id or folder, or a mapping of
            its options (``{model: ..., background_labels: [...], device: auto}``).
        attention_slicing: Lower peak memory at some speed cost (only when loading ``model``).
    """

    name: str = "inpaint"

    pipeline_kind = "inpaint"

    def __init__(
        self,
        model: str | None = None,
        pipeline: Any = None,
        object_name: str | None = None,
        vocabulary: str | Path | None = None,
        backgrounds: str | Path | None = None,
        steps: int = 20,
        guidance_scale: float | None = None,
        strength: float | None = 1.0,
        dtype: DType = "auto",
        device: Device = "auto",
        box_min: float = 50.0,
        box_max: float = 300.0,
        reference_size: int = 1024,
        resolution: int | None = None,
        size_multiple: int = 8,
        prompt_template: str = DEFECT_TEMPLATE,
        texture_template: str = TEXTURE_DEFECT_TEMPLATE,
        negative_prompt: str | None = None,
        restore_outside: bool = True,
        feather: float = 8.0,
        foreground: ForegroundChoice = "auto",
        segmenter: SegmenterSpec = None,
        attention_slicing: bool = False,
        pipeline_class: str | None = None,
    ) -> None:
        if model is None and pipeline is None:
            raise ValueError(
                "DiffusionInpaintGenerator needs model= (hub id or folder) or pipeline="
            )
        if not 0 < box_min <= box_max:
            raise ValueError(
                f"need 0 < box_min <= box_max, got box_min={box_min}, box_max={box_max}"
            )
        if steps < 1 or size_multiple < 1 or reference_size < 1:
            raise ValueError("steps, size_multiple and reference_size must be >= 1")
        if strength is not None and not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1] or null, got {strength}")
        if feather < 0:
            raise ValueError(f"feather must be >= 0, got {feather}")
        self.vocab: Vocabulary = load_vocabulary(vocabulary, backgrounds)
        if object_name is not None:
            self.vocab.entry(object_name)
        self.model, self._pipe, self.object_name = model, pipeline, object_name
        self.steps, self.guidance_scale, self.strength = steps, guidance_scale, strength
        self.dtype, self.device, self.attention_slicing = dtype, device, attention_slicing
        self.box_range, self.reference_size = (float(box_min), float(box_max)), reference_size
        self.resolution, self.size_multiple = resolution, size_multiple
        self.prompt_template, self.texture_template = prompt_template, texture_template
        self.negative_prompt = negative_prompt
        self.restore_outside, self.feather, self.foreground = restore_outside, feather, foreground
        self.segmenter = build_segmenter(segmenter)
        self.pipeline_class = pipeline_class

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> Anomaly:
        """Inpaint one defect into ``image`` (see :meth:`generate`)."""
        return self.generate([image], [rng])[0]

    def _foreground(
        self, img: np.ndarray, texture: bool, given: np.ndarray | None, index: int
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if given is not None:
            fg = np.asarray(given).astype(bool)
            if fg.shape != img.shape[:2]:
                raise ValueError(
                    f"foregrounds[{index}] has shape {fg.shape}, image has {img.shape[:2]}"
                )
            if not fg.any():
                return np.ones_like(fg), {"method": "given", "fallback": True}
            return fg, {"method": "given", "fallback": False}
        if self.segmenter is not None and not texture:
            if self.segmenter.device == "auto":
                self.segmenter.device = self.device
            return self.segmenter(img)
        method = self.foreground
        if method == "auto":
            method = "all" if texture else "threshold"
        return compute_foreground(img, method)

    def _plan(
        self,
        img: np.ndarray,
        rng: np.random.Generator,
        obj: str | None,
        fg_given: np.ndarray | None,
        index: int,
        background: str | None = None,
    ) -> dict[str, Any]:
        """Draw every random choice of one item, in a fixed order.

        The background is drawn only for a non-texture object whose background is not given.
        """
        obj = obj or self.object_name or self.vocab.names[int(rng.integers(len(self.vocab.names)))]
        entry = self.vocab.entry(obj)
        defect = entry.defects[int(rng.integers(len(entry.defects)))]
        drawn = not entry.texture and background is None
        if entry.texture:
            background, prompt = None, self.texture_template.format(defect=defect, object=obj)
        else:
            if drawn:
                background = self.vocab.backgrounds[int(rng.integers(len(self.vocab.backgrounds)))]
            prompt = self.prompt_template.format(defect=defect, object=obj, background=background)
        fg, fg_info = self._foreground(img, entry.texture, fg_given, index)
        h, w = img.shape[:2]
        scale = float(np.sqrt(h * w)) / self.reference_size
        lo, hi = self.box_range
        box, centre = sample_box((h, w), fg, rng, (lo * scale, hi * scale))
        return {
            "object": obj,
            "defect": defect,
            "texture": entry.texture,
            "background": background,
            "background_drawn": drawn,
            "prompt": prompt,
            "negative_prompt": self.negative_prompt,
            "box": box,
            "centre": centre,
            "box_scale": scale,
            "foreground": fg_info,
            "seed": int(rng.integers(SEED_HIGH)),
        }

    def generate(
        self,
        images: Sequence[np.ndarray],
        rngs: Sequence[np.random.Generator],
        objects: Sequence[str | None] | None = None,
        foregrounds: Sequence[np.ndarray | None] | None = None,
        backgrounds: Sequence[str | None] | None = None,
    ) -> list[Anomaly]:
        """Inpaint a batch: one pipeline call per distinct working size (one for equal sizes).

        Args:
            images: float32 (H, W, 3) images in [0, 1].
            rngs: One numpy Generator per image; item ``i`` depends only on ``images[i]``,
                ``rngs[i]`` and the per-item options, as for ``__call__``.
            objects: Per-item object names (None entries fall back to ``object_name`` or a
                vocabulary draw).
            foregrounds: Per-item bool (H, W) foreground masks (None entries are computed).
            backgrounds: Per-item backgrounds of the normal images, repeated in the defect
                prompt (None entries are drawn from the background list; unused for textures).

        Returns:
            One :class:`Anomaly` per image: mask = the box, params = the choices made.
        """
        n = len(images)
        objs = list(objects) if objects is not None else [None] * n
        fgs = list(foregrounds) if foregrounds is not None else [None] * n
        bgs = list(backgrounds) if backgrounds is not None else [None] * n
        if not len(rngs) == len(objs) == len(fgs) == len(bgs) == n:
            raise ValueError(
                f"generate: got {n} images, {len(rngs)} rngs, {len(objs)} objects, "
                f"{len(fgs)} foregrounds, {len(bgs)} backgrounds; the lengths must match"
            )
        imgs = [as_image(im) for im in images]
        plans = [
            self._plan(im, r, o, f, i, b)
            for i, (im, r, o, f, b) in enumerate(zip(imgs, rngs, objs, fgs, bgs))
        ]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(imgs):
            key = working_shape(im.shape[:2], self.resolution, self.size_multiple)
            groups.setdefault(key, []).append(i)
        outputs: list[np.ndarray | None] = [None] * n
        for size, idx in groups.items():
            for i, out in zip(
                idx, self._run(size, [imgs[i] for i in idx], [plans[i] for i in idx])
            ):
                outputs[i] = out
        return [self._finish(im, out, p) for im, out, p in zip(imgs, outputs, plans)]

    def _run(
        self, size: tuple[int, int], imgs: list[np.ndarray], plans: list[dict[str, Any]]
    ) -> list[np.ndarray]:
        """One pipeline call at ``size``; returns float32 images at the working size."""
        import torch

        h, w = size
        pix = np.stack([resize_image(im, size) for im in imgs])
        masks = np.stack(
            [self._box_mask(im.shape[:2], p["box"], size) for im, p in zip(imgs, plans)]
        )
        return run_pipeline(
            self.pipeline,
            len(plans),
            prompt=[p["prompt"] for p in plans],
            image=torch.from_numpy(np.ascontiguousarray(pix.transpose(0, 3, 1, 2))),
            mask_image=torch.from_numpy(masks[:, None]),
            height=h,
            width=w,
            num_inference_steps=self.steps,
            generator=generators([p["seed"] for p in plans]),
            guidance_scale=self.guidance_scale,
            strength=self.strength,
            negative_prompt=self.negative_prompt,
        )

    @staticmethod
    def _box_mask(
        shape: tuple[int, int], box: list[int], size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """float32 {0, 1} box mask at ``shape``, or scaled (covering) to ``size``."""
        h, w = shape
        y0, x0, y1, x1 = box
        if size is not None and size != (h, w):
            sy, sx = size[0] / h, size[1] / w
            y0, x0 = int(np.floor(y0 * sy)), int(np.floor(x0 * sx))
            y1, x1 = int(np.ceil(y1 * sy)), int(np.ceil(x1 * sx))
            h, w = size
        mask = np.zeros((h, w), dtype=np.float32)
        mask[y0:y1, x0:x1] = 1.0
        return mask

    def _finish(self, img: np.ndarray, out: np.ndarray | None, plan: dict[str, Any]) -> Anomaly:
        assert out is not None
        mask = self._box_mask(img.shape[:2], plan["box"])
        gen = np.clip(resize_image(out, img.shape[:2]), 0.0, 1.0).astype(np.float32)
        feather = self.feather * plan["box_scale"]
        if self.restore_outside:
            weight = blend_weights(mask, feather)[..., None]
            gen = (weight * gen + (1.0 - weight) * img).astype(np.float32)
        params = dict(plan)
        params.update(
            model=self.model,
            pipeline=type(self.pipeline).__name__,
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            strength=self.strength,
            working_size=list(out.shape[:2]),
            restore_outside=self.restore_outside,
            feather=feather if self.restore_outside else None,
        )
        return Anomaly(gen, mask, params)
