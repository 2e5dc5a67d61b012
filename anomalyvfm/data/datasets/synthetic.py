"""Training set that synthesises anomalies online from a folder of normal images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from anomalyvfm.batch import Sample
from anomalyvfm.data.transforms import image_to_tensor, mask_to_tensor
from data_synthesis.base import AnomalyGenerator
from data_synthesis.io import list_images, load_image, resize_image


class OnlineAnomalyDataset(Dataset[Sample]):
    """Normal images, and anomalous ones made on the fly by the given generators.

    Sample ``i`` draws everything from ``numpy.random.default_rng([seed, i])``: the same index
    always gives the same sample, whatever the worker or rank that loads it, and different
    indices (hence different workers and ranks under a distributed sampler) give different ones.

    Args:
        root: folder of normal images (searched recursively).
        generators: anomaly generators (e.g. noise textures, cut-paste).
        weights: relative probability of each generator; uniform when None.
        anomaly_ratio: probability that a sample is anomalous (the reference uses 0.5).
        image_size: square size images are resized to before synthesis.
        length: virtual epoch length (training is bounded by ``max_steps``).
        seed: base seed.
    """

    def __init__(
        self,
        root: str,
        generators: Sequence[AnomalyGenerator],
        weights: Sequence[float] | None = None,
        anomaly_ratio: float = 0.5,
        image_size: int = 768,
        length: int = 100_000,
        seed: int = 0,
    ) -> None:
        self.files = list_images(root)
        if not generators:
            raise ValueError("OnlineAnomalyDataset needs at least one anomaly generator")
        self.generators = list(generators)
        w = np.ones(len(self.generators)) if weights is None else np.asarray(weights, float)
        if w.shape != (len(self.generators),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"generator weights {list(w)} must be {len(self.generators)} non-negative numbers "
                "with a positive sum"
            )
        self.probabilities = w / w.sum()
        if not 0.0 <= anomaly_ratio <= 1.0:
            raise ValueError(f"anomaly_ratio must be in [0, 1], got {anomaly_ratio}")
        self.anomaly_ratio = anomaly_ratio
        self.image_size = image_size
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        rng = np.random.default_rng([self.seed, index])
        path = self.files[int(rng.integers(len(self.files)))]
        image = resize_image(load_image(path), (self.image_size, self.image_size))
        mask = np.zeros(image.shape[:2], np.float32)
        label = 0
        if rng.random() < self.anomaly_ratio:
            gen = self.generators[int(rng.choice(len(self.generators), p=self.probabilities))]
            anomaly = gen(image, rng)
            image, mask = anomaly.image, anomaly.mask
            # A generator may in rare cases change no pixel; then the sample stays normal.
            label = int(mask.any())
        return Sample(
            image=image_to_tensor(image, None),
            mask=mask_to_tensor(mask, None),
            label=torch.tensor(label, dtype=torch.long),
            path=str(path),
            dataset="synthetic",
            category="train",
            has_mask=torch.tensor(True),
        )
