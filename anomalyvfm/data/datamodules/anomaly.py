"""Training on synthetic anomalies, zero-shot evaluation on benchmark datasets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal, get_args

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from anomalyvfm.batch import Sample
from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.ondisk import OnDiskAnomalyDataset
from anomalyvfm.data.datasets.synthetic import (
    AugmentedDataset,
    EpochSampler,
    MixedAnomalyDataset,
    OnlineAnomalyDataset,
)
from anomalyvfm.data.evaluation import ShardedEvalSampler, collate_eval, distributed_world
from anomalyvfm.data.transforms import Resize
from data_synthesis.augment import PipelineSpec, build_pipeline
from data_synthesis.base import AnomalyGeneratorBase
from data_synthesis.io import MaskResize
from data_synthesis.layout import CheckMode

EvalMaskSize = int | Literal["input", "original"] | None


def auto_workers(local_ranks: int = 1) -> int:
    """Worker processes per rank: usable cores / ranks on this node - 1 (at least 0)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity API
        cores = os.cpu_count() or 1
    return max(cores // max(local_ranks, 1) - 1, 0)


class AnomalyDataModule(pl.LightningDataModule):
    """Synthetic training data plus a list of evaluation datasets.

    Training sources: online anomalies on ``normal_dir`` (with ``generators``), and each folder
    of ``synthetic_dirs`` (an on-disk dataset in the reference layout ``train/ok``,
    ``train/bad``, ``ground_truth/bad``). Several sources are mixed by ``source_weights``.
    Training indices never repeat across epochs (:class:`EpochSampler`) and every sample is a
    pure function of (seed, index), so no two workers, ranks or epochs draw the same sample.
    Under DDP every rank gets a disjoint share of each epoch. Checkpoints record the data
    position (:meth:`state_dict`), so a resumed run continues the sample order exactly
    (same world size, ``batch_size`` and ``seed`` required).

    Args:
        normal_dir: folder of normal images for online anomaly synthesis.
        generators: online anomaly generators (``class_path`` entries in YAML).
        generator_weights: relative frequency of each generator.
        synthetic_dirs: roots of on-disk synthetic datasets in the reference layout.
        source_weights: relative frequency of each source, in the order online source (when
            ``normal_dir`` is set) then ``synthetic_dirs``; uniform when None.
        check_files: how thoroughly training files are checked at setup: "header" (structure,
            fast), "decode" (full decode, slow) or "off"; unreadable files are skipped and
            reported in a warning.
        anomaly_ratio: fraction of anomalous training samples (0.5).
        image_size: square model input size (768 for patch-16, 672 for patch-14 backbones).
        batch_size: training micro-batch per device (reference 8, with 4 accumulation steps;
            the :class:`~anomalyvfm.callbacks.EffectiveBatchSize` callback keeps the effective
            batch fixed on any number of devices).
        eval_batch_size: evaluation batch per device.
        num_workers: DataLoader worker processes, or ``"auto"``: the CPU cores this process may
            use, shared among the node's ranks (the trainer's devices, or torchrun's
            ``LOCAL_WORLD_SIZE``), minus one for the training process itself. Online synthesis
            at 768 px costs one core about 13 images/s (``experiments/benchmarks/RESULTS.md``),
            so a fast GPU needs most of a node's cores.
        eval_mask_size: resolution of pixel metrics: a square size in pixels (the reference
            code uses 96), ``"input"`` (or None) for ``image_size``, or ``"original"`` for each
            mask's own resolution (maps are resized to every image's size). Recorded with every
            result.
        eval_resize: geometry of evaluation images and masks: ``squash`` (the method's: resize
            the whole image, no crop) or ``center_crop`` (central square, then resize).
        eval_mask_resize: how evaluation masks reach ``eval_mask_size``: ``nearest`` (each
            pixel takes the mask value at its centre) or ``bilinear_antialias`` (the reference
            code's: an antialiased bilinear shrink of the 0/1 mask, then values above
            ``eval_mask_threshold`` are anomalous; defects about one output pixel wide or
            smaller vanish). Recorded with every result.
        eval_mask_threshold: the cut of ``bilinear_antialias`` (0.5, exclusive), in (0, 1).
        val_datasets: evaluated during fit (often empty: the recipe keeps the last checkpoint).
        test_datasets: evaluated by ``test``; also used by ``predict``.
        train_length: virtual epoch length of the online set and of a mix (a single on-disk
            dataset's epoch is its number of images).
        seed: seed of the synthetic data.
        augment: training-time augmentation of every training (image, mask) pair, after the
            anomaly is made: an albumentations pipeline in ``A.to_dict`` format (see
            :mod:`data_synthesis.augment`), seeded per sample; geometric transforms move the
            mask with the image. None (the default, as in the reference): no augmentation.

    Every option is checked here. The evaluation datasets' files are checked when the run starts
    (:meth:`setup`, before any model work): every image and mask exists and each mask has its
    image's size, read from the file headers. Problems raise ``ValueError`` or
    ``FileNotFoundError`` naming the option, or the dataset and the file.
    """

    def __init__(
        self,
        normal_dir: str | None = None,
        generators: Sequence[AnomalyGeneratorBase] = (),
        generator_weights: list[float] | None = None,
        synthetic_dirs: list[str] | None = None,
        source_weights: list[float] | None = None,
        check_files: CheckMode = "header",
        anomaly_ratio: float = 0.5,
        image_size: int = 768,
        batch_size: int = 8,
        eval_batch_size: int = 16,
        num_workers: int | Literal["auto"] = 4,
        eval_mask_size: EvalMaskSize = 256,
        eval_resize: Resize = "squash",
        eval_mask_resize: MaskResize = "nearest",
        eval_mask_threshold: float = 0.5,
        val_datasets: Sequence[EvalDataset] = (),
        test_datasets: Sequence[EvalDataset] = (),
        train_length: int = 100_000,
        seed: int = 0,
        augment: PipelineSpec = None,
    ) -> None:
        super().__init__()
        self.normal_dir = normal_dir
        self.generators = list(generators)
        self.generator_weights = _weights(generator_weights, "generator_weights")
        if generator_weights is not None and len(generator_weights) != len(self.generators):
            raise ValueError(
                f"data.generator_weights has {len(generator_weights)} entries for "
                f"{len(self.generators)} generators; give one weight per generator"
            )
        self.synthetic_dirs = list(synthetic_dirs or [])
        self.source_weights = _weights(source_weights, "source_weights")
        self.check_files: CheckMode = _choice(check_files, CheckMode, "check_files")
        if isinstance(anomaly_ratio, bool) or not (
            isinstance(anomaly_ratio, (int, float)) and 0.0 <= anomaly_ratio <= 1.0
        ):
            raise ValueError(f"data.anomaly_ratio must be in [0, 1]; got {anomaly_ratio!r}")
        self.anomaly_ratio = anomaly_ratio
        self.image_size = _positive(image_size, "image_size")
        self.batch_size = _positive(batch_size, "batch_size")
        self.eval_batch_size = _positive(eval_batch_size, "eval_batch_size")
        if num_workers != "auto" and (not _is_int(num_workers) or num_workers < 0):
            raise ValueError(f"data.num_workers must be >= 0 or 'auto'; got {num_workers!r}")
        self.num_workers = num_workers
        if not (
            eval_mask_size in (None, "input", "original")
            or (_is_int(eval_mask_size) and eval_mask_size > 0)  # type: ignore[operator]
        ):
            raise ValueError(
                "data.eval_mask_size must be a positive size, 'input' or 'original'; "
                f"got {eval_mask_size!r}"
            )
        self.eval_mask_size = eval_mask_size
        self.eval_resize: Resize = _choice(eval_resize, Resize, "eval_resize")
        self.eval_mask_resize: MaskResize = _choice(
            eval_mask_resize, MaskResize, "eval_mask_resize"
        )
        if isinstance(eval_mask_threshold, bool) or not (
            isinstance(eval_mask_threshold, (int, float)) and 0.0 < eval_mask_threshold < 1.0
        ):
            raise ValueError(
                f"data.eval_mask_threshold must be in (0, 1); got {eval_mask_threshold!r}"
            )
        self.eval_mask_threshold = float(eval_mask_threshold)
        self.train_length = _positive(train_length, "train_length")
        self.val_datasets = _unique_names(val_datasets, "val_datasets")
        self.test_datasets = _unique_names(test_datasets, "test_datasets")
        self.seed = seed
        build_pipeline(augment, "data.augment")  # a bad pipeline fails here, not in a worker
        self.augment = augment
        for ds in (*self.val_datasets, *self.test_datasets):
            ds.image_size = image_size
            ds.mask_size = "original" if eval_mask_size == "original" else self.eval_resolution
            ds.resize = eval_resize
            ds.mask_resize = self.eval_mask_resize
            ds.mask_resize_threshold = self.eval_mask_threshold
        self.train_dataset: Dataset[Sample] | None = None
        self.train_sampler: EpochSampler | None = None
        self._resume: dict[str, Any] | None = None
        self._checked: set[int] = set()

    def setup(self, stage: str) -> None:
        # The evaluation files first: a bad mask fails in a second, not after training.
        self.check_eval_files(stage)
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = self.build_train_dataset()

    def check_eval_files(self, stage: str) -> None:
        """Checks the files of every evaluation dataset of ``stage`` once (from their headers).

        Raises:
            FileNotFoundError: an image or mask is missing; the message names dataset and file.
            ValueError: a dataset is empty, a file is not an image, or a mask's size differs
                from its image's; the message names the dataset and the file.
        """
        for ds in self.eval_datasets(stage):
            if id(ds) not in self._checked:
                ds.check_files()
                self._checked.add(id(ds))

    def build_train_dataset(self) -> Dataset[Sample]:
        """The training set: one source, or a :class:`MixedAnomalyDataset` of several.

        Raises:
            ValueError: If no source is configured or ``source_weights`` does not match them.
        """
        count = int(self.normal_dir is not None) + len(self.synthetic_dirs)
        if not count:
            raise ValueError("data.normal_dir and/or data.synthetic_dirs must be set for training")
        if self.source_weights is not None and len(self.source_weights) != count:
            raise ValueError(
                f"data.source_weights has {len(self.source_weights)} entries for {count} "
                "sources (the online source from data.normal_dir first, if set, then each of "
                "data.synthetic_dirs)"
            )
        sources: list[Dataset[Sample]] = []
        if self.normal_dir is not None:
            sources.append(
                OnlineAnomalyDataset(
                    self.normal_dir,
                    self.generators,
                    self.generator_weights,
                    self.anomaly_ratio,
                    self.image_size,
                    self.train_length,
                    self.seed,
                    self.check_files,
                )
            )
        for root in self.synthetic_dirs:
            sources.append(OnDiskAnomalyDataset(root, self.image_size, self.check_files))
        if len(sources) == 1:
            dataset = sources[0]
        else:
            dataset = MixedAnomalyDataset(
                sources, self.source_weights, self.train_length, self.seed
            )
        if build_pipeline(self.augment, "data.augment") is None:
            return dataset
        return AugmentedDataset(dataset, self.augment, self.seed)

    @property
    def eval_resolution(self) -> int | Literal["original"]:
        """The resolution of pixel metrics: a square size, or ``"original"``."""
        if self.eval_mask_size == "original":
            return "original"
        if self.eval_mask_size in (None, "input"):
            return self.image_size
        return int(self.eval_mask_size)

    def eval_datasets(self, stage: str) -> list[EvalDataset]:
        """Datasets evaluated in ``stage`` (validate uses val, test and predict use test)."""
        return self.val_datasets if stage in ("fit", "validate") else self.test_datasets

    @property
    def workers(self) -> int:
        """``num_workers`` resolved: ``auto`` counts this node's ranks (the trainer's devices,
        or torchrun's ``LOCAL_WORLD_SIZE``)."""
        if self.num_workers != "auto":
            return int(self.num_workers)
        trainer = self.trainer
        ranks = trainer.num_devices if trainer is not None else None
        return auto_workers(ranks or int(os.environ.get("LOCAL_WORLD_SIZE", "1")))

    def _loader(
        self, ds: Dataset, batch_size: int, shuffle: bool, sampler: Sampler[int] | None = None
    ) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle if sampler is None else None,
            sampler=sampler,
            num_workers=self.workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.workers > 0,
            drop_last=shuffle,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_dataset is not None
        # Each rank takes its own disjoint share of every epoch (see EpochSampler).
        world, rank = distributed_world() or (1, 0)
        sampler = EpochSampler(len(self.train_dataset), self.seed, world, rank)  # type: ignore[arg-type]
        if self._resume is not None:
            self._check_resume(world)
            sampler.resume(int(self._resume["epoch"]), int(self._resume["position"]))
            self._resume = None
        self.train_sampler = sampler
        return self._loader(self.train_dataset, self.batch_size, shuffle=True, sampler=sampler)

    # -- resuming: the training data continues where the checkpoint left it -------------------

    def state_dict(self) -> dict[str, Any]:
        """Position of the training data: the sampler's epoch and this rank's consumed samples.

        Lightning stores this in every checkpoint and, on resume, hands it back to
        :meth:`load_state_dict` before it asks for the training loader. The position is taken
        from the fit loop's count of processed batches, not from the loader (which runs ahead
        by its prefetch).
        """
        trainer = self.trainer
        if self.train_sampler is None or trainer is None:
            return {}
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed  # type: ignore[attr-defined]
        return {
            "epoch": self.train_sampler.epoch,
            "position": batches * self.batch_size,
            "world_size": self.train_sampler.num_replicas,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Makes the next training loader continue from a checkpoint's data position."""
        self._resume = dict(state_dict) if state_dict else None

    def _check_resume(self, world: int) -> None:
        assert self._resume is not None
        saved = (self._resume["world_size"], self._resume["batch_size"], self._resume["seed"])
        if saved != (world, self.batch_size, self.seed):
            raise ValueError(
                "the checkpoint's training data position was written with world size "
                f"{saved[0]}, data.batch_size {saved[1]} and data.seed {saved[2]}; this run has "
                f"{world}, {self.batch_size} and {self.seed}. Resume with the same device and "
                "node count and data options, or start a new run from the checkpoint's weights."
            )

    def _eval_loader(self, ds: EvalDataset) -> DataLoader:
        # Under DDP each rank gets a disjoint, unpadded share, so no sample is counted twice.
        world = distributed_world()
        sampler = None if world is None else ShardedEvalSampler(ds, *world)
        return DataLoader(
            ds,
            batch_size=self.eval_batch_size,
            sampler=sampler,
            num_workers=self.workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.workers > 0,
            collate_fn=collate_eval,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(d) for d in self.val_datasets]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(d) for d in self.test_datasets]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: int, option: str) -> int:
    """``value`` when it is an integer above 0; else a ValueError naming ``data.<option>``."""
    if not _is_int(value) or value <= 0:
        raise ValueError(f"data.{option} must be a positive integer; got {value!r}")
    return value


def _choice(value: Any, allowed: Any, option: str) -> Any:
    """``value`` when it is one of the literal type ``allowed``; else a ValueError."""
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"data.{option} must be one of {list(choices)}; got {value!r}")
    return value


def _weights(weights: Sequence[float] | None, option: str) -> list[float] | None:
    """``weights`` when each is a non-negative number and their sum is positive (or None)."""
    if weights is None:
        return None
    values = list(weights)
    numbers = all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in values)
    if not values or not numbers or any(w < 0 for w in values) or sum(values) <= 0:
        raise ValueError(
            f"data.{option} must be non-negative numbers, not all zero; got {values!r}"
        )
    return [float(w) for w in values]


def _unique_names(datasets: Sequence[EvalDataset], option: str) -> list[EvalDataset]:
    """``datasets`` as a list; two with one name would share one evaluator and one set of
    results, so a clash is refused naming both."""
    seen: dict[str, EvalDataset] = {}
    for ds in datasets:
        other = seen.setdefault(ds.name, ds)
        if other is not ds:
            raise ValueError(
                f"data.{option}: two datasets are named {ds.name!r} ({type(other).__name__} at "
                f"{other.root} and {type(ds).__name__} at {ds.root}); give each its own `name`"
            )
    return list(datasets)
