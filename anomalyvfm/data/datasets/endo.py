"""Endo: the EndoTect 2020 segmentation test set (Hicks et al., ICPR 2020 workshop), pixel level.

"Endo" in the zero-shot papers (AnomalyCLIP, AdaCLIP, AnomalyVFM) is the 200-image polyp
segmentation test set of the EndoTect 2020 challenge (whose training data is HyperKvasir, with
Kvasir-SEG for segmentation). It is distributed like Kvasir-SEG:
``EndoTect_2020_Segmentation_Test_Dataset/images/<id>.jpg`` with ``.../masks/<id>.<ext>``
(same stem; copies with JPEG and with PNG masks circulate, and both are read). JPEG masks are
cut at half of 255 (the mask rule's default for JPEG files), PNG masks at any non-zero value.
Every image shows a polyp, so image metrics are excluded (``image_labels=False``).
"""

from __future__ import annotations

from anomalyvfm.data.datasets.medical_common import LesionSegmentationSet, PairLayout

LAYOUTS = (PairLayout("images", "masks"),)


class Endo(LesionSegmentationSet):
    """EndoTect 2020 segmentation test set, read in place.

    Args:
        root: the ``EndoTect_2020_Segmentation_Test_Dataset`` folder (``images/``, ``masks/``).
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel (JPEG masks: above half).

    Raises:
        FileNotFoundError: the root is not in the layout, or an image has no mask of the same
            stem; the message names the root or file and the expected layout.
    """

    def __init__(self, root: str, name: str = "endo", mask_threshold: float | None = None) -> None:
        super().__init__(root, name, "endo", "polyp", LAYOUTS, mask_threshold)
