"""Callbacks: result files and tables, and the training-data preview."""

from anomalyvfm.callbacks.preview import TrainingPreview
from anomalyvfm.callbacks.results import ResultsWriter

__all__ = ["ResultsWriter", "TrainingPreview"]
