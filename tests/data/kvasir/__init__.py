"""Tiny Kvasir-SEG fixture in the distributed layout."""
