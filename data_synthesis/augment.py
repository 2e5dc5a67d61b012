"""Albumentations pipelines for the generators' sources and for training pairs, seeded per call.

A pipeline is written in albumentations' own serialisation (what ``A.to_dict`` writes and
``A.from_dict`` reads), so YAML can list any albumentations transform::

    augment:
      transform:
        __class_fullname__: Compose
        p: 1.0
        transforms:
          - {__class_fullname__: ColorJitter, p: 1.0, brightness: [0.8, 1.2], hue: [-0.1, 0.1]}

Two shorthands are accepted: a bare transform dict (without the ``transform`` wrapper) and a list
of transform dicts (wrapped in a ``Compose``). ``None`` or an empty list means no augmentation.

Determinism: :func:`apply_pipeline` seeds every transform of the pipeline, each with its own
seed derived from one integer drawn from the caller's ``numpy.random.Generator``, before every
call. So the output is a pure function of (pipeline, input, rng state), and no two transforms
share a random stream (albumentations' own ``set_random_seed`` gives every child the same one).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np

PipelineSpec = dict[str, Any] | list[dict[str, Any]] | None
_NAME = "__class_fullname__"


def _transform(name: str, **args: Any) -> dict[str, Any]:
    return {_NAME: name, "p": 1.0, **args}


def _compose(*transforms: dict[str, Any]) -> dict[str, Any]:
    return {"transform": _transform("Compose", transforms=list(transforms))}


# DRAEM's texture recipe: a random rotation by a multiple of 90 degrees and flip (the dihedral
# group D4), then three distinct photometric changes out of seven.
NOISE_TEXTURE_AUGMENT: dict[str, Any] = _compose(
    _transform("D4"),
    _transform(
        "SomeOf",
        n=3,
        replace=False,
        transforms=[
            _transform("RandomGamma", gamma_limit=[50, 200]),
            _transform("RandomBrightnessContrast", brightness_limit=[-0.12, 0.12],
                       contrast_limit=[-0.2, 0.2]),
            _transform("ColorJitter", brightness=[1.0, 1.0], contrast=[1.0, 1.0],
                       saturation=[0.5, 1.5], hue=[-0.25, 0.25]),
            _transform("Solarize", threshold_range=[0.125, 0.5]),
            _transform("Posterize", num_bits=[2, 5]),
            _transform("InvertImg"),
            _transform("AutoContrast"),
        ],
    ),
)  # fmt: skip
# The cut-paste patch: a mild torchvision-style colour jitter (hue +-18 degrees).
CUTPASTE_AUGMENT: dict[str, Any] = _compose(
    _transform("ColorJitter", brightness=[0.9, 1.1], contrast=[0.9, 1.1],
               saturation=[0.9, 1.1], hue=[-0.05, 0.05]),
)  # fmt: skip


def default_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of a default pipeline dict (so a caller can never edit the constant)."""
    return copy.deepcopy(spec)


def build_pipeline(spec: PipelineSpec, option: str = "augment") -> Any:
    """An albumentations ``Compose`` from a pipeline dict, or None for no augmentation.

    Raises:
        ValueError: the spec is not a pipeline dict or names no albumentations transform;
            the message names ``option``.
    """
    if spec is None or (isinstance(spec, list) and not spec):
        return None  # no variation: albumentations is not even imported
    import albumentations as A

    if isinstance(spec, list):
        spec = {"transform": _transform("Compose", transforms=list(spec))}
    if not isinstance(spec, dict):
        raise ValueError(
            f"{option} must be an albumentations dict (A.to_dict format); got {spec!r}"
        )
    if "transform" not in spec:
        spec = {"transform": spec}
    try:
        with warnings.catch_warnings():
            # Entries may leave out ``p``; albumentations warns and uses its default.
            warnings.simplefilter("ignore", UserWarning)
            transform = A.from_dict(copy.deepcopy(spec))
    except Exception as err:
        raise ValueError(
            f"{option} is not a valid albumentations pipeline ({type(err).__name__}: {err}); "
            "write it as A.to_dict does: {transform: {__class_fullname__: Compose, "
            "transforms: [...]}}"
        ) from err
    if not isinstance(transform, A.Compose):
        transform = A.Compose([transform])
    return transform


def _seed_tree(transform: Any, rng: np.random.Generator) -> None:
    """Give ``transform`` and each of its children its own seed from ``rng`` (depth first)."""
    from albumentations.core.composition import BaseCompose

    transform.set_random_seed(int(rng.integers(2**32)))
    if isinstance(transform, BaseCompose):
        for child in transform.transforms:
            _seed_tree(child, rng)


def apply_pipeline(
    pipeline: Any, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Run ``pipeline`` on ``image`` (and ``mask``), seeded from one draw of ``rng``.

    Args:
        pipeline: from :func:`build_pipeline`; None returns the inputs unchanged (and draws
            nothing from ``rng``).
        rng: the caller's generator; exactly one integer is drawn from it.
        image: (H, W, 3) uint8, or float32 in [0, 1].
        mask: optional (H, W) mask transformed with the image (geometric transforms only).

    Returns:
        The image (same dtype; float results clipped to [0, 1]), the mask (or None) and the seed.
    """
    if pipeline is None:
        return image, mask, -1
    seed = int(rng.integers(2**31))
    _seed_tree(pipeline, np.random.default_rng(seed))
    data: dict[str, np.ndarray] = {"image": np.ascontiguousarray(image)}
    if mask is not None:
        data["mask"] = np.ascontiguousarray(mask)
    out = pipeline(**data)
    result = out["image"]
    if result.dtype != np.uint8:
        result = np.clip(result, 0.0, 1.0).astype(np.float32, copy=False)
    return result, out.get("mask"), seed
