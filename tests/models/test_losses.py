"""The confidence-weighted loss against values computed by hand from its definition
(docs/method.md, section 6)."""

from __future__ import annotations

import math

import pytest
import torch

from anomalyvfm.losses import AnomalyVFMLoss, LossConfig, resize_mask


def focal_by_hand(logit: float, y: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    p = 1 / (1 + math.exp(-logit))
    bce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
    p_t = p if y == 1 else 1 - p
    a_t = alpha if y == 1 else 1 - alpha
    return a_t * (1 - p_t) ** gamma * bce


def base_by_hand(m: float, y: float, lo: float, hi: float) -> float:
    p = min(max(1 / (1 + math.exp(-m)), lo), hi)
    return 5 * focal_by_hand(m, y) + abs(p - y)


def one_pixel(m: float, c: float, y: float, img_logit: float, label: float, cfg: LossConfig):
    loss = AnomalyVFMLoss(cfg)
    t = lambda v: torch.tensor([[[[v]]]], dtype=torch.float64)  # noqa: E731
    return loss(t(m), t(c), torch.tensor([img_logit]), t(y)[:, 0], torch.tensor([label]))


def test_single_pixel_matches_hand_computation() -> None:
    # m = 0, y = 1: focal = 0.25 * 0.5^2 * ln 2, L1 = |0.5 - 1|; c = 0 -> C = 2.
    out = one_pixel(0.0, 0.0, 1.0, 0.0, 0.0, LossConfig())
    l_base = 5 * 0.25 * 0.25 * math.log(2) + 0.5
    pixel = 2 * l_base - 0.1 * math.log(2)
    image = 0.75 * 0.25 * math.log(2)
    assert out.pixel.item() == pytest.approx(pixel, abs=1e-6)
    assert out.image.item() == pytest.approx(image, abs=1e-6)
    assert out.loss.item() == pytest.approx(pixel + image, abs=1e-6)


@pytest.mark.parametrize(("m", "c", "y"), [(2.3, -1.2, 0.0), (-0.7, 0.4, 1.0), (9.0, 3.0, 1.0)])
@pytest.mark.parametrize(("lo", "hi"), [(0.1, 0.9), (0.0, 1.0)])
def test_pixel_loss_with_and_without_clip(m: float, c: float, y: float, lo: float, hi: float):
    out = one_pixel(m, c, y, 0.3, 1.0, LossConfig(clip_low=lo, clip_high=hi))
    conf = 1 + math.exp(c)
    expected = conf * base_by_hand(m, y, lo, hi) - 0.1 * math.log(conf)
    assert out.pixel.item() == pytest.approx(expected, rel=1e-6)
    assert out.image.item() == pytest.approx(focal_by_hand(0.3, 1.0), rel=1e-6)


def test_clip_bounds_the_l1_term() -> None:
    # A confident correct pixel still pays 0.1 with the reference clip, ~0 without it.
    clipped = one_pixel(12.0, -30.0, 1.0, 0.0, 0.0, LossConfig(confidence=False))
    free = one_pixel(
        12.0, -30.0, 1.0, 0.0, 0.0, LossConfig(clip_low=0, clip_high=1, confidence=False)
    )
    assert clipped.pixel.item() == pytest.approx(0.1 + 5 * focal_by_hand(12.0, 1.0), rel=1e-6)
    # fp32 (the loss always computes in fp32) resolves 1 - sigmoid(12) to ~1e-7 absolute.
    expected_free = 1 / (1 + math.exp(12)) + 5 * focal_by_hand(12, 1)
    assert free.pixel.item() == pytest.approx(expected_free, abs=2e-7)


def test_confidence_off_is_plain_mean() -> None:
    torch.manual_seed(0)
    m, c = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    y = (torch.rand(2, 4, 4) > 0.5).float()
    loss = AnomalyVFMLoss(LossConfig(confidence=False))
    out = loss(m, c, torch.zeros(2), y, torch.tensor([0, 1]))
    assert out.pixel.item() == pytest.approx(loss.pixel_base(m, y[:, None]).mean().item(), rel=1e-6)


@pytest.mark.parametrize(("l_base", "expected_c"), [(0.02, 5.0), (0.05, 2.0), (0.5, 1.0)])
def test_confidence_optimum_is_max_1_a_over_l(l_base: float, expected_c: float) -> None:
    # For fixed L_base the objective C * L - a log C is minimised at C = max(1, a / L).
    c = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([c], lr=0.05)
    for _ in range(3000):
        conf = 1 + torch.exp(c)
        obj = conf * l_base - 0.1 * torch.log(conf)
        opt.zero_grad()
        obj.backward()
        opt.step()
    assert (1 + torch.exp(c)).item() == pytest.approx(expected_c, rel=2e-2)


def test_mask_is_resized_to_the_output_grid_and_thresholded() -> None:
    mask = torch.zeros(1, 8, 8)
    mask[0, :4, :4] = 1  # top-left quarter
    small = resize_mask(mask, (2, 2))
    assert small.tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]
    assert set(resize_mask(torch.rand(1, 16, 16), (5, 5)).unique().tolist()) <= {0.0, 1.0}


def test_large_confidence_logits_stay_finite() -> None:
    out = one_pixel(0.0, 80.0, 1.0, 0.0, 0.0, LossConfig())
    assert math.isfinite(out.loss.item())
