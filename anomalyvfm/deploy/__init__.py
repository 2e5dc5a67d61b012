"""Deployment of trained detectors: exact export to ONNX and torch.export files."""
