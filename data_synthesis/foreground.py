"""Foreground masks of normal images: where an inpainted defect may be centred.

Methods (numpy/scipy only): ``"all"`` (every pixel; textures), ``"threshold"`` (distance to the
median border colour, Otsu-thresholded) and ``"saliency"`` (spectral residual, Hou & Zhang 2007,
Otsu-thresholded). They need no model, so ``"threshold"`` is the offline default of the inpainting
generator; :class:`SegmentationForeground` runs a segmentation model instead (any Hugging Face
model the transformers ``image-segmentation`` pipeline runs, by id or local folder, or any
callable), as the reference does with a salient-object segmentation network. No method ever
returns an empty mask: it falls back to all ones and records ``fallback: True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from data_synthesis.base import as_image
from data_synthesis.io import resize_image

Method = Literal["all", "threshold", "saliency"]
METHODS: tuple[str, ...] = ("all", "threshold", "saliency")
# Distances below this (RGB units in [0, 1]) are background whatever Otsu says: on a plain image
# Otsu would otherwise split sensor noise into a speckle "object".
_MIN_CONTRAST = 0.08
_SALIENCY_SIDE = 64


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample (maximises the between-class variance)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return hi
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    between = np.nan_to_num(between[:-1])
    return float(edges[1 + int(np.argmax(between))])


def _threshold_mask(image: np.ndarray, border: float) -> np.ndarray:
    h, w = image.shape[:2]
    b = max(1, int(round(border * min(h, w))))
    ring = np.concatenate(
        [image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3)]
        + [image[:, :b].reshape(-1, 3), image[:, -b:].reshape(-1, 3)]
    )
    dist = np.sqrt(((image - np.median(ring, axis=0)) ** 2).sum(axis=-1))
    mask = dist > max(otsu_threshold(dist), _MIN_CONTRAST)
    return np.asarray(ndimage.binary_fill_holes(ndimage.binary_opening(mask)), dtype=bool)


def _saliency_mask(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    gray = image.mean(axis=-1).astype(np.float32)
    if float(gray.std()) < 1e-3:  # a flat image has no salient region (FFT noise aside)
        return np.zeros((h, w), dtype=bool)
    scale = _SALIENCY_SIDE / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = resize_image(gray, size).astype(np.float64)
    spectrum = np.fft.fft2(small)
    log_amp = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amp - ndimage.uniform_filter(log_amp, size=3, mode="nearest")
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    sal = ndimage.gaussian_filter(sal, sigma=_SALIENCY_SIDE / 16)
    sal_full = resize_image(sal, (h, w))
    if float(sal_full.max() - sal_full.min()) < 1e-12:
        return np.zeros((h, w), dtype=bool)
    return np.asarray(ndimage.binary_fill_holes(sal_full > otsu_threshold(sal_full)), dtype=bool)


def compute_foreground(
    image: np.ndarray, method: Method = "threshold", border: float = 0.05
) -> tuple[np.ndarray, dict[str, Any]]:
    """Foreground mask and a JSON record of how it was obtained.

    Args:
        image: float32 (H, W, 3) in [0, 1].
        method: "all", "threshold" (border-colour distance + Otsu) or "saliency".
        border: Width of the border ring that defines the background colour, as a fraction of
            the shorter side ("threshold" only).

    Returns:
        bool (H, W) mask, never empty, and ``{"method", "fraction", "fallback"}``.

    Raises:
        ValueError: On an unknown method or a malformed image.
    """
    img = as_image(image)
    if method not in METHODS:
        raise ValueError(f"unknown foreground method {method!r}; choose one of {METHODS}")
    if method == "all":
        mask = np.ones(img.shape[:2], dtype=bool)
    elif method == "threshold":
        mask = _threshold_mask(img, border)
    else:
        mask = _saliency_mask(img)
    return finalize_mask(mask, method)


def finalize_mask(mask: np.ndarray, method: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Replace an empty mask by all ones and describe the result."""
    fallback = not bool(mask.any())
    if fallback:
        mask = np.ones(mask.shape, dtype=bool)
    info = {"method": method, "fraction": float(mask.mean()), "fallback": fallback}
    return mask, info


def foreground_mask(
    image: np.ndarray, method: Method = "threshold", border: float = 0.05
) -> np.ndarray:
    """Only the bool (H, W) mask of :func:`compute_foreground` (never empty)."""
    return compute_foreground(image, method, border)[0]


# ImageNet statistics: the input normalisation of most salient-object networks (BiRefNet, ...).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SegmenterKind = Literal["segments", "salient"]


def _score_map(output: Any, index: Sequence[int] | None) -> Any:
    """The foreground map in a salient-object model's output (a tensor, list or ModelOutput).

    With ``index`` the output is indexed by each entry in turn (``[0, 0]``: first entry of the
    first entry). Without, lists and tuples (deep supervision, coarse to fine) give their last
    entry until a tensor is left. A model output gives its ``logits``.
    """
    output = getattr(output, "logits", output)
    if index is not None:
        for i in index:
            output = output[i]
        return output
    while isinstance(output, (list, tuple)):
        output = output[-1]
    return output


