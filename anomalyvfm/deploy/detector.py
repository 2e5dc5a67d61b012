"""A trained model as a detector: any images in, scores, labels, maps and masks out.

:class:`Detector` rebuilds the model from a checkpoint written by ``anomalyvfm fit`` (the
configuration is inside it), scores images exactly as ``anomalyvfm test`` does (the same
decoding and resizing functions, the same model forward and post-processing) and decides with
thresholds calibrated on normal images (:mod:`anomalyvfm.deploy.calibration`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from anomalyvfm.checkpoint_options import CALIBRATION_KEY, file_sha256, read_checkpoint
from anomalyvfm.data.transforms import image_to_tensor
from anomalyvfm.deploy import calibration as cal
from anomalyvfm.models.anomalyvfm import AnomalyVFMModel
from data_synthesis.io import decode_image, decode_pil, read_mask

Precision = Literal["32", "bf16"]
ImageInput = str | Path | Image.Image | np.ndarray


@dataclass
class Prediction:
    """The detector's answer for one image.

    Attributes:
        score: image anomaly score in [0, 1].
        label: whether the image is anomalous (``score > image_threshold``).
        anomaly_map: (H, W) float32 pixel scores in [0, 1] at the input's own resolution.
        mask: (H, W) bool, ``anomaly_map > pixel_threshold``.
        image_threshold: the image threshold used.
        pixel_threshold: the pixel threshold used.
        calibrated: whether the thresholds come from a calibration (else both are 0.5).
        path: the input's file, when it was given as a path.
    """

    score: float
    label: bool
    anomaly_map: np.ndarray
    mask: np.ndarray
    image_threshold: float
    pixel_threshold: float
    calibrated: bool
    path: str | None = None


def to_pixels(item: ImageInput, where: str = "input") -> np.ndarray:
    """An input as decoded (H, W, 3) pixels (uint8, or float32 in [0, 1]) by the package's one
    decoding rule (:func:`data_synthesis.io.decode_image`).

    Paths are decoded; PIL images and uint8 / uint16 arrays (H, W), (H, W, 3), (H, W, 4) go
    through the same rule as the file they would be saved as (grey replicated, 16-bit scaled by
    1/65535, alpha composited on black). Float arrays are taken as [0, 1] values.

    Raises:
        FileNotFoundError, ValueError: unreadable file or unsupported array, naming ``where``.
    """
    if isinstance(item, (str, Path)):
        return decode_image(item)
    if isinstance(item, Image.Image):
        item.load()
        return decode_pil(item)
    if not isinstance(item, np.ndarray):
        raise TypeError(
            f"{where}: expected an image path, a PIL image or a numpy array; got {type(item)}"
        )
    arr = item
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"{where}: an image array must be (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint8 or (arr.dtype == np.uint16 and arr.ndim == 2):
        return decode_pil(Image.fromarray(np.ascontiguousarray(arr)))
    if arr.dtype == np.uint16:
        values = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        values = np.clip(arr.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"{where}: image arrays must be uint8, uint16 or float; got {arr.dtype}")
    if values.ndim == 2:
        return np.repeat(values[..., None], 3, axis=2)
    if values.shape[2] == 4:  # composited on black, as decode_image does
        return np.ascontiguousarray(values[..., :3] * values[..., 3:4])
    return np.ascontiguousarray(values)


def _describe(item: Any, index: int) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"input {index}"


def _as_list(inputs: ImageInput | Iterable[ImageInput]) -> list[ImageInput]:
    if isinstance(inputs, (str, Path, Image.Image, np.ndarray)):
        return [inputs]
    return list(inputs)


class Detector:
    """A trained AnomalyVFM model with decision thresholds.

    Build one with :meth:`from_checkpoint`. Uncalibrated, both thresholds are 0.5 and every
    prediction says ``calibrated=False``; :meth:`calibrate` sets them, :meth:`save` keeps them.

    Args:
        model: the model (its frozen backbone already loaded).
        calibration: thresholds, or None for the uncalibrated 0.5.
        device: where the model runs.
        precision: ``32`` (float32) or ``bf16`` (bfloat16 autocast on CUDA).
        checkpoint: the checkpoint dict the model came from (kept for :meth:`save`).
        checkpoint_path: its file, and ``checkpoint_sha256`` its digest, for records.
    """

    def __init__(
        self,
        model: AnomalyVFMModel,
        image_size: int,
        calibration: cal.Calibration | None = None,
        device: str | torch.device = "cpu",
        precision: Precision = "32",
        checkpoint: dict[str, Any] | None = None,
        checkpoint_path: str | None = None,
        checkpoint_sha256: str | None = None,
    ) -> None:
        if precision not in ("32", "bf16"):
            raise ValueError(f"precision must be '32' or 'bf16'; got {precision!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size = int(image_size)
        self.calibration = calibration
        self.precision: Precision = precision
        self.checkpoint = checkpoint
        self.checkpoint_path = checkpoint_path
        self.checkpoint_sha256 = checkpoint_sha256

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        backbone_checkpoint: str | Path | None = None,
        precision: Precision = "32",
    ) -> Detector:
        """Rebuilds the model of a checkpoint written by ``anomalyvfm fit`` (or :meth:`save`).

        The frozen backbone comes from the source the checkpoint records: its
        ``model.backbone.checkpoint_path`` file, the Hugging Face cache, or the checkpoint itself
        when the backbone was randomly initialised. ``backbone_checkpoint`` replaces a recorded
        file (e.g. on another machine).

        Raises:
            FileNotFoundError: ``path`` or the backbone's weights file is missing.
            ValueError: the file is not a checkpoint of this project, or lacks trained weights.
            WeightsUnavailableError: the pretrained backbone is neither cached nor downloadable
                (the message names model.backbone.checkpoint_path and HF_HUB_OFFLINE).
        """
        from anomalyvfm.tasks.anomaly_detection import AnomalyVFM

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint {path}: no such file (give a checkpoint written by `anomalyvfm "
                "fit`, e.g. <run folder>/checkpoints/last.ckpt)"
            )
        ckpt = read_checkpoint(path)
        hparams = dict(ckpt.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        class_path = hparams.pop("_class_path", None)
        if class_path not in (
            None,
            "anomalyvfm.tasks.AnomalyVFM",
            f"{AnomalyVFM.__module__}.AnomalyVFM",
        ):
            raise ValueError(f"checkpoint {path} holds a {class_path} model, not an AnomalyVFM")
        if not hparams or "backbone" not in hparams:
            raise ValueError(
                f"checkpoint {path} records no model configuration (hyper_parameters); "
                "give a checkpoint written by `anomalyvfm fit`"
            )
        if backbone_checkpoint is not None:
            hparams["backbone"] = {
                **dict(hparams["backbone"]),
                "checkpoint_path": str(backbone_checkpoint),
            }
            ckpt = {**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"], **hparams}}
        # Compilation is for training runs; a detector runs the eager model.
        hparams["compile"] = "never"
        try:
            task = AnomalyVFM(**hparams)
        except TypeError as err:
            raise ValueError(
                f"checkpoint {path} has model options this version does not know ({err})"
            ) from err
        try:
            task.on_load_checkpoint(ckpt)
        except KeyError as err:
            raise ValueError(f"checkpoint {path}: {err.args[0]}") from err
        task.load_state_dict(ckpt["state_dict"], strict=False)
        stored = ckpt.get(CALIBRATION_KEY)
        calibration = cal.Calibration.from_dict(stored) if stored else None
        return cls(
            task.model,
            int(hparams["image_size"]),
            calibration,
            device,
            precision,
            checkpoint=ckpt,
            checkpoint_path=str(path),
            checkpoint_sha256=file_sha256(path),
        )

    # -- thresholds -------------------------------------------------------------------------

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def image_threshold(self) -> float:
        return self.calibration.image_threshold if self.calibration else cal.DEFAULT_THRESHOLD

    @property
    def pixel_threshold(self) -> float:
        return self.calibration.pixel_threshold if self.calibration else cal.DEFAULT_THRESHOLD

    # -- scoring ----------------------------------------------------------------------------

    def preprocess(self, pixels: np.ndarray) -> torch.Tensor:
        """Decoded pixels -> the model input (3, S, S), exactly as the test datamodule does."""
        return image_to_tensor(pixels, self.image_size, "squash")

    @torch.no_grad()
    def score_pixels(self, batch: Sequence[np.ndarray]) -> list[tuple[float, np.ndarray]]:
        """(score, anomaly map at each image's size) of decoded images, in one forward."""
        if not batch:
            return []
        images = torch.stack([self.preprocess(p) for p in batch]).to(self.device)
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16"
            else nullcontext()
        )
        with autocast:
            out = self.model(images)
        low = self.model.postprocess(out, out.anomaly_logits.shape[-2:])
        results = []
        for i, pixels in enumerate(batch):
            size = tuple(pixels.shape[:2])
            amap = F.interpolate(
                low.anomaly_map[i, None, None], size, mode="bilinear", align_corners=False
            )
            results.append((float(low.pred_score[i]), amap[0, 0].float().cpu().numpy()))
        return results

    def decide(self, score: float, amap: np.ndarray, path: str | None = None) -> Prediction:
        """A prediction from a score and a map, by the current thresholds."""
        return Prediction(
            score=score,
            label=bool(score > self.image_threshold),
            anomaly_map=amap,
            mask=amap > self.pixel_threshold,
            image_threshold=self.image_threshold,
            pixel_threshold=self.pixel_threshold,
            calibrated=self.calibrated,
            path=path,
        )

    def _scored(
        self, inputs: list[ImageInput], batch_size: int
    ) -> Iterator[tuple[int, float, np.ndarray]]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            pixels = [to_pixels(x, _describe(x, start + i)) for i, x in enumerate(chunk)]
            for i, (score, amap) in enumerate(self.score_pixels(pixels)):
                yield start + i, score, amap

    def predict(
        self, inputs: ImageInput | Iterable[ImageInput], batch_size: int = 8
    ) -> list[Prediction]:
        """One :class:`Prediction` per input (paths, PIL images or numpy arrays), in order.

        Raises:
            FileNotFoundError, ValueError: an input cannot be read (named).
        """
        items = _as_list(inputs)
        return [
            self.decide(score, amap, str(items[i]) if isinstance(items[i], (str, Path)) else None)
            for i, score, amap in self._scored(items, batch_size)
        ]

    # -- calibration ------------------------------------------------------------------------

    def calibrate(
        self,
        inputs: ImageInput | Iterable[ImageInput],
        target_fpr: float = 0.01,
        *,
        labels: Sequence[int | bool] | None = None,
        masks: Sequence[ImageInput | None] | None = None,
        rule: cal.Rule | None = None,
        max_miss_rate: float | None = None,
        batch_size: int = 8,
    ) -> cal.Calibration:
        """Sets the image and pixel thresholds from calibration images; returns them.

        Without ``labels`` every input is normal and the rule is ``fpr``: about ``target_fpr``
        of normal images, and of normal pixels, score above the thresholds. With ``labels``
        (1 anomalous) the rule may be ``f1`` (the F1-max threshold) or ``miss_rate`` (the highest
        threshold missing at most ``max_miss_rate`` of the anomalous images); the pixel
        threshold follows the same rule on ``masks`` (files or boolean arrays, None for an
        image without anomalous pixels) or, without masks, the ``fpr`` rule on the normal images'
        pixels.

        Raises:
            ValueError: a bad option, mismatched lengths, or no image of a needed kind.
        """
        items = _as_list(inputs)
        if not items:
            raise ValueError("calibration needs at least one image")
        rule = rule or ("fpr" if labels is None else "f1")
        if rule not in cal.RULES:
            raise ValueError(f"rule must be one of {list(cal.RULES)}; got {rule!r}")
        cal.check_rate("target_fpr", target_fpr)
        if rule == "miss_rate":
            if max_miss_rate is None:
                raise ValueError("rule='miss_rate' needs max_miss_rate (e.g. 0.05)")
            cal.check_rate("max_miss_rate", max_miss_rate)
        if rule != "fpr" and labels is None:
            raise ValueError(f"rule={rule!r} needs labels (1 for anomalous images)")
        truth = np.zeros(len(items), bool) if labels is None else np.asarray(labels).astype(bool)
        if truth.shape != (len(items),):
            raise ValueError(f"labels has {truth.size} entries for {len(items)} images")
        if masks is not None and len(masks) != len(items):
            raise ValueError(f"masks has {len(masks)} entries for {len(items)} images")
        if not (~truth).any() and (rule == "fpr" or masks is None):
            raise ValueError("calibration needs normal images (label 0)")
        use_masks = masks is not None and rule != "fpr"
        scores = np.zeros(len(items))
        pixels = cal.PixelHistogram()
        for i, score, amap in self._scored(items, batch_size):
            scores[i] = score
            if use_masks:
                assert masks is not None
                pixels.add(amap, _mask_of(masks[i], amap.shape, i))
            elif not truth[i]:
                pixels.add(amap)
        if rule == "fpr":
            image_t = cal.fpr_threshold(scores[~truth], target_fpr)
        elif rule == "f1":
            image_t = cal.f1_threshold(scores, truth)
        else:
            assert max_miss_rate is not None
            image_t = cal.miss_rate_threshold(scores, truth, max_miss_rate)
        if not use_masks:
            pixel_t = pixels.fpr_threshold(target_fpr)
        elif rule == "f1":
            pixel_t = pixels.f1_threshold()
        else:
            assert max_miss_rate is not None
            pixel_t = pixels.miss_rate_threshold(max_miss_rate)
        self.calibration = cal.Calibration(
            image_threshold=image_t,
            pixel_threshold=pixel_t,
            rule=rule,
            target_fpr=target_fpr if rule == "fpr" or not use_masks else None,
            max_miss_rate=max_miss_rate if rule == "miss_rate" else None,
            num_images=len(items),
            num_normal=int((~truth).sum()),
            num_anomalous=int(truth.sum()),
            num_pixels=pixels.count,
        )
        return self.calibration

    # -- saving -----------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Writes the checkpoint with this detector's calibration; model weights unchanged.

        The file reloads with :meth:`from_checkpoint` and is still a checkpoint for
        ``anomalyvfm test --ckpt_path``.
        """
        if self.checkpoint is None:
            raise ValueError("this detector was not built from a checkpoint; nothing to save")
        ckpt = dict(self.checkpoint)
        if self.calibration is None:
            ckpt.pop(CALIBRATION_KEY, None)
        else:
            ckpt[CALIBRATION_KEY] = self.calibration.as_dict()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(ckpt, partial)
        partial.replace(path)
        return path

    def export(self, path: str | Path, format: str | None = None) -> Path:
        """Writes this detector as one self-contained file; returns its path.

        ``format`` is ``onnx`` (runs with onnxruntime alone) or ``pt2`` (``torch.export``;
        ``torch.export.load`` needs only torch), by default from the file's suffix. The file
        holds the whole inference path with the adapters merged into the backbone weights and
        the current thresholds (:func:`anomalyvfm.deploy.export.export_detector`); its metadata
        records whether they are calibrated, their rule and the checkpoint's SHA-256.

        Raises:
            ValueError: unknown format or suffix.
        """
        from anomalyvfm.deploy.export import export_detector, format_of

        path = Path(path)
        format = format_of(path, format)
        info = self.describe()
        metadata = {
            "calibrated": self.calibrated,
            "rule": info["rule"],
            "calibration": info["calibration"],
            "checkpoint": Path(self.checkpoint_path).name if self.checkpoint_path else None,
            "checkpoint_sha256": self.checkpoint_sha256,
        }
        return export_detector(
            self.model,
            path,
            format,  # type: ignore[arg-type]
            image_threshold=self.image_threshold,
            pixel_threshold=self.pixel_threshold,
            metadata=metadata,
        )

    def describe(self) -> dict[str, Any]:
        """What a run's records say about the detector (checkpoint, hash, thresholds)."""
        calibration = self.calibration.as_dict() if self.calibration else None
        return {
            "checkpoint": self.checkpoint_path,
            "checkpoint_sha256": self.checkpoint_sha256,
            "backbone": self.model.backbone.config.name,
            "image_size": self.image_size,
            "calibrated": self.calibrated,
            "image_threshold": self.image_threshold,
            "pixel_threshold": self.pixel_threshold,
            "rule": self.calibration.rule if self.calibration else None,
            "calibration": calibration,
        }


def _mask_of(mask: ImageInput | None, shape: tuple[int, ...], index: int) -> np.ndarray:
    """A calibration mask as a boolean array of ``shape`` (None: no anomalous pixel)."""
    if mask is None:
        return np.zeros(shape, bool)
    if isinstance(mask, (str, Path)):
        return read_mask(mask, shape=shape)
    values = np.asarray(mask)
    if values.ndim == 3:
        values = values.max(axis=2)
    if values.shape != tuple(shape):
        raise ValueError(f"mask {index} is {values.shape}, its image is {tuple(shape)}")
    return values > 0
