"""Tiny Br35H fixture in the Kaggle layout."""
