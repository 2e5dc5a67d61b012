"""Synthetic training sets: online anomalies on normal images, and weighted mixes of sources.

Every training set here is indexed by any non-negative integer, and sample ``i`` is a pure
function of (seed, i). :class:`EpochSampler` gives epoch ``e`` the indices
``e * length .. (e + 1) * length - 1``, split without overlap between ranks, so no index, hence no
random draw, repeats across epochs, workers or ranks; it can resume mid-epoch.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from anomalyvfm.batch import Sample
from anomalyvfm.data.transforms import image_to_tensor, mask_to_tensor
from data_synthesis.augment import PipelineSpec, apply_pipeline, build_pipeline
from data_synthesis.base import AnomalyGenerator
from data_synthesis.io import list_images, load_image
from data_synthesis.layout import CheckMode, readable_images

# A (normal, anomalous, mask) triple of float32 arrays, as drawn by the preview contact sheet.
Triple = tuple[np.ndarray, np.ndarray, np.ndarray]
# Distinct seed-sequence tags so that the mix's choice and the sources' draws are independent.
_MIX_TAG, _PREVIEW_TAG, _AUGMENT_TAG = 1, 2, 3
# Redraws after an unreadable file, or an anomaly that changed no pixel, before giving up.
_RETRIES = 8


def _weights(weights: Sequence[float] | None, n: int, what: str) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{what} {list(w)} must be {n} non-negative numbers with a positive sum")
    return w / w.sum()


class OnlineAnomalyDataset(Dataset[Sample]):
    """Normal images, and anomalous ones made on the fly by the given generators.

    Sample ``i`` draws everything from ``numpy.random.default_rng([seed, i])``: the same index
    always gives the same sample, whatever the worker or rank that loads it.

    Files are checked when the dataset is built: unreadable ones are skipped with a warning
    giving their count and first names (``skipped``). A file that still fails when it is read
    (e.g. a truncated JPEG, which ``check="header"`` cannot see) is skipped too: a warning names
    it, ``read_failures`` counts it, and the sample redraws its file from the same generator.

    Args:
        root: folder of normal images (searched recursively).
        generators: anomaly generators (e.g. noise textures, cut-paste).
        weights: relative probability of each generator; uniform when None.
        anomaly_ratio: probability that a sample is anomalous (the reference uses 0.5).
        image_size: square size images are resized to before synthesis.
        length: virtual epoch length (training is bounded by ``max_steps``).
        seed: base seed.
        check: how thoroughly files are checked up front ("header", "decode" or "off").
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
        check: CheckMode = "header",
    ) -> None:
        self.files, self.skipped = readable_images(list_images(root), check, root)
        if not generators:
            raise ValueError("OnlineAnomalyDataset needs at least one anomaly generator")
        self.generators = list(generators)
        self.probabilities = _weights(weights, len(self.generators), "generator weights")
        if not 0.0 <= anomaly_ratio <= 1.0:
            raise ValueError(f"anomaly_ratio must be in [0, 1], got {anomaly_ratio}")
        self.anomaly_ratio = anomaly_ratio
        self.image_size = image_size
        self.length = length
        self.seed = seed
        self.read_failures: set[Path] = set()

    def __len__(self) -> int:
        return self.length

    def _normal(self, rng: np.random.Generator) -> tuple[np.ndarray, Path]:
        """A random readable normal image, resized; unreadable draws are skipped and counted."""
        for _ in range(_RETRIES):
            path = self.files[int(rng.integers(len(self.files)))]
            try:
                return load_image(path, (self.image_size,) * 2), path
            except (OSError, ValueError) as err:
                if path not in self.read_failures:
                    self.read_failures.add(path)
                    warnings.warn(f"skipping unreadable training image: {err}", stacklevel=2)
        raise ValueError(f"{_RETRIES} unreadable images in a row in {self.files[0].parent}")

    def _anomaly(
        self, image: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        gen = self.generators[int(rng.choice(len(self.generators), p=self.probabilities))]
        anomaly = gen(image, rng)
        return anomaly.image, anomaly.mask

    def __getitem__(self, index: int) -> Sample:
        rng = np.random.default_rng([self.seed, index])
        image, path = self._normal(rng)
        mask = np.zeros(image.shape[:2], np.float32)
        label = 0
        if rng.random() < self.anomaly_ratio:
            image, mask = self._anomaly(image, rng)
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
            index=torch.tensor(index, dtype=torch.long),
        )

    def preview_triple(self, index: int) -> Triple:
        """(normal, anomalous, mask) for the preview sheet: always anomalous, seeded by index."""
        rng = np.random.default_rng([self.seed, index, _PREVIEW_TAG])
        normal, _ = self._normal(rng)
        for _ in range(_RETRIES):
            anomalous, mask = self._anomaly(normal, rng)
            if mask.any():
                break
        return normal, anomalous, mask


