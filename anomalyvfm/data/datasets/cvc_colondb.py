"""CVC-ColonDB: 380 colonoscopy frames with polyp masks (Tajbakhsh et al. 2015), pixel level.

Distributed (the polyp-segmentation test collections and the zero-shot repositories) as
``images/<n>.png`` with ``masks/<n>.png`` (same name, 0/255), n = 1..380. Every frame shows a
polyp, so image metrics are excluded (``image_labels=False``).
"""

from __future__ import annotations

from anomalyvfm.data.datasets.medical_common import LesionSegmentationSet, PairLayout

LAYOUTS = (PairLayout("images", "masks"),)


class CVCColonDB(LesionSegmentationSet):
    """CVC-ColonDB polyp segmentation, read in place.

    Args:
        root: folder holding ``images/`` and ``masks/``.
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel (JPEG masks: above half).

    Raises:
        FileNotFoundError: the root is not in the layout, or a frame has no mask of the same
            name; the message names the root or file and the expected layout.
    """

    def __init__(
        self, root: str, name: str = "cvc_colondb", mask_threshold: float | None = None
    ) -> None:
        super().__init__(root, name, "cvc_colondb", "polyp", LAYOUTS, mask_threshold)
