from __future__ import annotations

import pytest
import torch

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.texture_unet import TextureUNet


def inputs(batch=2, size=16, extra=0):
    g = torch.Generator().manual_seed(0)
    known = (torch.rand(batch, 1, size, size, generator=g) > 0.5).float()
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1, known, (torch.rand(extra, size, size, generator=g) if extra else None)


@pytest.mark.parametrize("batch,size", [(1, 16), (3, 32)])
def test_shapes_and_known_texels_are_kept(batch, size):
    net = TextureUNet(base_channels=8, depth=2, extra_channels=3)
    partial, known, extra = inputs(batch, size, 3)
    out = net(partial, known, extra)
    assert out.shape == (batch, 3, size, size) and torch.isfinite(out).all()
    torch.testing.assert_close(out * known, partial * known)


def test_gradients_and_round_trip(tmp_path):
    net = TextureUNet(base_channels=8, depth=2, paste_known=False)
    partial, known, _ = inputs()
    assert_all_parameters_get_gradients(net, lambda m: m(partial, known))
    assert_save_load_round_trip(net, lambda m: m(partial, known), tmp_path)


def test_bad_inputs():
    net = TextureUNet(base_channels=8, depth=2)
    partial, known, _ = inputs()
    with pytest.raises(ValueError, match="partial must be"):
        net(partial[:, :2], known)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(partial[..., :6], known[..., :6])
    with pytest.raises(ValueError, match="paste_known"):
        TextureUNet(in_channels=3, out_channels=4)