class SegmentationForeground:
    """Foreground from a segmentation model: a transformers model id or folder, or any callable.

    The model is loaded on first use (construction stays offline). With ``model`` and ``kind``
    "segments" the transformers ``image-segmentation`` pipeline runs it (semantic, instance or
    panoptic segmentation models, e.g. Segformer, Mask2Former, DETR) and the union of all segments
    whose label is not in ``background_labels`` is the foreground. With ``kind`` "salient" the
    model is a salient-object network loaded with ``AutoModelForImageSegmentation`` (e.g.
    BiRefNet, with ``trust_remote_code``): the image, resized to ``input_size`` and normalised
    with ``mean``/``std``, goes in, the sigmoid of its (last) logit map comes out, resized to the
    image (``output_index`` picks another map, ``sigmoid: false`` takes it as it is). With
    ``predictor`` any function image -> (H, W) foreground score is used. Salient and predictor
    scores are min-max normalised with ``normalize`` (as the reference does with its ISNet's
    output) and thresholded.

    Args:
        model: Hub id or local folder of a transformers segmentation model.
        predictor: Callable taking the float32 (H, W, 3) image, returning an (H, W) score map.
        kind: "segments" (image-segmentation pipeline) or "salient" (a salient-object model).
        threshold: Scores above this are foreground (salient and predictor; the reference: 0.5
            after min-max normalisation).
        normalize: Min-max normalise the scores before thresholding (salient and predictor).
        background_labels: Segment labels treated as background ("segments" only).
        device: Device of the model: "auto" (a GPU when visible), "cpu", "cuda", ...
        input_size: Square side the image is resized to for a salient model.
        mean: Per-channel mean subtracted for a salient model.
        std: Per-channel standard deviation divided by for a salient model.
        trust_remote_code: Let transformers run the model's own code (needed by models such as
            BiRefNet that are not part of transformers).
        output_index: Indices leading to the foreground map in a salient model's output; None
            = the last entry of each list level.
        sigmoid: Apply a sigmoid to a salient model's map (off for models that output
            probabilities).
    """

    def __init__(
        self,
        model: str | None = None,
        predictor: Callable[[np.ndarray], np.ndarray] | None = None,
        kind: SegmenterKind = "segments",
        threshold: float = 0.5,
        normalize: bool = False,
        background_labels: tuple[str, ...] = ("background", "wall", "floor", "table"),
        device: str = "auto",
        input_size: int = 1024,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        trust_remote_code: bool = False,
        output_index: Sequence[int] | None = None,
        sigmoid: bool = True,
    ) -> None:
        if (model is None) == (predictor is None):
            raise ValueError("SegmentationForeground: give exactly one of model= or predictor=")
        if kind not in ("segments", "salient"):
            raise ValueError(f"segmenter kind must be 'segments' or 'salient', got {kind!r}")
        self.model, self.predictor, self.kind, self.threshold = model, predictor, kind, threshold
        self.background_labels, self.device = tuple(background_labels), device
        self.normalize, self.input_size, self.trust_remote_code = (
            normalize,
            input_size,
            trust_remote_code,
        )
        self.output_index = list(output_index) if output_index is not None else None
        self.sigmoid = sigmoid
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self._pipe: Any = None

    def _device(self) -> str:
        from data_synthesis._diffusers import resolve_device

        return resolve_device("auto") if self.device == "auto" else self.device

    def _segment_scores(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        if self._pipe is None:
            from transformers import pipeline

            self._pipe = pipeline(
                "image-segmentation",
                model=self.model,
                device=self._device(),
                trust_remote_code=self.trust_remote_code,
            )
        pil = Image.fromarray(np.round(image * 255).astype(np.uint8))
        out = np.zeros(image.shape[:2], dtype=np.float32)
        for seg in self._pipe(pil):
            if seg.get("label") not in self.background_labels:
                out = np.maximum(out, np.asarray(seg["mask"], dtype=np.float32) / 255.0)
        return out

    def _salient_scores(self, image: np.ndarray) -> np.ndarray:
        import torch

        if self._pipe is None:
            from transformers import AutoModelForImageSegmentation

            net = AutoModelForImageSegmentation.from_pretrained(
                str(self.model), trust_remote_code=self.trust_remote_code
            )
            self._pipe = net.eval().to(self._device())
        param = next(self._pipe.parameters())
        side = (self.input_size, self.input_size)
        pixels = (resize_image(image, side) - self.mean) / self.std
        batch = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
        with torch.inference_mode():
            logits = _score_map(self._pipe(batch.to(param.device, param.dtype)), self.output_index)
        prob = logits.float()
        prob = (torch.sigmoid(prob) if self.sigmoid else prob).reshape(1, 1, *prob.shape[-2:])
        prob = torch.nn.functional.interpolate(
            prob, size=image.shape[:2], mode="bilinear", align_corners=False
        )
        return np.asarray(prob[0, 0].cpu().numpy(), dtype=np.float32)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Foreground bool (H, W) mask (never empty) and its record, as compute_foreground."""
        img = as_image(image)
        if self.model is not None and self.kind == "segments":
            scores = self._segment_scores(img)
        else:
            if self.predictor is not None:
                scores = np.asarray(self.predictor(img), dtype=np.float32)
            else:
                scores = self._salient_scores(img)
            if self.normalize:
                lo, hi = float(scores.min()), float(scores.max())
                scores = (scores - lo) / (hi - lo) if hi > lo else np.zeros_like(scores)
        if scores.shape != img.shape[:2]:
            raise ValueError(
                f"segmentation model returned shape {scores.shape}, expected {img.shape[:2]}"
            )
        mask, info = finalize_mask(scores > self.threshold, "segmentation")
        info["model"] = self.model
        return mask, info
