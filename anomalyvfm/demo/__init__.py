"""Self-contained demo: offline data builder for a tiny CPU training run."""
