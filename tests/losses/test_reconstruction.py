"""Uncertainty reconstruction (eq. 6), cycle (eq. 7) and Dice losses against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.losses import (
    CycleConsistencyLoss,
    DiceLoss,
    UncertaintyReconstructionLoss,
    cycle_consistency_loss,
    dice_loss,
    uncertainty_reconstruction_loss,
)

S2 = math.sqrt(2.0)
IMAGE = torch.tensor([[[[0.5, -0.5], [0.0, 1.0]]]], dtype=torch.float64)
RENDER = torch.zeros_like(IMAGE)
SIGMA = torch.tensor([[[[1.0, 0.5], [2.0, 1e-6]]]], dtype=torch.float64)  # the last one is clamped to 0.1
# sqrt(2)|d|/sigma + log(sigma) per pixel, by hand:
PIXELS = [S2 * 0.5 / 1.0 + math.log(1.0), S2 * 0.5 / 0.5 + math.log(0.5), 0.0 + math.log(2.0),
          S2 * 1.0 / 0.1 + math.log(0.1)]


def test_uncertainty_loss_hand_values():
    mean = uncertainty_reconstruction_loss(IMAGE, RENDER, SIGMA, min_sigma=0.1)
    assert mean.item() == pytest.approx(sum(PIXELS) / 4, rel=1e-12)
    total = uncertainty_reconstruction_loss(IMAGE, RENDER, SIGMA, min_sigma=0.1, reduction="sum")
    assert total.item() == pytest.approx(sum(PIXELS), rel=1e-12)
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    masked = uncertainty_reconstruction_loss(IMAGE, RENDER, SIGMA, mask=mask, min_sigma=0.1)
    assert masked.item() == pytest.approx((PIXELS[0] + PIXELS[3]) / 2, rel=1e-12)


def test_uncertainty_loss_is_laplace_nll_up_to_a_constant():
    # Laplace with scale b = sigma / sqrt(2): -log p = log(2 b) + |x - mu| / b = eq. 6 + log(sqrt(2)).
    torch.manual_seed(0)
    image, render = torch.randn(2, 3, 4, 5, dtype=torch.float64), torch.randn(2, 3, 4, 5, dtype=torch.float64)
    sigma = torch.rand(2, 1, 4, 5, dtype=torch.float64) + 0.1
    nll = -torch.distributions.Laplace(render, sigma.expand_as(render) / S2).log_prob(image)
    ours = uncertainty_reconstruction_loss(image, render, sigma, min_sigma=1e-3)
    assert ours.item() == pytest.approx(nll.mean().item() - math.log(S2), rel=1e-10)


def test_uncertainty_loss_gradients_and_module():
    torch.manual_seed(0)
    render = torch.randn(2, 3, 4, 4, requires_grad=True)
    raw = torch.randn(2, 1, 4, 4, requires_grad=True)
    image = torch.randn(2, 3, 4, 4)
    loss = UncertaintyReconstructionLoss()(image, render, torch.nn.functional.softplus(raw))
    loss.backward()
    for t in (render, raw):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert UncertaintyReconstructionLoss().weight == 1e-3
    plain = uncertainty_reconstruction_loss(image, render.detach(), torch.nn.functional.softplus(raw.detach()))
    assert loss.item() == pytest.approx(1e-3 * plain.item(), rel=1e-6)
    zero_sigma = uncertainty_reconstruction_loss(image, render.detach(), torch.zeros(2, 1, 4, 4))
    assert torch.isfinite(zero_sigma)


def test_uncertainty_loss_rejects_bad_inputs():
    with pytest.raises(ValueError, match="sigma of shape"):
        uncertainty_reconstruction_loss(IMAGE, RENDER, torch.ones(1, 2, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="reduction"):
        uncertainty_reconstruction_loss(IMAGE, RENDER, SIGMA, reduction="none")
    with pytest.raises(ValueError, match="min_sigma"):
        UncertaintyReconstructionLoss(min_sigma=0.0)


def test_cycle_loss_hand_values():
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    b = torch.tensor([[[[0.0, 2.0], [5.0, 4.5]]]])
    # squared differences 1, 0, 4, 0.25
    assert cycle_consistency_loss(a, b).item() == pytest.approx(5.25 / 4)
    assert cycle_consistency_loss(a, b, reduction="sum").item() == pytest.approx(5.25)
    mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    assert cycle_consistency_loss(a, b, mask=mask).item() == pytest.approx(4.25 / 3)
    assert CycleConsistencyLoss()(a, b).item() == pytest.approx(0.1 * 5.25 / 4)
    empty = cycle_consistency_loss(a, b, mask=torch.zeros(2, 2))
    assert empty.item() == 0.0


def test_cycle_loss_gradients():
    torch.manual_seed(0)
    a = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(2, 3, 4, 4, requires_grad=True)
    cycle_consistency_loss(a, b, mask=torch.ones(2, 1, 4, 4)).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_dice_loss_hand_values():
    pred = torch.tensor([[[0.5, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    # sample 0: 1 - (2 * 1.5 + 1) / (1.5 + 2 + 1) = 1 - 4 / 4.5; sample 1: both empty -> 1 - 1 / 1 = 0
    assert dice_loss(pred, target).item() == pytest.approx((1 - 4 / 4.5) / 2)
    assert DiceLoss(weight=2.0)(pred, target).item() == pytest.approx(1 - 4 / 4.5)
