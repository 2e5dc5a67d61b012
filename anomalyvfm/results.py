"""What an evaluation produced, as typed objects: the protocol and the report.

The task builds one :class:`EvalProtocol` when an evaluation starts, from the datamodule's
evaluation options (an :class:`EvalSource`) and its own; after the evaluation it holds one
:class:`EvalReport` (values, means, counts, that protocol). Callbacks read the report with
:func:`report_of`; nothing else passes results around.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from anomalyvfm.metric_names import ALL_METRIC_NAMES
from anomalyvfm.metrics.evaluator import mean_over

if TYPE_CHECKING:
    from anomalyvfm.data.datasets.base import EvalDataset

Results = dict[str, dict[str, dict[str, float]]]


@runtime_checkable
class EvalSource(Protocol):
    """What the task needs from a datamodule to evaluate (``AnomalyDataModule`` is one)."""

    image_size: int
    eval_resize: str
    eval_mask_resize: str
    eval_mask_threshold: float

    @property
    def eval_resolution(self) -> int | Literal["original"]: ...

    def eval_datasets(self, stage: str) -> Sequence[EvalDataset]: ...


@dataclass(frozen=True)
class EvalProtocol:
    """How maps and masks are compared; recorded with every result.

    Attributes:
        resolution: side of the square masks the pixel metrics use, or ``"original"``.
        image_size: model input size.
        resize: ``squash`` or ``center_crop`` of evaluation images.
        mask_resize: how masks were resized: ``nearest`` or ``bilinear_antialias``.
        mask_threshold: the cut of ``bilinear_antialias`` (not recorded for ``nearest``).
        mean_filter_size: k of the k x k mean filter on anomaly maps.
        mean_filter_padding: ``replicate`` or ``zeros``.
        image_score: ``head``, ``map_max`` or ``mean``.
        metric_mode: ``exact``, ``reference_binned`` or ``threshold_loop``.
        fpr_limit: integration limit of AUPRO.
        eval_autocast: ``fp16`` when the evaluation forward ran under fp16 autocast,
            ``fp16 unavailable on <device>`` when it was asked for on another device (not
            recorded when not asked for: the trainer's precision applies).
    """

    resolution: int | str | None = None
    image_size: int | None = None
    resize: str | None = None
    mask_resize: str | None = None
    mask_threshold: float | None = None
    mean_filter_size: int | None = None
    mean_filter_padding: str | None = None
    image_score: str | None = None
    metric_mode: str | None = None
    fpr_limit: float | None = None
    eval_autocast: str | None = None

    @classmethod
    def build(
        cls, source: EvalSource, hparams: Mapping[str, Any], eval_autocast: str | None = None
    ) -> EvalProtocol:
        """The protocol of an evaluation of ``source`` by a model with ``hparams``, whose
        evaluation forward ran under ``eval_autocast`` (None: the trainer's precision)."""
        bilinear = source.eval_mask_resize == "bilinear_antialias"
        return cls(
            resolution=source.eval_resolution,
            image_size=source.image_size,
            resize=source.eval_resize,
            mask_resize=source.eval_mask_resize,
            mask_threshold=source.eval_mask_threshold if bilinear else None,
            mean_filter_size=hparams["mean_filter_size"],
            mean_filter_padding=hparams["mean_filter_padding"],
            image_score=hparams["image_score"],
            metric_mode=hparams["metric_mode"],
            fpr_limit=hparams["fpr_limit"],
            eval_autocast=eval_autocast,
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvalProtocol:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown protocol fields {sorted(unknown)}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, in their declared order (the JSON and table columns)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class EvalReport:
    """Everything one evaluation produced.

    Attributes:
        results: ``{dataset: {category: {metric: value}}}``; NaN or absent = undefined.
        dataset_means: ``{dataset: {metric: mean over categories}}``.
        overall_mean: ``{metric: mean over datasets}``.
        counts: ``{dataset: {category: number of images}}``.
        protocol: the evaluation protocol (a dict is accepted and converted).
        empty_masks: ``{dataset: defective images whose mask is empty}`` (pixel-level sets).
        incomplete: for a run stopped by an error: ``error`` and ``datasets_without_results``.
    """

    results: Results
    dataset_means: dict[str, dict[str, float]] = field(default_factory=dict)
    overall_mean: dict[str, float] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    protocol: EvalProtocol = field(default_factory=EvalProtocol)
    empty_masks: dict[str, int] = field(default_factory=dict)
    incomplete: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.protocol, Mapping):
            self.protocol = EvalProtocol.from_dict(self.protocol)
        # Means over categories, then datasets (NaN ignored), where not given.
        self.dataset_means = {
            name: self.dataset_means.get(name) or mean_over(res)
            for name, res in self.results.items()
        }
        self.overall_mean = self.overall_mean or mean_over(self.dataset_means)

    @property
    def metrics(self) -> list[str]:
        """Metric names present in any category, in the canonical order."""
        seen = {m for res in self.results.values() for vals in res.values() for m in vals}
        return [m for m in ALL_METRIC_NAMES if m in seen]


def report_of(pl_module: Any) -> EvalReport | None:
    """The evaluation report of an :class:`~anomalyvfm.tasks.AnomalyVFM` task (None for other
    modules, or before an evaluation finished)."""
    from anomalyvfm.tasks.anomaly_detection import AnomalyVFM

    return pl_module.report if isinstance(pl_module, AnomalyVFM) else None
