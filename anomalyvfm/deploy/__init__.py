"""Putting a trained model to work: :class:`Detector` (score any images, calibrate thresholds
on normal images, export), the ``predict`` / ``calibrate`` / ``export`` commands
(:mod:`anomalyvfm.deploy.cli`) and exact export to ONNX and torch.export files
(:mod:`anomalyvfm.deploy.export`)."""

from anomalyvfm.deploy.calibration import Calibration
from anomalyvfm.deploy.detector import Detector, Prediction

__all__ = ["Calibration", "Detector", "Prediction"]
