"""ISIC 2016 (ISBI 2016 challenge, part 1: lesion segmentation), pixel level.

Distributed as two archives per split that unpack beside each other:
``ISBI2016_ISIC_Part1_Test_Data/ISIC_<7 digits>.jpg`` and
``ISBI2016_ISIC_Part1_Test_GroundTruth/ISIC_<7 digits>_Segmentation.png`` (0/255), 379 test
images; the training split (900) is ``..._Training_Data`` / ``..._Training_GroundTruth``.
The zero-shot benchmark uses the test split. Every image shows a lesion, so image labels are
meaningless and image metrics are excluded (``image_labels=False``).
"""

from __future__ import annotations

from typing import Literal

from anomalyvfm.data.datasets.medical_common import LesionSegmentationSet, PairLayout

SPLIT_FOLDERS = {"test": "Test", "train": "Training"}


class ISIC(LesionSegmentationSet):
    """ISIC 2016 lesion segmentation, read in place.

    Args:
        root: folder holding the ``ISBI2016_ISIC_Part1_<Split>_Data`` and
            ``ISBI2016_ISIC_Part1_<Split>_GroundTruth`` folders.
        split: ``test`` (the benchmark's 379 images) or ``train`` (900).
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel (JPEG masks: above half).

    Raises:
        FileNotFoundError: the root or a folder is missing, or an image has no
            ``<stem>_Segmentation.png``; the message names the root or file and the layout.
    """

    def __init__(
        self,
        root: str,
        split: Literal["test", "train"] = "test",
        name: str = "isic",
        mask_threshold: float | None = None,
    ) -> None:
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"{name}: split must be one of {list(SPLIT_FOLDERS)}, got {split!r}")
        prefix = f"ISBI2016_ISIC_Part1_{SPLIT_FOLDERS[split]}"
        layout = PairLayout(f"{prefix}_Data", f"{prefix}_GroundTruth", "_Segmentation", ".png")
        super().__init__(root, name, "isic", "lesion", [layout], mask_threshold)
