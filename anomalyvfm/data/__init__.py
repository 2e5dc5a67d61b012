"""Datasets and datamodules."""

from anomalyvfm.data.datamodules.anomaly import AnomalyDataModule
from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.mtd import MTD
from anomalyvfm.data.datasets.mvtec import MPDD, MVTecAD
from anomalyvfm.data.datasets.ondisk import OnDiskAnomalyDataset
from anomalyvfm.data.datasets.synthetic import (
    EpochSampler,
    MixedAnomalyDataset,
    OnlineAnomalyDataset,
)

__all__ = [
    "MPDD",
    "MTD",
    "AnomalyDataModule",
    "EpochSampler",
    "EvalDataset",
    "MVTecAD",
    "MixedAnomalyDataset",
    "OnDiskAnomalyDataset",
    "OnlineAnomalyDataset",
]
