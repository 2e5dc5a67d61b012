"""Kvasir-SEG (Jha et al. 2020): 1,000 polyp images with masks, pixel level.

Distributed as ``Kvasir-SEG/images/<id>.jpg`` with ``Kvasir-SEG/masks/<id>.jpg`` (same name;
ids like ``cju0qkwl35piu0993l0dewei2``) and ``kavsir_bboxes.json``. The masks are JPEGs: their
values sit near, not at, 0 and 255, and the mask rule cuts JPEG files at half of 255. Every
image shows a polyp, so image metrics are excluded (``image_labels=False``).
"""

from __future__ import annotations

from anomalyvfm.data.datasets.medical_common import LesionSegmentationSet, PairLayout

LAYOUTS = (PairLayout("images", "masks"),)


class Kvasir(LesionSegmentationSet):
    """Kvasir-SEG polyp segmentation, read in place.

    Args:
        root: the ``Kvasir-SEG`` folder (holding ``images/`` and ``masks/``).
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel (JPEG masks: above half).

    Raises:
        FileNotFoundError: the root is not in the layout, or an image has no mask of the same
            name; the message names the root or file and the expected layout.
    """

    def __init__(
        self, root: str, name: str = "kvasir", mask_threshold: float | None = None
    ) -> None:
        super().__init__(root, name, "kvasir", "polyp", LAYOUTS, mask_threshold)
