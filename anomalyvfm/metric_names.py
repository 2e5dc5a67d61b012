"""The one registry of evaluation metrics: names, table headers, level, in one order.

A module without imports, shared by the evaluator, the result writers and the report command
(which must start without loading torch or Lightning). The order is the published tables' order
(docs/benchmarks.md); results, CSV columns, tables and logs all follow it. The torchmetrics class
behind each name is in :data:`anomalyvfm.metrics.METRIC_CLASSES`.
"""

# (name, table header, level, computed by default)
METRICS = (
    ("image_AUROC", "I-AUROC", "image", True),
    ("image_F1max", "I-F1max", "image", True),
    ("image_AP", "I-AP", "image", True),
    ("pixel_AUROC", "P-AUROC", "pixel", True),
    ("pixel_F1max", "P-F1max", "pixel", True),
    ("pixel_AP", "P-AP", "pixel", True),
    ("pixel_AUPRO", "AUPRO", "pixel", True),
    ("pixel_AUPIMO", "AUPIMO", "pixel", False),
)
ALL_METRIC_NAMES = tuple(name for name, *_ in METRICS)
METRIC_NAMES = tuple(name for name, _, _, default in METRICS if default)
OPTIONAL_METRICS = tuple(name for name, _, _, default in METRICS if not default)
IMAGE_METRICS = tuple(name for name, _, level, _ in METRICS if level == "image")
PIXEL_METRICS = tuple(name for name, _, level, _ in METRICS if level == "pixel")
# Headers of the default metrics (the published tables' columns); AUPIMO is opt-in.
HEADERS = {name: header for name, header, _, default in METRICS if default}
