"""Validation and flattening of pixel-level inputs shared by the metric modules.

Pixel metrics accept either one ``(N, H, W)`` tensor or a sequence of ``(H_i, W_i)`` tensors
(images of different sizes, e.g. evaluated at each mask's original resolution). Everything is
turned into a list of per-image ``(H_i, W_i)`` views here, so the metrics never label a region
across two images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

Maps = Tensor | Sequence[Tensor]

# 8-connectivity inside one image, as in the MVTec AD evaluation (and cv2's connectivity=8).
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def check_binary(target: Tensor, name: str) -> None:
    """Raises ValueError naming ``name`` unless ``target`` holds only 0 and 1."""
    if target.numel() > 0 and not bool(((target == 0) | (target == 1)).all()):
        values = torch.unique(target)[:6].tolist()
        raise ValueError(f"`{name}` must be binary (only 0 and 1), found values such as {values}.")


def as_image_list(maps: Maps, masks: Maps) -> tuple[list[Tensor], list[Tensor]]:
    """Validates maps and masks and returns them as lists of ``(H_i, W_i)`` tensors.

    Args:
        maps: anomaly maps, an ``(N, H, W)`` tensor or a sequence of ``(H_i, W_i)`` tensors.
        masks: binary ground truth of the same structure and shapes.

    Returns:
        ``(maps, masks)`` as lists of 2-D tensors (views, no copy); masks are bool.

    Raises:
        ValueError: if a tensor is not 3-D (resp. 2-D per image), the two disagree in number or
            shape, or a mask is not binary.
    """
    map_list, mask_list = _split(maps, "maps"), _split(masks, "masks")
    if len(map_list) != len(mask_list):
        raise ValueError(f"got {len(map_list)} maps but {len(mask_list)} masks.")
    for i, (m, k) in enumerate(zip(map_list, mask_list)):
        if m.shape != k.shape:
            raise ValueError(
                f"map {i} has shape {tuple(m.shape)} but its mask has shape {tuple(k.shape)}."
            )
        check_binary(k, "masks")
    return map_list, [k.to(torch.bool) for k in mask_list]


def _split(maps: Maps, name: str) -> list[Tensor]:
    if isinstance(maps, Tensor):
        if maps.ndim != 3:
            raise ValueError(
                f"`{name}` must have shape (N, H, W) or be a list of (H, W) tensors, "
                f"got shape {tuple(maps.shape)}."
            )
        return list(maps.detach().unbind(0))
    out = list(maps)
    for i, m in enumerate(out):
        if not isinstance(m, Tensor) or m.ndim != 2:
            shape = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"`{name}`[{i}] must be an (H, W) tensor, got {shape}.")
    return [m.detach() for m in out]


def score_dtype(maps: Sequence[Tensor]) -> torch.dtype:
    """float32 when every map is float32, else float64 (which holds every other dtype exactly)."""
    if maps and all(m.dtype == torch.float32 for m in maps):
        return torch.float32
    return torch.float64


def flatten(maps: Sequence[Tensor], masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Concatenates per-image maps and masks into 1-D (scores, bool labels)."""
    if not maps:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.bool)
    dtype = score_dtype(maps)
    scores = torch.cat([m.reshape(-1).to(dtype) for m in maps])
    labels = torch.cat([k.reshape(-1).to(device=scores.device, dtype=torch.bool) for k in masks])
    return scores, labels


def region_ids(masks: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Labels the 8-connected regions of every mask, numbering them across all images.

    Returns:
        ``(ids, sizes)``: for every anomalous pixel, in the order of ``flatten``'s positives,
        its region index in ``0..R-1`` (int64, on the masks' device), and the pixel count of
        every region (int64, length R).
    """
    ids, offset = [], 0
    for mask in masks:
        # Connected components have no torch equivalent, so labelling runs on CPU numpy.
        mask_np = mask.detach().cpu().numpy().astype(bool, copy=False)
        labelled, count = ndimage.label(mask_np, structure=EIGHT_CONNECTED)
        ids.append(labelled[mask_np].astype(np.int64) - 1 + offset)
        offset += int(count)
    flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    device = masks[0].device if masks else torch.device("cpu")
    sizes = np.bincount(flat, minlength=offset).astype(np.int64)
    return torch.from_numpy(flat).to(device), torch.from_numpy(sizes).to(device)


def nan(device: torch.device | str = "cpu") -> Tensor:
    """A 0-dim float64 NaN on ``device``: the value of an undefined metric."""
    return torch.tensor(float("nan"), dtype=torch.float64, device=device)


def device_of(maps: Maps) -> torch.device:
    """The device of the first map (CPU when there is none)."""
    if isinstance(maps, Tensor):
        return maps.device
    return maps[0].device if len(maps) else torch.device("cpu")


def check_limit(fpr_limit: float) -> None:
    """Raises ValueError unless ``0 < fpr_limit <= 1``."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"`fpr_limit` must lie in (0, 1], got {fpr_limit}.")
