"""Stage 3 of the offline pipeline: a frozen-VFM feature-distance filter (docs/method.md, 1.1).

Both images of a (normal, anomalous) pair go through a frozen timm vision transformer; the
per-pixel cosine distance between their bilinearly upsampled patch features is the difference
map, and the anomaly mask is ``distance > threshold`` inside the inpainting box. Pairs whose mask
is empty are dropped by the caller (``FilterResult.kept``).

Per-model facts (patch size, prefix tokens, mean/std) are read from the model, never tabled.
torch and timm are imported inside the functions that use them so that ``import data_synthesis``
stays numpy-only and fast; the model itself is built on first use, never at construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import numpy as np

from data_synthesis.base import as_image
from data_synthesis.io import resize_image
from data_synthesis.upsample import upsampled_cosine

if TYPE_CHECKING:
    import torch

DType = Literal["float32", "float16", "bfloat16"]
Upsample = Literal["features", "distance"]


@dataclass(frozen=True)
class FilterResult:
    """Outcome of filtering one pair.

    Attributes:
        mask: float32 (H, W) in {0, 1}: ``(distance > threshold) & box``.
        distance: float32 (H, W) cosine distance ``1 - cos`` in [0, 2].
        kept: True when the mask has at least one pixel (empty pairs are dropped).
        params: JSON-serialisable record: threshold, backbone, mask_pixels, layer, image_size.
    """

    mask: np.ndarray
    distance: np.ndarray
    kept: bool
    params: dict[str, Any]


class FeatureDistanceFilter:
    """Anomaly masks from the feature distance between a normal image and its anomalous version.

    Args:
        backbone: timm registry name of any timm vision transformer, NaFlexVit included
            (reference: ``vit_large_patch16_dinov3.lvd1689m``).
        pretrained: load the pretrained weights (Hugging Face hub or cache) when the model is built.
        checkpoint_path: local ``.safetensors`` / ``.pth`` weights, loaded with
            ``weights_only=True`` through timm's checkpoint filters; takes precedence over
            ``pretrained``.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``depth=2, embed_dim=32``).
        image_size: square side the images are resized to for the model (reference 1024),
            rounded to the nearest multiple of the patch size.
        threshold: mask = distance above this (reference default 0.25; its comment says 0.3).
        layer: block whose patch tokens are compared (negative counts from the end).
        upsample: ``features`` upsamples the patch features to the image and then takes the
            cosine distance per pixel (the reference); ``distance`` takes it on the patch grid and
            upsamples the map (cheaper, blurrier edges).
        device: torch device, or ``auto`` for CUDA when available, else CPU.
        dtype: model precision; distances are always computed in float32.
        batch_size: pairs per forward pass (each pass holds 2 x batch_size images).

    Raises:
        FileNotFoundError: ``checkpoint_path`` does not exist.
        ValueError: an option is out of range.
    """

    def __init__(
        self,
        backbone: str = "vit_large_patch16_dinov3.lvd1689m",
        pretrained: bool = True,
        checkpoint_path: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        image_size: int = 1024,
        threshold: float = 0.25,
        layer: int = -1,
        upsample: Upsample = "features",
        device: str = "auto",
        dtype: DType = "float32",
        batch_size: int = 4,
    ) -> None:
        if image_size < 1 or batch_size < 1:
            raise ValueError(
                f"image_size and batch_size must be >= 1, got {image_size}, {batch_size}"
            )
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}")
        if dtype not in get_args(DType):
            raise ValueError(f"dtype must be one of {get_args(DType)}, got {dtype!r}")
        if upsample not in get_args(Upsample):
            raise ValueError(f"upsample must be one of {get_args(Upsample)}, got {upsample!r}")
        if checkpoint_path is not None and not Path(checkpoint_path).expanduser().is_file():
            raise FileNotFoundError(
                f"filter.init_args.checkpoint_path {checkpoint_path} does not exist"
            )
        self.backbone = backbone
        self.pretrained = pretrained
        self.checkpoint_path = checkpoint_path
        self.model_kwargs = dict(model_kwargs or {})
        self.image_size = image_size
        self.threshold = float(threshold)
        self.layer = layer
        self.upsample = upsample
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self._model: Any = None
        self._state: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Workers receive the configuration only and build their own model on first use.
        state = dict(self.__dict__)
        state["_model"], state["_state"] = None, {}
        return state

    @property
    def model(self) -> Any:
        """The frozen timm model, built (and its weights loaded) on first access."""
        if self._model is None:
            self._build()
        return self._model

    @property
    def input_size(self) -> int:
        """Side of the square model input: ``image_size`` rounded to the patch size."""
        _ = self.model  # the patch size is only known once the model exists
        return int(self._state["input_size"])

    def _build(self) -> None:
        import torch

        from anomalyvfm.backbones.timm_models import create_timm_model

        model: Any = create_timm_model(
            self.backbone,
            pretrained=self.pretrained,
            checkpoint_path=self.checkpoint_path,
            img_size=self.image_size,
            model_kwargs=self.model_kwargs,
            cnn_features=False,
            name_option="filter.init_args.backbone",
            path_option="filter.init_args.checkpoint_path",
        )
        from anomalyvfm.backbones.timm_backbone import patch_embed_of

        embed = patch_embed_of(model)  # patch_embed, or NaFlexVit's embeds
        if embed is None or not all(hasattr(model, a) for a in ("blocks", "forward_intermediates")):
            raise ValueError(
                f"filter.init_args.backbone '{self.backbone}' is not a timm vision transformer"
            )
        patch = embed.patch_size
        patch = int(patch[0]) if isinstance(patch, (tuple, list)) else int(patch)
        size = max(patch, round(self.image_size / patch) * patch)
        if hasattr(model, "set_input_size") and size != self.image_size:
            model.set_input_size(img_size=(size, size))  # resample position embeddings once
        depth = len(model.blocks)
        if not -depth <= self.layer < depth:
            raise ValueError(
                f"layer {self.layer} out of range for {self.backbone} ({depth} blocks)"
            )
        device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu")
            if self.device == "auto"
            else self.device
        )
        dtype = getattr(torch, self.dtype)
        cfg = model.pretrained_cfg
        mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)), device=device)
        std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)), device=device)
        self._state = {
            "input_size": size,
            "device": device,
            "dtype": dtype,
            "mean": mean.view(1, 3, 1, 1),
            "std": std.view(1, 3, 1, 1),
        }
        self._model = model.eval().requires_grad_(False).to(device=device, dtype=dtype)

    def distance_maps(
        self, normals: Sequence[np.ndarray], anomalous: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """Per-pixel cosine distance of each pair, each map at its own image's size.

        Args:
            normals: float32 (H, W, 3) images in [0, 1] (sizes may differ between pairs).
            anomalous: the same number of images, each the size of its normal.

        Returns:
            One float32 (H, W) map in [0, 2] per pair.
        """
        import torch

        pairs = _check_pairs(normals, anomalous)
        _ = self.model  # build before reading the per-model state
        out: list[np.ndarray] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            images = [a for a, _ in chunk] + [b for _, b in chunk]
            with torch.inference_mode():
                feats = self._features(torch.cat([self._prepare(im) for im in images])).float()
                for i, (a, _) in enumerate(chunk):
                    dist = self._pixel_distance(feats[i], feats[len(chunk) + i], a.shape[:2])
                    out.append(np.asarray(dist.cpu().numpy(), dtype=np.float32))
        return out

    def distance(
        self, normals: Sequence[np.ndarray], anomalous: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Like :meth:`distance_maps`, stacked to (N, H, W); all images must share one size."""
        maps = self.distance_maps(normals, anomalous)
        if len({m.shape for m in maps}) > 1:
            raise ValueError("images of different sizes: use distance_maps() or filter_batch()")
        if not maps:
            return np.zeros((0, 0, 0), dtype=np.float32)
        return np.stack(maps)

    def __call__(
        self, normal: np.ndarray, anomalous: np.ndarray, box_mask: np.ndarray | None = None
    ) -> FilterResult:
        """Filter one pair; ``box_mask`` (H, W) limits the mask (None: the whole image)."""
        return self.filter_batch([normal], [anomalous], [box_mask])[0]

    def filter_batch(
        self,
        normals: Sequence[np.ndarray],
        anomalous: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray | None],
    ) -> list[FilterResult]:
        """Filter many pairs in batches of ``batch_size``.

        Args:
            normals: float32 (H, W, 3) images in [0, 1].
            anomalous: one image per normal, same size as it.
            boxes: one (H, W) mask per pair (nonzero = inside the box), or None for no box.

        Returns:
            One :class:`FilterResult` per pair, in order.
        """
        if len(boxes) != len(normals):
            raise ValueError(f"got {len(boxes)} box masks for {len(normals)} image pairs")
        maps = self.distance_maps(normals, anomalous)
        results = []
        for i, (dist, box) in enumerate(zip(maps, boxes, strict=True)):
            inside = np.ones(dist.shape, bool) if box is None else np.asarray(box) > 0.5
            if inside.shape != dist.shape:
                raise ValueError(f"pair {i}: box_mask shape {inside.shape} != image {dist.shape}")
            mask = ((dist > self.threshold) & inside).astype(np.float32)
            pixels = int(mask.sum())
            params = {
                "threshold": self.threshold,
                "backbone": self.backbone,
                "mask_pixels": pixels,
                "layer": self.layer,
                "image_size": self.input_size,
            }
            results.append(FilterResult(mask, dist, pixels > 0, params))
        return results

    def _prepare(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) [0, 1] array -> normalised (1, 3, S, S) tensor in the model's dtype.

        Resized by the package's one rule (:func:`data_synthesis.io.resize_image`), as training
        and evaluation images are.
        """
        import torch

        st = self._state
        size = (st["input_size"], st["input_size"])
        if image.shape[:2] != size:
            image = resize_image(image, size)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(st["device"]).permute(2, 0, 1)[None]
        return cast(torch.Tensor, (x - st["mean"]) / st["std"]).to(st["dtype"])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) patch features of block ``layer``, without prefix tokens."""
        # norm=True: the final norm, as in the reference's normalised patch tokens. Prefix tokens
        # (class, registers) are left out by forward_intermediates itself.
        feats = self.model.forward_intermediates(
            x, indices=[self.layer], norm=True, output_fmt="NCHW", intermediates_only=True
        )
        return cast("torch.Tensor", feats[0])

    def _pixel_distance(
        self, fa: torch.Tensor, fb: torch.Tensor, size: tuple[int, ...]
    ) -> torch.Tensor:
        """``1 - cos`` of two (C, h, w) feature maps at ``size`` (see ``upsample``)."""
        from torch.nn import functional as F

        hw = (int(size[0]), int(size[1]))
        if self.upsample == "distance":
            cos = F.cosine_similarity(fa, fb, dim=0, eps=1e-8)
            up = F.interpolate(cos[None, None], hw, mode="bilinear", align_corners=False)[0, 0]
            return (1.0 - up).clamp(0.0, 2.0)
        return (1.0 - upsampled_cosine(fa, fb, hw)).clamp(0.0, 2.0)


def _check_pairs(
    normals: Sequence[np.ndarray], anomalous: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(normals) != len(anomalous):
        raise ValueError(f"got {len(normals)} normal images but {len(anomalous)} anomalous ones")
    pairs = []
    for i, (a, b) in enumerate(zip(normals, anomalous, strict=True)):
        a, b = as_image(a), as_image(b)
        if a.shape != b.shape:
            raise ValueError(f"pair {i}: normal image {a.shape} and anomalous {b.shape} differ")
        pairs.append((a, b))
    return pairs
