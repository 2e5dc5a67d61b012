"""``python -m anomalyvfm.report``."""

import sys

from anomalyvfm.report import console

sys.exit(console())
