"""DTD-Synthetic (Aota et al., WACV 2023): synthetic defects on 12 DTD textures.

Distributed in the MVTec AD layout: ``<root>/<Texture_NNN>/test/{good,bad}/<NNN>.png`` with
masks ``<root>/<Texture_NNN>/ground_truth/bad/<NNN>_mask.png`` (0/255). The categories are
Blotchy_099, Fibrous_183, Marbled_078, Matted_069, Mesh_114, Perforated_037, Stratified_154,
Woven_001, Woven_068, Woven_104, Woven_125 and Woven_127. Some redistributed copies name the
mask like its image (``<NNN>.png``); that name is accepted when ``_mask.png`` is absent.
"""

from __future__ import annotations

from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.mvtec import read_mvtec_layout

LAYOUT = (
    "<root>/<Texture_NNN>/test/{good,bad}/*.png and "
    "<root>/<Texture_NNN>/ground_truth/bad/<stem>_mask.png"
)


class DTDSynthetic(EvalDataset):
    """DTD-Synthetic test split.

    Args:
        root: folder holding one sub-folder per texture.
        categories: textures to use (e.g. ``["Woven_001"]``); all found when None.
        name: dataset name in metric names.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel.

    Raises:
        FileNotFoundError: the root is not in the layout, a category is absent, or a defective
            image has no mask.
    """

    def __init__(
        self,
        root: str,
        categories: list[str] | None = None,
        name: str = "dtd_synthetic",
        mask_threshold: float | None = None,
    ) -> None:
        super().__init__(root, name, mask_threshold=mask_threshold)
        self.records = read_mvtec_layout(
            self.root, categories, name, LAYOUT, mask_names=("{stem}_mask.png", "{stem}.png")
        )
