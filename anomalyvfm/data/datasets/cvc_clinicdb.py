"""CVC-ClinicDB (Bernal et al. 2015): 612 colonoscopy frames with polyp masks, pixel level.

The official release is ``Original/<n>.tif`` with ``Ground Truth/<n>.tif`` (same name, 0/255),
n = 1..612. Mirrors ship the same pairs as ``PNG/Original`` + ``PNG/Ground Truth`` and
``TIF/Original`` + ``TIF/Ground Truth``, and the zero-shot repositories' copies as
``images/<n>.png`` + ``masks/<n>.png``; all are read, the first found in that order. Every frame
shows a polyp, so image metrics are excluded (``image_labels=False``).
"""

from __future__ import annotations

from anomalyvfm.data.datasets.medical_common import LesionSegmentationSet, PairLayout

LAYOUTS = (
    PairLayout("Original", "Ground Truth"),
    PairLayout("PNG/Original", "PNG/Ground Truth"),
    PairLayout("TIF/Original", "TIF/Ground Truth"),
    PairLayout("images", "masks"),
)


class CVCClinicDB(LesionSegmentationSet):
    """CVC-ClinicDB polyp segmentation, read in place.

    Args:
        root: folder holding ``Original/`` and ``Ground Truth/`` (or a mirror's layout, above).
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel (JPEG masks: above half).

    Raises:
        FileNotFoundError: the root matches no layout, or a frame has no mask of the same name;
            the message names the root or file and the expected layouts.
    """

    def __init__(
        self, root: str, name: str = "cvc_clinicdb", mask_threshold: float | None = None
    ) -> None:
        super().__init__(root, name, "cvc_clinicdb", "polyp", LAYOUTS, mask_threshold)
