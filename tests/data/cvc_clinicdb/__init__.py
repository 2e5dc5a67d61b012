"""Tiny CVC-ClinicDB fixture in the official layout."""
