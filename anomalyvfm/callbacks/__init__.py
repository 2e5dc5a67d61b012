"""Callbacks: result files and tables, worst/best case grids, and the training-data preview."""

from anomalyvfm.callbacks.batch_size import EffectiveBatchSize
from anomalyvfm.callbacks.grid import WorstBestGrid
from anomalyvfm.callbacks.preview import TrainingPreview
from anomalyvfm.callbacks.results import ResultsWriter
from anomalyvfm.callbacks.wandb_summary import WandbSummary

__all__ = [
    "EffectiveBatchSize",
    "ResultsWriter",
    "TrainingPreview",
    "WandbSummary",
    "WorstBestGrid",
]
