"""Datasets and datamodules."""

from anomalyvfm.data.datamodules.anomaly import AnomalyDataModule
from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.mvtec import MPDD, MVTecAD
from anomalyvfm.data.datasets.synthetic import OnlineAnomalyDataset

__all__ = ["AnomalyDataModule", "EvalDataset", "MPDD", "MVTecAD", "OnlineAnomalyDataset"]
