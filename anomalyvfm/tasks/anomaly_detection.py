"""Lightning task that trains and evaluates :class:`AnomalyVFMModel`."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Collection
from dataclasses import asdict, fields, is_dataclass
from typing import Any, Literal, TypeVar, cast

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.nn import functional as F

from anomalyvfm import options
from anomalyvfm.backbones.adapters import AdapterConfig
from anomalyvfm.backbones.timm_backbone import BackboneConfig
from anomalyvfm.batch import Batch
from anomalyvfm.checkpoint_options import CALIBRATION_KEY
from anomalyvfm.errors import notice
from anomalyvfm.losses import AnomalyVFMLoss, LossConfig, LossOutput
from anomalyvfm.metrics.compat import MetricMode
from anomalyvfm.metrics.evaluator import AnomalyEvaluator, MetricName
from anomalyvfm.models.anomalyvfm import AnomalyPrediction, AnomalyVFMModel
from anomalyvfm.models.decoder import DecoderConfig
from anomalyvfm.results import EvalProtocol, EvalReport, EvalSource

log = logging.getLogger(__name__)
C = TypeVar("C")
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


def _as_config(cls: type[C], value: C | dict[str, Any] | None) -> C:
    """Accepts a dataclass instance, a plain dict (from a checkpoint's hparams) or None."""
    if value is None:
        return cls()
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options {sorted(unknown)}")
        return cls(**value)
    return value


def _check_task_options(
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    lr_schedule: str,
    warmup_steps: int,
    fpr_limit: float,
    image_size: int,
    compile: str,
) -> None:
    """Raises ValueError naming the first invalid optimisation or evaluation option."""
    options.positive_number("model.lr", lr)
    options.non_negative_number("model.weight_decay", weight_decay)
    if len(betas) != 2:
        raise ValueError(f"model.betas must be two numbers in [0, 1); got {betas!r}")
    for beta in betas:
        options.in_unit_interval("model.betas", beta, high_open=True)
    options.one_of("model.lr_schedule", lr_schedule, ("constant", "cosine"))
    options.non_negative_int("model.warmup_steps", warmup_steps)
    options.in_unit_interval("model.fpr_limit", fpr_limit, low_open=True)
    options.positive_int("model.image_size", image_size)
    options.one_of("model.compile", compile, ("never", "cuda", "always"))


class AnomalyVFM(pl.LightningModule):
    """Adapters plus decoder on a frozen VFM, trained on synthetic anomalies.

    Args:
        backbone: timm backbone and feature options.
        adapter: LoRA/DoRA options (reference: DoRA, rank 64, alpha 1, q/v + proj).
        decoder: decoder options (reference: one up-block).
        loss: loss options (reference: clip [0.1, 0.9], confidence on).
        image_size: square input size; linked from ``data.image_size`` by the CLI.
        mean_filter_size: k of the k x k mean filter on anomaly maps at inference (5).
        image_score: image score from the ``head`` (method), the ``map_max`` or their ``mean``.
        mean_filter_padding: ``replicate`` or ``zeros`` (the reference code's border handling).
        lr: AdamW learning rate (1e-4).
        weight_decay: AdamW weight decay (1e-2).
        betas: AdamW betas.
        lr_schedule: ``constant`` (reference) or ``cosine`` decay to zero over ``max_steps``.
        warmup_steps: linear warm-up steps (0 in the reference).
        fpr_limit: AUPRO integration limit (0.3).
        metric_mode: ``exact`` metrics, or a compatibility mode reproducing a published
            approximation (``reference_binned``, ``threshold_loop``); recorded with every result.
        eval_metrics: metric names to compute; the seven of the method's tables when None
            (add ``pixel_AUPIMO`` to opt in).
        metrics_on_cpu: keep the evaluation states (all maps) in host memory rather than on the
            accelerator; for large sets at full resolution.
        compile: ``torch.compile`` the backbone, decoder and loss: ``never``, ``cuda`` (only when
            training or evaluating on a CUDA device; the full-size configs' choice) or
            ``always`` (CPU too, which needs a C++ compiler). Same numbers up to float rounding.
        compile_mode: ``torch.compile`` mode (``default``, ``max-autotune``, ...).
        compile_eval: compile for ``test``/``validate``/``predict`` runs too. Off by default:
            compiling a ViT-L takes tens of seconds, more than it saves on a benchmark-sized
            test set (1,725 MVTec AD images are seconds of eager bf16 inference).
        eval_autocast: numerics of the ``validate``/``test`` forward: ``trainer`` (the trainer's
            precision, e.g. the recipe's bf16 autocast) or ``fp16`` (float16 autocast, as the
            reference code's test runs). ``fp16`` acts on CUDA only; on another device it is
            a no-op with a notice. Recorded with every result.
    """

    def __init__(
        self,
        backbone: BackboneConfig = BackboneConfig(),
        adapter: AdapterConfig = AdapterConfig(),
        decoder: DecoderConfig = DecoderConfig(),
        loss: LossConfig = LossConfig(),
        image_size: int = 768,
        mean_filter_size: int = 5,
        image_score: Literal["head", "map_max", "mean"] = "head",
        mean_filter_padding: Literal["replicate", "zeros"] = "replicate",
        lr: float = 1e-4,
        weight_decay: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        lr_schedule: Literal["constant", "cosine"] = "constant",
        warmup_steps: int = 0,
        fpr_limit: float = 0.3,
        metric_mode: MetricMode = "exact",
        eval_metrics: list[MetricName] | None = None,
        metrics_on_cpu: bool = False,
        compile: Literal["never", "cuda", "always"] = "never",
        compile_mode: CompileMode = "default",
        compile_eval: bool = False,
        eval_autocast: Literal["trainer", "fp16"] = "trainer",
    ) -> None:
        super().__init__()
        _check_task_options(
            lr, weight_decay, betas, lr_schedule, warmup_steps, fpr_limit, image_size, compile
        )
        options.one_of("model.eval_autocast", eval_autocast, ("trainer", "fp16"))
        self.backbone_config = _as_config(BackboneConfig, backbone)
        self.adapter_config = _as_config(AdapterConfig, adapter)
        self.decoder_config = _as_config(DecoderConfig, decoder)
        self.loss_config = _as_config(LossConfig, loss)
        # Under the CLI this stores the resolved config with its class path, which lets
        # `test --ckpt_path` and `load_from_checkpoint` rebuild the model. Outside the CLI the
        # dataclass arguments are stored as plain dicts, so checkpoints load with weights_only.
        self.save_hyperparameters()
        for hp in (cast(dict, self._hparams), cast(dict, self._hparams_initial)):
            for key in ("backbone", "adapter", "decoder", "loss"):
                if is_dataclass(hp.get(key)):
                    hp[key] = asdict(hp[key])
        # Checkpoints hold only what training changed (see on_save_checkpoint).
        self.strict_loading = False
        self.configure_models()
        self.configure_losses()
        self.evaluators = nn.ModuleDict()
        # The evaluation's protocol (built when it starts) and report (when it ends).
        self.protocol: EvalProtocol | None = None
        self.report: EvalReport | None = None
        self.compiled = False
        # Thresholds of a calibrated checkpoint this model was loaded from (None: uncalibrated).
        self.calibration: dict[str, Any] | None = None
        # Datasets of the current evaluation, those whose loader this process has finished, a
        # file of each with an empty defect mask, and those already warned about.
        self._eval_names: list[str] = []
        self._finished: set[str] = set()
        self._computed = False
        self._empty_mask_example: dict[str, str] = {}
        self._empty_mask_warned: set[str] = set()
        # The dtype of the evaluation forward's autocast (None: the trainer's precision).
        self._eval_dtype: torch.dtype | None = None

    def configure_models(self) -> None:
        """Builds the pure-torch model."""
        self.model = AnomalyVFMModel(
            self.backbone_config,
            self.adapter_config,
            self.decoder_config,
            self.hparams["image_size"],
            self.hparams["mean_filter_size"],
            self.hparams["image_score"],
            self.hparams["mean_filter_padding"],
        )

    def configure_losses(self) -> None:
        """Builds the loss."""
        self.criterion = AnomalyVFMLoss(self.loss_config)

    def configure_metrics(self, stage: str) -> None:
        """One evaluator per evaluation dataset of ``stage`` and the evaluation protocol, from
        the datamodule (an :class:`~anomalyvfm.results.EvalSource`; none: no evaluation)."""
        # Lightning sets trainer.datamodule (None without one) when the trainer is built.
        datamodule = self.trainer.datamodule if self._trainer is not None else None  # type: ignore[attr-defined]
        if not isinstance(datamodule, EvalSource):
            return
        datasets = list(datamodule.eval_datasets(stage))
        self._eval_names = [ds.name for ds in datasets]
        self._finished, self._empty_mask_example, self._computed = set(), {}, False
        self._empty_mask_warned = set()  # once per dataset and run (fit: over all validations)
        for ds in datasets:
            self.evaluators[ds.name] = AnomalyEvaluator(
                ds.categories,
                pixel_labels=ds.pixel_labels,
                image_labels=ds.image_labels,
                fpr_limit=self.hparams["fpr_limit"],
                metric_mode=self.hparams["metric_mode"],
                metrics=self.hparams["eval_metrics"],
                compute_on_cpu=self.hparams["metrics_on_cpu"],
            )
        self.protocol = EvalProtocol.build(datamodule, self.hparams, self._eval_autocast())

    def _eval_autocast(self) -> str | None:
        """Sets the evaluation forward's autocast from ``eval_autocast`` and the device; returns
        what the protocol records (None when the trainer's precision applies)."""
        self._eval_dtype = None
        if self.hparams.get("eval_autocast", "trainer") != "fp16":
            return None
        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        if device.type == "cuda":
            self._eval_dtype = torch.float16
            return "fp16"
        notice(
            f"model.eval_autocast=fp16 has no effect on {device.type}: fp16 autocast needs "
            "CUDA; evaluating at the trainer's precision"
        )
        return f"fp16 unavailable on {device.type}"

    def setup(self, stage: str) -> None:
        self.configure_metrics(stage)
        if stage == "fit" or self.hparams["compile_eval"]:
            device = self.trainer.strategy.root_device if self._trainer is not None else self.device
            self.compile_modules(device)

    def compile_modules(self, device: torch.device) -> bool:
        """Compiles backbone, decoder and loss in place when ``compile`` asks for ``device``.

        Each part is compiled on its own (``nn.Module.compile``, so state-dict keys do not
        change), which keeps the parts separately measurable. Returns whether they are compiled.
        """
        mode = self.hparams["compile"]
        if self.compiled or mode == "never" or (mode == "cuda" and device.type != "cuda"):
            return self.compiled
        options = {"mode": self.hparams["compile_mode"]}
        for module in (self.model.backbone, self.model.decoder, self.criterion):
            module.compile(**options)
        self.compiled = True
        return True

    def on_fit_start(self) -> None:
        report = self.model.parameter_report()
        lines = [f"  {k:20s} {v:>14,d}" for k, v in report.items()]
        frozen = sum(1 for m in self.model.backbone.modules() if not m.training)
        if frozen and self.model.training:
            lines.append(f"  {frozen:,d} frozen backbone modules stay in eval mode")
            # Lightning warns about modules in eval mode when training starts; here they are
            # deliberate (see AnomalyVFMModel.train), so that warning would only confuse.
            warnings.filterwarnings(
                "ignore",
                message=r"Found \d+ module\(s\) in eval mode at the start of training",
            )
        rank_zero_info("AnomalyVFM parameters:\n" + "\n".join(lines))

    def forward(self, images: Tensor) -> AnomalyPrediction:
        return self.model.predict(images)

    def losses(self, batch: Batch) -> LossOutput:
        """Model forward and loss of a training batch (images, masks, labels)."""
        out = self.model(batch["image"])
        return self.criterion(
            out.anomaly_logits,
            out.confidence_logits,
            out.image_logits,
            batch["mask"],
            batch["label"],
        )

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        losses = self.losses(batch)
        bs = batch["image"].shape[0]
        self.log("train/loss", losses.loss, prog_bar=True, batch_size=bs)
        self.log("train/pixel_loss", losses.pixel, batch_size=bs)
        self.log("train/image_loss", losses.image, batch_size=bs)
        self.log("train/confidence", losses.confidence_mean, batch_size=bs)
        return losses.loss

    def _eval_step(self, batch: Batch) -> dict[str, Tensor]:
        """One evaluation batch: updates the dataset's evaluator.

        Returns:
            ``pred_score`` (B,), ``anomaly_map`` (B, S, S) at the model input size and
            ``low_map`` (B, h, w) at the decoder's resolution (the map every evaluation size is
            resized from), for callbacks (``on_test_batch_end``'s ``outputs``).
        """
        if self._eval_dtype is not None:
            with torch.autocast("cuda", dtype=self._eval_dtype):
                out = self.model(batch["image"])
        else:
            out = self.model(batch["image"])
        low = self.model.postprocess(out, out.anomaly_logits.shape[-2:])
        maps, masks = _maps_at_mask_sizes(low.anomaly_map, batch)
        name = batch["dataset"][0]
        empty = batch.get("empty_mask")
        if name in self.evaluators:
            cast(AnomalyEvaluator, self.evaluators[name]).update(
                low.pred_score,
                batch["label"],
                batch["category"],
                maps,
                masks,
                batch.get("index"),
                empty,
            )
        if empty is not None and bool(empty.any()):
            first = int(torch.nonzero(empty)[0, 0])
            self._empty_mask_example.setdefault(name, batch["path"][first])
        size = tuple(batch["image"].shape[-2:])
        full = F.interpolate(low.anomaly_map[:, None], size, mode="bilinear", align_corners=False)
        return {"pred_score": low.pred_score, "anomaly_map": full[:, 0], "low_map": low.anomaly_map}

    def validation_step(
        self, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        return self._eval_step(batch)

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        out = self._eval_step(batch)
        # Loaders run one after the other: after a loader's last batch its dataset is complete,
        # and its results can be computed even if a later dataset fails (compute_finished).
        if (
            self._trainer is not None
            and batch_idx + 1 >= self.trainer.num_test_batches[dataloader_idx]
        ):
            self._finished.add(batch["dataset"][0])
        return out

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict:
        pred = self.model.predict(batch["image"])
        return {
            "path": batch["path"],
            "pred_score": pred.pred_score,
            "anomaly_map": pred.anomaly_map,
        }

    def on_validation_epoch_end(self) -> None:
        self._log_results("val")

    def on_test_epoch_end(self) -> None:
        self._log_results("test")

    def _log_results(self, stage: str) -> None:
        """Logs ``{stage}/{dataset}/{category}/{metric}``, dataset means and the overall mean."""
        report = self.compute_results()
        self._computed = True
        for name, res in report.results.items():
            for category, values in res.items():
                self._log_values(f"{stage}/{name}/{category}", values)
            self._log_values(f"{stage}/{name}", report.dataset_means[name])
        if report.results:
            self._log_values(f"{stage}/mean", report.overall_mean)

    def compute_results(self, names: Collection[str] | None = None) -> EvalReport:
        """Computes (and resets) the evaluators of ``names`` (all when None) into
        :attr:`report`, which it returns.

        A dataset with defective images whose mask is empty gets one warning per run naming
        the count and an example file.
        """
        results: dict[str, dict[str, dict[str, float]]] = {}
        counts: dict[str, dict[str, int]] = {}
        empty_masks: dict[str, int] = {}
        for name, module in self.evaluators.items():
            if names is not None and name not in names:
                continue
            evaluator = cast(AnomalyEvaluator, module)
            res = evaluator.compute()
            evaluator.reset()
            if not res:
                continue
            results[name] = res
            counts[name] = dict(evaluator.num_images)
            if evaluator.pixel_labels:
                empty_masks[name] = evaluator.num_empty_masks
                self._warn_empty_masks(name, evaluator.num_empty_masks)
        self.report = EvalReport(
            results,
            counts=counts,
            protocol=self.protocol or EvalProtocol(),
            empty_masks=empty_masks,
        )
        return self.report

    # Views of the report, for scripts and notebooks.
    @property
    def results(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{dataset: {category: {metric: value}}}`` of the last evaluation."""
        return self.report.results if self.report else {}

    @property
    def dataset_means(self) -> dict[str, dict[str, float]]:
        return self.report.dataset_means if self.report else {}

    @property
    def overall_mean(self) -> dict[str, float]:
        return self.report.overall_mean if self.report else {}

    @property
    def eval_counts(self) -> dict[str, dict[str, int]]:
        return self.report.counts if self.report else {}

    @property
    def eval_empty_masks(self) -> dict[str, int]:
        return self.report.empty_masks if self.report else {}

    def compute_finished(self) -> list[str]:
        """Results of the datasets whose loader finished, after a ``test`` stopped by an error.

        Returns:
            The names of this run's datasets left without results.
        """
        if not self._computed:  # else the error came after the results were computed
            self.compute_results([n for n in self._eval_names if n in self._finished])
        return [n for n in self._eval_names if n not in self.results]

    def _warn_empty_masks(self, name: str, count: int) -> None:
        if count == 0 or name in self._empty_mask_warned:
            return
        self._empty_mask_warned.add(name)
        example = self._empty_mask_example.get(name)
        where = f", e.g. {example}" if example else ""
        rank_zero_warn(
            f"{name}: {count} defective image(s) have an empty mask{where}; their pixels all "
            "count as normal. Check the mask files or the dataset's mask_threshold."
        )

    def _log_values(self, prefix: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            if not math.isnan(value):
                # Values are already global (synced states), so no further reduction.
                self.log(f"{prefix}/{metric}", value, sync_dist=False, rank_zero_only=False)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=self.hparams["lr"],
            weight_decay=self.hparams["weight_decay"],
            betas=tuple(self.hparams["betas"]),
        )
        total = max(int(self.trainer.max_steps), 1) if self.trainer.max_steps > 0 else 1
        warmup, schedule = self.hparams["warmup_steps"], self.hparams["lr_schedule"]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if schedule == "cosine":
                progress = min((step - warmup) / max(total - warmup, 1), 1.0)
                return 0.5 * (1.0 + math.cos(math.pi * progress))
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # -- checkpoints --------------------------------------------------------------------------

    def kept_state_keys(self) -> set[str]:
        """State-dict keys a checkpoint keeps: trainable weights and non-backbone buffers.

        The frozen backbone is rebuilt from its source (pretrained download or
        ``checkpoint_path``). A randomly initialised backbone has no source, so it is kept whole.
        """
        reloadable = self.backbone_config.pretrained or bool(self.backbone_config.checkpoint_path)
        trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        return {
            key
            for key in self.state_dict()
            if key in trainable or not reloadable or not key.startswith("model.backbone.")
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.kept_state_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A detector's calibration (anomalyvfm calibrate), recorded with test results.
        self.calibration = checkpoint.get(CALIBRATION_KEY)
        missing = sorted(k for k in self.kept_state_keys() if k not in checkpoint["state_dict"])
        if missing:
            raise KeyError(
                f"checkpoint lacks {len(missing)} trained weights of this configuration "
                f"(first: {missing[:3]}); was it written with another backbone/adapter config?"
            )


def _maps_at_mask_sizes(low: Tensor, batch: Batch) -> tuple[Tensor | list[Tensor], Tensor | list]:
    """Resizes the low-resolution maps (B, h, w) to their masks' sizes (bilinear).

    With one mask size per batch this is one interpolation; with several (evaluation at the
    original resolution, masks padded by the collate), each map is resized to its own mask's size
    and the mask is cut out of the padding.
    """
    masks = batch["mask"]
    sizes = batch.get("mask_size")
    if sizes is None or bool((sizes == sizes[0]).all()):
        size = tuple(masks.shape[-2:])
        maps = F.interpolate(low[:, None], size, mode="bilinear", align_corners=False)[:, 0]
        return maps, masks
    out_maps, out_masks = [], []
    for i, (h, w) in enumerate(sizes.tolist()):
        m = F.interpolate(low[i, None, None], (h, w), mode="bilinear", align_corners=False)
        out_maps.append(m[0, 0])
        out_masks.append(masks[i, :h, :w])
    return out_maps, out_masks
