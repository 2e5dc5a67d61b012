"""``python -m anomalyvfm.report``."""

import sys

from anomalyvfm.report import main

sys.exit(main())
