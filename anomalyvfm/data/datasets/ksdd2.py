"""KolektorSDD2 (KSDD2, Božič et al., 2021), as distributed.

``<root>/{train,test}/<id>.png`` (colour, ~230x630) with a ``<id>_GT.png`` mask beside every
image, empty for defect-free surfaces. The official test split has 1,004 images (110 defective).
An image is defective when its mask has a positive (nonzero) pixel. One category, ``ksdd2``.
"""

from __future__ import annotations

from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.ksdd import labelled_record
from data_synthesis.io import list_images

LAYOUT = "<root>/test/<id>.png with a <id>_GT.png mask beside each"
CATEGORY = "ksdd2"
MASK_SUFFIX = "_GT"


class KSDD2(EvalDataset):
    """KolektorSDD2 test split.

    Args:
        root: folder holding ``train`` and ``test``.
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel.

    Raises:
        FileNotFoundError: the root or its ``test`` folder is missing or holds no image, or an
            image has no ``_GT.png`` mask.
    """

    def __init__(self, root: str, name: str = "ksdd2", mask_threshold: float | None = None) -> None:
        super().__init__(root, name, mask_threshold=mask_threshold)
        test = self.root / "test"
        if not test.is_dir():
            raise FileNotFoundError(
                f"{name} root {self.root} has no test folder; expected {LAYOUT}"
            )
        files = list_images(test, recursive=False, allow_empty=True)
        images = [p for p in files if not p.stem.endswith(MASK_SUFFIX)]
        if not images:
            raise FileNotFoundError(f"{name}: no images in {test}; expected {LAYOUT}")
        for image in images:
            mask = image.with_name(f"{image.stem}{MASK_SUFFIX}.png")
            self.records.append(labelled_record(image, mask, CATEGORY, name, self.mask_threshold))
