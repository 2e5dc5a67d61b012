"""Seeded, pure anomaly generators for synthesising training data (numpy + Pillow only).

Every random choice comes from the ``numpy.random.Generator`` passed to a generator's
``__call__``: the same seed and inputs give byte-identical images, masks and params.
"""

from data_synthesis.base import Anomaly, AnomalyGenerator, AnomalyGeneratorBase
from data_synthesis.cutpaste import CutPasteGenerator
from data_synthesis.filter import FeatureDistanceFilter, FilterResult
from data_synthesis.foreground import SegmentationForeground, compute_foreground, foreground_mask
from data_synthesis.inpaint import DiffusionInpaintGenerator
from data_synthesis.io import list_images, load_image, read_mask
from data_synthesis.noise import NoiseTextureGenerator
from data_synthesis.normals import NormalImageGenerator
from data_synthesis.perlin import perlin_mask
from data_synthesis.vocab import Vocabulary, load_vocabulary

__all__ = [
    "Anomaly",
    "AnomalyGenerator",
    "AnomalyGeneratorBase",
    "CutPasteGenerator",
    "DiffusionInpaintGenerator",
    "FeatureDistanceFilter",
    "FilterResult",
    "NoiseTextureGenerator",
    "NormalImageGenerator",
    "SegmentationForeground",
    "Vocabulary",
    "compute_foreground",
    "foreground_mask",
    "list_images",
    "load_image",
    "load_vocabulary",
    "perlin_mask",
    "read_mask",
]
