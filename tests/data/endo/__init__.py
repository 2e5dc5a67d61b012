"""Tiny EndoTect 2020 segmentation test-set fixture."""
