"""Datasets and datamodules.

Adding an evaluation dataset: write ``anomalyvfm/data/datasets/<name>.py`` (a subclass of
:class:`EvalDataset` that fills ``self.records`` from the layout as distributed, with a wrong-root
error naming that layout), a fixture writer ``tests/data/<name>/data.py``, tests, and export the
class here so configs can name it by its short name.
"""

from anomalyvfm.data.datamodules.anomaly import AnomalyDataModule
from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.br35h import Br35H
from anomalyvfm.data.datasets.brainmri import BrainMRI
from anomalyvfm.data.datasets.btad import BTAD
from anomalyvfm.data.datasets.cvc_clinicdb import CVCClinicDB
from anomalyvfm.data.datasets.cvc_colondb import CVCColonDB
from anomalyvfm.data.datasets.dagm import DAGM
from anomalyvfm.data.datasets.dtd_synthetic import DTDSynthetic
from anomalyvfm.data.datasets.endo import Endo
from anomalyvfm.data.datasets.folder import FolderDataset
from anomalyvfm.data.datasets.headct import HeadCT
from anomalyvfm.data.datasets.isic import ISIC
from anomalyvfm.data.datasets.ksdd import KSDD
from anomalyvfm.data.datasets.ksdd2 import KSDD2
from anomalyvfm.data.datasets.kvasir import Kvasir
from anomalyvfm.data.datasets.mtd import MTD
from anomalyvfm.data.datasets.mvtec import MPDD, MVTecAD
from anomalyvfm.data.datasets.ondisk import OnDiskAnomalyDataset
from anomalyvfm.data.datasets.realiad import RealIAD
from anomalyvfm.data.datasets.synthetic import (
    EpochSampler,
    MixedAnomalyDataset,
    OnlineAnomalyDataset,
)
from anomalyvfm.data.datasets.tn3k import TN3K
from anomalyvfm.data.datasets.visa import VisA

__all__ = [
    "BTAD",
    "DAGM",
    "ISIC",
    "KSDD",
    "KSDD2",
    "MPDD",
    "MTD",
    "TN3K",
    "AnomalyDataModule",
    "BrainMRI",
    "Br35H",
    "CVCClinicDB",
    "CVCColonDB",
    "DTDSynthetic",
    "Endo",
    "EpochSampler",
    "EvalDataset",
    "FolderDataset",
    "HeadCT",
    "Kvasir",
    "MVTecAD",
    "MixedAnomalyDataset",
    "OnDiskAnomalyDataset",
    "OnlineAnomalyDataset",
    "RealIAD",
    "VisA",
]
