"""The one sample/batch schema shared by every dataset, the task and the callbacks.

A sample is a dict with these keys (the default collate stacks tensors and lists strings):

* ``image``: float32 (3, H, W) RGB in [0, 1], already resized to the model input size.
* ``mask``: float32 (H', W') in {0, 1}; all zeros for normal images and for image-level sets.
* ``label``: int64 scalar, 1 for anomalous.
* ``path``: source file of the image (or a generated id for synthetic samples).
* ``dataset``: dataset name, e.g. ``mvtec_ad``.
* ``category``: category within the dataset, e.g. ``bottle``.
* ``has_mask``: bool scalar, whether pixel metrics are meaningful for this sample.

Evaluation samples also carry ``index``, their position in the dataset, which lets metrics put
samples gathered from several processes back into dataset order, and ``empty_mask``, a bool
scalar that is True for a defective image of a pixel-level set whose mask has no anomalous pixel
(such images are counted and reported). Evaluation batches
(:func:`anomalyvfm.data.evaluation.collate_eval`) also carry ``mask_size`` (B, 2): each mask's
(height, width); masks of different sizes are padded with -1.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from torch import Tensor

IMAGE = "image"
MASK = "mask"
LABEL = "label"
PATH = "path"
DATASET = "dataset"
CATEGORY = "category"
HAS_MASK = "has_mask"


class Sample(TypedDict):
    """One sample; see the module docstring."""

    image: Tensor
    mask: Tensor
    label: Tensor
    path: str
    dataset: str
    category: str
    has_mask: Tensor
    index: NotRequired[Tensor]
    empty_mask: NotRequired[Tensor]


class Batch(TypedDict):
    """A collated batch of :class:`Sample`."""

    image: Tensor
    mask: Tensor
    label: Tensor
    path: list[str]
    dataset: list[str]
    category: list[str]
    has_mask: Tensor
    index: NotRequired[Tensor]
    empty_mask: NotRequired[Tensor]
    mask_size: NotRequired[Tensor]
