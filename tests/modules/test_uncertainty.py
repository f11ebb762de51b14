"""Confidence U-Net of the uncertainty-based reconstruction loss."""
from __future__ import annotations

import pytest
import torch

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.uncertainty import UncertaintyHead


def inputs(batch, h=16, w=8, channels=3, seed=0):
    return torch.rand(batch, channels, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", [(16, 8), (12, 20)])
@pytest.mark.parametrize("downsample", ["maxpool", "avgpool"])
def test_shapes_and_floor(batch, size, downsample):
    torch.manual_seed(0)
    model = UncertaintyHead(width=16, min_sigma=0.05, downsample=downsample)
    sigma = model(inputs(batch, *size))
    assert sigma.shape == (batch, 1, *size)
    assert torch.isfinite(sigma).all() and (sigma >= 0.05).all()


def test_floor_holds_for_huge_negative_logits():
    model = UncertaintyHead(in_channels=3, width=8, min_sigma=1e-3)
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.fill_(-200.0)
    sigma = model(inputs(2, channels=3))
    torch.testing.assert_close(sigma, torch.full_like(sigma, 1e-3))


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = UncertaintyHead(width=16).train()
    x = inputs(2)
    assert_all_parameters_get_gradients(model, lambda m: m(x))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = UncertaintyHead(in_channels=3, width=16, min_sigma=0.01, downsample="avgpool")
    x = inputs(2, channels=3)
    assert_save_load_round_trip(model, lambda m: m(x), tmp_path)


def test_output_depends_on_every_pixel_of_a_quarter_scale_neighbourhood():
    """Two poolings + 3x3 convs at 1/4 give a receptive field much larger than plain convs;
    a change at one pixel must move sigma 6 pixels away (7 plain 3x3 convs reach 7)."""
    torch.manual_seed(0)
    model = UncertaintyHead(width=8, downsample="avgpool").eval()
    x = inputs(1, 32, 32)
    y = x.clone()
    y[0, :, 4, 4] += 1.0
    with torch.no_grad():
        diff = (model(x) - model(y)).abs()[0, 0]
    assert diff[4, 4 + 12] > 0  # beyond the 7-pixel reach of 7 stacked full-size 3x3 convs


def test_bad_shapes_and_arguments():
    model = UncertaintyHead(width=8)
    with pytest.raises(ValueError, match=r"\(2, 6, 16, 8\)"):
        model(torch.zeros(2, 6, 16, 8))
    with pytest.raises(ValueError, match=r"\(2, 3, 18, 8\)"):
        model(torch.zeros(2, 3, 18, 8))
    with pytest.raises(ValueError):
        UncertaintyHead(min_sigma=-1.0)
    with pytest.raises(ValueError):
        UncertaintyHead(downsample="stride")
    with pytest.raises(ValueError):
        UncertaintyHead(in_channels=0)
