"""Putting a trained model to work: :class:`Detector` (score any images, calibrate thresholds
on normal images) and the ``predict`` / ``calibrate`` commands (:mod:`anomalyvfm.deploy.cli`)."""

from anomalyvfm.deploy.calibration import Calibration
from anomalyvfm.deploy.detector import Detector, Prediction

__all__ = ["Calibration", "Detector", "Prediction"]
