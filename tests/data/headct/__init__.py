"""Tiny HeadCT fixture in the Kaggle "Head CT - hemorrhage" layout."""