class MixedAnomalyDataset(Dataset[Sample]):
    """A weighted mix of training sets, each sample drawn from one source.

    Sample ``i`` picks its source with ``numpy.random.default_rng([seed, i, 1])``. An
    :class:`OnlineAnomalyDataset` source then gets index ``i`` itself (its draws are seeded by
    its own seed, so they are independent of the choice); a finite source (an on-disk dataset)
    gets a uniformly drawn item.

    Args:
        sources: training sets.
        weights: relative frequency of each source; uniform when None.
        length: virtual epoch length.
        seed: seed of the source choice.
    """

    def __init__(
        self,
        sources: Sequence[Dataset[Sample]],
        weights: Sequence[float] | None = None,
        length: int = 100_000,
        seed: int = 0,
    ) -> None:
        if not sources:
            raise ValueError("MixedAnomalyDataset needs at least one source")
        self.sources = list(sources)
        self.probabilities = _weights(weights, len(self.sources), "source weights")
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def _locate(self, index: int, tag: int = _MIX_TAG) -> tuple[Dataset[Sample], int]:
        rng = np.random.default_rng([self.seed, index, tag])
        source = self.sources[int(rng.choice(len(self.sources), p=self.probabilities))]
        if isinstance(source, OnlineAnomalyDataset):
            return source, index
        return source, int(rng.integers(len(source)))  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        source, item = self._locate(index)
        # Every sample of a mix carries the mix's index, so batches of mixed sources collate.
        return {**source[item], "index": torch.tensor(index, dtype=torch.long)}  # type: ignore[typeddict-item]

    def preview_triple(self, index: int) -> Triple:
        """(normal, anomalous, mask) from the source this index picks; see the sources."""
        source, item = self._locate(index, _PREVIEW_TAG)
        return source.preview_triple(item)  # type: ignore[attr-defined]


class AugmentedDataset(Dataset[Sample]):
    """A training set whose (image, mask) pairs go through an albumentations pipeline.

    Sample ``i`` is ``dataset[i]`` with the pipeline seeded from
    ``numpy.random.default_rng([seed, i, 3])``, so it stays a pure function of (seed, i).
    Geometric transforms move the mask with the image (nearest-neighbour); photometric ones
    leave it as is. A sample whose mask leaves the frame (a crop, a shift) becomes normal. The
    pipeline must keep the image size (end a cropping pipeline with a ``Resize``).

    Args:
        dataset: the training set (online, on-disk or a mix).
        augment: the pipeline, in ``A.to_dict`` format (see :mod:`data_synthesis.augment`).
        seed: seed of the pipeline's draws.
        option: how errors name the option that holds ``augment``.
    """

    def __init__(
        self,
        dataset: Dataset[Sample],
        augment: PipelineSpec,
        seed: int = 0,
        option: str = "data.augment",
    ) -> None:
        self.dataset = dataset
        self.pipeline = build_pipeline(augment, option)
        self.seed = seed
        self.option = option

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        rng = np.random.default_rng([self.seed, index, _AUGMENT_TAG])
        image = sample["image"].permute(1, 2, 0).numpy()
        mask = sample["mask"].numpy()
        new_image, new_mask, _ = apply_pipeline(self.pipeline, rng, image, mask)
        assert new_mask is not None
        if new_image.shape != image.shape or new_mask.shape != mask.shape:
            raise ValueError(
                f"{self.option} changed the training image size from {image.shape[:2]} to "
                f"{new_image.shape[:2]}; end the pipeline with a Resize to the input size"
            )
        inside = new_mask > 0.5
        label = sample["label"]
        if int(label) == 1:
            label = torch.tensor(int(inside.any()), dtype=torch.long)
        return {
            **sample,
            "image": torch.from_numpy(np.ascontiguousarray(new_image.transpose(2, 0, 1))),
            "mask": torch.from_numpy(inside.astype(np.float32)),
            "label": label,
        }

    def preview_triple(self, index: int) -> Triple:
        """The wrapped set's (normal, anomalous, mask) triple, not augmented."""
        return self.dataset.preview_triple(index)  # type: ignore[attr-defined]


class EpochSampler(DistributedSampler):
    """Shuffled indices that never repeat across epochs or ranks, resumable mid-epoch.

    Epoch ``e`` permutes (seeded by (seed, e)) the indices ``e * length .. (e + 1) * length - 1``;
    rank ``r`` of ``num_replicas`` takes every ``num_replicas``-th of them from position ``r``,
    cut to ``length // num_replicas`` so that all ranks run the same number of batches. Nothing
    is padded (torch's :class:`DistributedSampler` pads by repeating indices, which would give two
    ranks the same sample); at most ``num_replicas - 1`` indices per epoch go unused.

    It subclasses :class:`DistributedSampler` only so that Lightning keeps it instead of wrapping
    it; it never reads the process group itself (the datamodule passes world size and rank).

    Args:
        length: indices per epoch (all ranks together).
        seed: seed of the permutation.
        num_replicas: number of ranks (world size).
        rank: this process's rank.
    """

    def __init__(self, length: int, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        if length < num_replicas or num_replicas < 1:
            raise ValueError(
                f"EpochSampler needs at least one index per rank: length {length}, "
                f"{num_replicas} ranks (raise data.train_length)"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"EpochSampler rank {rank} is outside 0..{num_replicas - 1}")
        # DistributedSampler.__init__ is skipped on purpose: it would query the process group.
        self.length = length
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.shuffle, self.drop_last = True, True
        self.num_samples = length // num_replicas
        self.total_size = self.num_samples * num_replicas
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose indices the next iteration yields (from its start, unless
        :meth:`resume` set a position in this very epoch)."""
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def resume(self, epoch: int, position: int) -> None:
        """Continue ``epoch`` after this rank's first ``position`` indices (next iteration only).

        A position at or past the end of the epoch continues with the next epoch.
        """
        epoch += position // self.num_samples
        self.epoch, self.start = epoch, position % self.num_samples

    def indices(self, epoch: int) -> list[int]:
        """This rank's indices of ``epoch``, in order, from the epoch's start."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.length)
        mine = order[self.rank : self.total_size : self.num_replicas]
        return (epoch * self.length + mine).tolist()

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.indices(self.epoch)[start:])
