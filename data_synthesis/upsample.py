"""Per-pixel cosine of two feature maps as if bilinearly upsampled, without upsampling them.

Used by :class:`data_synthesis.filter.FeatureDistanceFilter`; torch is imported inside the
functions so that importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def upsampled_cosine(fa: torch.Tensor, fb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel cosine of two (C, h, w) maps bilinearly upsampled to ``size`` (H, W).

    Equals ``F.interpolate`` of both maps followed by a per-pixel cosine, without building the
    C x H x W upsampled maps (4 GiB per image for ViT-L at 1024 px): each pixel mixes the 2 x 2
    patches at (i0 + di, j0 + dj) with weights wr[di] * wc[dj], so its dot product is a weighted
    sum of the 16 dot products between those patches, computed once on the patch grid.
    """
    import torch

    r0, rw = _taps(size[0], fa.shape[1], fa.device)
    c0, cw = _taps(size[1], fa.shape[2], fa.device)
    ra, ca = _shifts(fa), _shifts(fb)

    def form(
        us: dict[tuple[int, int], torch.Tensor], vs: dict[tuple[int, int], torch.Tensor]
    ) -> torch.Tensor:
        # Columns first on the (h, W) grid, then rows: only 4 full-size products per form.
        cols = {
            (ia, ib): torch.zeros(fa.shape[1], size[1], device=fa.device)
            for ia in (0, 1)
            for ib in (0, 1)
        }
        for (ia, ja), u in us.items():
            for (ib, jb), v in vs.items():
                cols[ia, ib] += (cw[ja] * cw[jb]) * (u * v).sum(0)[:, c0]
        out = torch.zeros(size, device=fa.device)
        for (ia, ib), col in cols.items():
            out += (rw[ia] * rw[ib])[:, None] * col[r0]
        return out

    norms = form(ra, ra).clamp_min(0).sqrt().clamp_min(1e-8)
    norms = norms * form(ca, ca).clamp_min(0).sqrt().clamp_min(1e-8)
    return form(ra, ca) / norms


def _shifts(f: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
    """``f`` shifted by one patch down and/or right, clamped at the border like ``_taps``."""
    import torch

    down = torch.arange(1, f.shape[1] + 1, device=f.device).clamp_max(f.shape[1] - 1)
    right = torch.arange(1, f.shape[2] + 1, device=f.device).clamp_max(f.shape[2] - 1)
    return {(0, 0): f, (1, 0): f[:, down], (0, 1): f[:, :, right], (1, 1): f[:, down][:, :, right]}


def _taps(n_out: int, n_in: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """First neighbour index and the weights (1 - t, t) of bilinear resizing (corners unaligned)."""
    import torch

    src = (torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * (n_in / n_out) - 0.5
    src = src.clamp_min(0.0)
    i0 = src.floor().clamp_max(n_in - 1)
    t = src - i0
    return i0.long(), torch.stack([1 - t, t])
