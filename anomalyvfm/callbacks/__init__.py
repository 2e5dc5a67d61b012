"""Callbacks: result files and tables, worst/best case grids, and the training-data preview."""

from anomalyvfm.callbacks.grid import WorstBestGrid
from anomalyvfm.callbacks.preview import TrainingPreview
from anomalyvfm.callbacks.results import ResultsWriter

__all__ = ["ResultsWriter", "TrainingPreview", "WorstBestGrid"]
