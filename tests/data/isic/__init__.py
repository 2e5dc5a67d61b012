"""Tiny ISIC 2016 (part 1, lesion segmentation) fixture in the challenge layout."""
