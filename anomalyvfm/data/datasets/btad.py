"""BTAD, the beanTech Anomaly Detection set (Mishra et al., 2021), as distributed.

``BTech_Dataset_transformed/<category>/test/{ok,ko}/<name>.<ext>`` for categories ``01``,
``02``, ``03`` with masks ``<category>/ground_truth/ko/<name>.<ext>``. The extensions differ per
product: ``01`` has BMP images and PNG masks, ``02`` PNG images and masks, ``03`` BMP images and
masks; a mask is the image's stem with ``.png`` or ``.bmp``.
"""

from __future__ import annotations

from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.mvtec import read_mvtec_layout

LAYOUT = (
    "<root>/{01,02,03}/test/{ok,ko}/*.{bmp,png} and <root>/<category>/ground_truth/ko/*.png|bmp"
)


class BTAD(EvalDataset):
    """BTAD test split.

    Args:
        root: folder holding ``01``, ``02``, ``03`` (``BTech_Dataset_transformed``).
        categories: categories to use (e.g. ``["01", "03"]``); all found when None.
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel.

    Raises:
        FileNotFoundError: the root is not in the BTAD layout, a category is absent, or a
            defective image has no mask; the message names the expected layout or the file.
    """

    def __init__(
        self,
        root: str,
        categories: list[str] | None = None,
        name: str = "btad",
        mask_threshold: float | None = None,
    ) -> None:
        super().__init__(root, name, mask_threshold=mask_threshold)
        self.records = read_mvtec_layout(
            self.root,
            categories,
            name,
            LAYOUT,
            normal_dir="ok",
            mask_names=("{stem}.png", "{stem}.bmp"),
        )
