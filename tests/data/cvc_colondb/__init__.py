"""Tiny CVC-ColonDB fixture in the distributed images/masks layout."""
