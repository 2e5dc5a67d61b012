"""Br35H: the Kaggle "Br35H :: Brain Tumor Detection 2020" set (image level).

Distributed as ``no/no0.jpg`` .. ``no1499.jpg`` (normal), ``yes/y0.jpg`` .. ``y1499.jpg``
(tumour) and ``pred/`` (60 unlabelled images, not part of the benchmark and ignored).
No masks: image metrics only.
"""

from __future__ import annotations

from anomalyvfm.data.datasets.medical_common import TwoFolderImageSet


class Br35H(TwoFolderImageSet):
    """Br35H (3,000 images: 1,500 normal, 1,500 tumour), read in place.

    Args:
        root: folder holding ``no/`` and ``yes/``.
        name: dataset name in metric names.

    Raises:
        FileNotFoundError: the root is missing or lacks the two folders; the message names the
            root and the expected layout.
    """

    def __init__(self, root: str, name: str = "br35h") -> None:
        super().__init__(root, name, category="br35h", defect_type="tumor")
