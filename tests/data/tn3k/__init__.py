"""Tiny TN3K fixture in the distributed layout."""
