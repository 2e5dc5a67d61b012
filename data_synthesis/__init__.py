"""Seeded, pure anomaly generators for synthesising training data (numpy + Pillow only).

Every random choice comes from the ``numpy.random.Generator`` passed to a generator's
``__call__``: the same seed and inputs give byte-identical images, masks and params.
"""

from data_synthesis.base import Anomaly, AnomalyGenerator, AnomalyGeneratorBase
from data_synthesis.cutpaste import CutPasteGenerator
from data_synthesis.io import list_images, load_image
from data_synthesis.noise import NoiseTextureGenerator
from data_synthesis.perlin import perlin_mask

__all__ = [
    "Anomaly",
    "AnomalyGenerator",
    "AnomalyGeneratorBase",
    "CutPasteGenerator",
    "NoiseTextureGenerator",
    "list_images",
    "load_image",
    "perlin_mask",
]
