"""Names of the evaluation metrics and their column headers in result tables.

A module without imports, shared by the evaluator, the result writers and the report command
(which must start without loading torch or Lightning).
"""

IMAGE_METRICS = ("image_AUROC", "image_AP", "image_F1max")
PIXEL_METRICS = ("pixel_AUROC", "pixel_AP", "pixel_F1max", "pixel_AUPRO")
METRIC_NAMES = (*IMAGE_METRICS, *PIXEL_METRICS)
OPTIONAL_METRICS = ("pixel_AUPIMO",)
ALL_METRIC_NAMES = (*METRIC_NAMES, *OPTIONAL_METRICS)

# Column order and headers of the published tables (docs/benchmarks.md); AUPIMO (opt-in) is
# appended when computed.
HEADERS = {
    "image_AUROC": "I-AUROC",
    "image_F1max": "I-F1max",
    "image_AP": "I-AP",
    "pixel_AUROC": "P-AUROC",
    "pixel_F1max": "P-F1max",
    "pixel_AP": "P-AP",
    "pixel_AUPRO": "AUPRO",
}
