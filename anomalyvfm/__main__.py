"""``python -m anomalyvfm`` runs the command line."""

from anomalyvfm.cli import main

main()
