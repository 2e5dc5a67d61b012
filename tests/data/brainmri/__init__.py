"""Tiny BrainMRI fixture in the Kaggle brain tumour layout."""
