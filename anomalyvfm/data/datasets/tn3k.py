"""TN3K (Gong et al., ISBI 2021): thyroid-nodule ultrasound images with masks, pixel level.

Distributed (in ``Thyroid Dataset/tn3k/``) as ``test-image/<nnnn>.jpg`` with
``test-mask/<nnnn>.jpg`` (same name), 614 test images, and ``trainval-image`` /
``trainval-mask`` (2,879) with fold JSONs. The zero-shot benchmark uses the test split. The
masks are JPEGs, binarised at half of 255 (the mask rule's default for JPEG files). Every image
shows a nodule, so image metrics are excluded (``image_labels=False``).
"""

from __future__ import annotations

from typing import Literal

from anomalyvfm.data.datasets.medical_common import LesionSegmentationSet, PairLayout

SPLITS = ("test", "trainval")


class TN3K(LesionSegmentationSet):
    """TN3K thyroid-nodule segmentation, read in place.

    Args:
        root: the ``tn3k`` folder (holding ``test-image/`` and ``test-mask/``).
        split: ``test`` (the benchmark's 614 images) or ``trainval``.
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel (JPEG masks: above half).

    Raises:
        FileNotFoundError: the root is not in the layout, or an image has no mask of the same
            name; the message names the root or file and the expected layout.
    """

    def __init__(
        self,
        root: str,
        split: Literal["test", "trainval"] = "test",
        name: str = "tn3k",
        mask_threshold: float | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"{name}: split must be one of {list(SPLITS)}, got {split!r}")
        layout = PairLayout(f"{split}-image", f"{split}-mask")
        super().__init__(root, name, "tn3k", "nodule", [layout], mask_threshold)
