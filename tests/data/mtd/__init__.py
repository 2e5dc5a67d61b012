"""Tiny Magnetic Tile Defects (MTD) fixture in the dataset's native layout."""
