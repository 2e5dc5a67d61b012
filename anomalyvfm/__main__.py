"""``python -m anomalyvfm`` runs the command line."""

from anomalyvfm.cli import console

raise SystemExit(console())
