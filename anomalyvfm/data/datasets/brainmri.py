"""BrainMRI: the Kaggle "Brain MRI Images for Brain Tumor Detection" set (image level).

Distributed as ``no/`` (98 tumour-free slices) and ``yes/`` (155 with a tumour), mixed
``.jpg`` / ``.JPG`` / ``.jpeg`` / ``.png`` files with free-form names (``1 no.jpeg``, ``Y1.jpg``).
The Kaggle download also wraps a copy of both folders in ``brain_tumor_dataset/``; either is read.
No masks: image metrics only.
"""

from __future__ import annotations

from anomalyvfm.data.datasets.medical_common import TwoFolderImageSet


class BrainMRI(TwoFolderImageSet):
    """BrainMRI (253 images: 98 normal, 155 tumour), read in place.

    Args:
        root: folder holding ``no/`` and ``yes/`` (or ``brain_tumor_dataset/no``, ``.../yes``).
        name: dataset name in metric names.

    Raises:
        FileNotFoundError: the root is missing or lacks the two folders; the message names the
            root and the expected layout.
    """

    def __init__(self, root: str, name: str = "brainmri") -> None:
        super().__init__(
            root,
            name,
            category="brainmri",
            defect_type="tumor",
            nested=("brain_tumor_dataset",),
        )
