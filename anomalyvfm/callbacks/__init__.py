"""Callbacks: result files and tables (images and W&B media come with the evaluation suite)."""

from anomalyvfm.callbacks.results import ResultsWriter

__all__ = ["ResultsWriter"]
