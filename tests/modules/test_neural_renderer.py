"""DINAR's neural renderer and the composite avatar network."""
from __future__ import annotations

import pytest
import torch

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.dinar import DinarAvatarNet
from zoo.modules.neural_renderer import NeuralRenderer
from zoo.modules.stylegan2 import StyleEncoder, TextureGenerator

TINY_RENDERER = dict(uv_features=2, mask_features=2, base_channels=4, n_downsampling=2, n_blocks=1, features=4)
TINY_SG2 = dict(base_channels=4, channel_multiplier=1, max_channels=8)


def _scene(batch: int, side: int = 16):
    g = torch.Generator().manual_seed(batch)
    uv = torch.rand(batch, side, side, 2, generator=g) * 2 - 1
    uv_mask = torch.zeros(batch, 1, side, side)
    uv_mask[:, :, 3:13, 5:11] = 1.0  # a body in the middle; the mask head must also draw outside it
    uv = torch.where(uv_mask.permute(0, 2, 3, 1) > 0, uv, torch.full_like(uv, -2.0))
    return uv, uv_mask


@pytest.mark.parametrize("batch", [2, 3])
def test_renderer_shapes_gradients_save_load(batch, tmp_path):
    renderer = NeuralRenderer(texture_channels=6, **TINY_RENDERER)
    texture = torch.randn(batch, 6, 8, 8)
    uv, uv_mask = _scene(batch)
    run = lambda m: m(texture, uv, uv_mask, background=1.0)  # noqa: E731
    out = run(renderer)
    assert out["rgb"].shape == (batch, 3, 16, 16) and out["mask"].shape == (batch, 1, 16, 16)
    assert_all_parameters_get_gradients(renderer, run)
    assert_save_load_round_trip(renderer, run, tmp_path)


def test_renderer_hard_mask_and_composite():
    renderer = NeuralRenderer(texture_channels=3, **TINY_RENDERER).eval()
    uv, uv_mask = _scene(1)
    with torch.no_grad():
        out = renderer(torch.randn(1, 3, 8, 8), uv, uv_mask, background=1.0)
    assert torch.all(out["mask"][uv_mask > 0] == 1.0)  # the body is always person
    m = out["mask"][:, :1]
    torch.testing.assert_close(out["rgb"], out["foreground"] * m + (1 - m) * 1.0)


def test_renderer_rejects_bad_inputs():
    renderer = NeuralRenderer(texture_channels=3, **TINY_RENDERER)
    uv, uv_mask = _scene(1)
    with pytest.raises(ValueError, match="texture must be"):
        renderer(torch.randn(1, 4, 8, 8), uv, uv_mask)
    with pytest.raises(ValueError, match="multiples of 4"):
        renderer(torch.randn(1, 3, 8, 8), uv[:, :14, :14], uv_mask[..., :14, :14])
    with pytest.raises(ValueError, match="norm"):
        NeuralRenderer(norm="group")


def _net(use_rgb: bool = True, neural: bool = True) -> DinarAvatarNet:
    channels = (4 if neural else 0) + (5 if use_rgb else 0)
    parts = {}
    if neural:
        parts["encoder"] = StyleEncoder(image_size=16, style_dim=8, **TINY_SG2)
        parts["generator"] = TextureGenerator(texture_size=8, out_channels=4, style_dim=8, **TINY_SG2)
    return DinarAvatarNet(renderer=NeuralRenderer(texture_channels=channels, **TINY_RENDERER), use_rgb_channels=use_rgb,
                          **parts)


@pytest.mark.parametrize("use_rgb,neural", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("batch", [2, 3])
def test_avatar_net_rows_shapes_gradients_save_load(use_rgb, neural, batch, tmp_path):
    net = _net(use_rgb, neural)
    image, mask, noise = torch.randn(batch, 3, 16, 16), torch.rand(batch, 1, 16, 16), torch.randn(batch, 1, 16, 16)
    rgb_channels = torch.randn(batch, 5, 8, 8)
    uv, uv_mask = _scene(batch)
    run = lambda m: m(image, mask, rgb_channels, uv, uv_mask, noise=noise)  # noqa: E731
    out = run(net)
    assert out["texture"].shape == (batch, net.texture_channels, 8, 8) and out["rgb"].shape == (batch, 3, 16, 16)
    assert_all_parameters_get_gradients(net, run)
    loaded = assert_save_load_round_trip(net, run, tmp_path)
    assert loaded.config["init_args"]["renderer"]["class_path"] == "zoo.modules.neural_renderer.NeuralRenderer"


def test_avatar_net_validates_channels():
    with pytest.raises(ValueError, match="texture_channels=9"):
        DinarAvatarNet(renderer=NeuralRenderer(texture_channels=9, **TINY_RENDERER))
    with pytest.raises(ValueError, match="go together"):
        DinarAvatarNet(renderer=NeuralRenderer(**TINY_RENDERER), encoder=StyleEncoder(image_size=16, **TINY_SG2))
    with pytest.raises(TypeError, match="renderer must be a NeuralRenderer"):
        DinarAvatarNet(renderer=StyleEncoder(image_size=16, **TINY_SG2))


def test_dinar_sizes_hold_the_reference_parameter_counts():
    """At DINAR's sizes each module holds as many parameters as the tally of DINAR's own layer lists
    (benchmarks/dinar_params.py, written from SamsungLabs/DINAR's code, not from the zoo's)."""
    import importlib.util
    from pathlib import Path

    from zoo.modules.stylegan2 import StyleGAN2Discriminator

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "dinar_params.py"
    spec = importlib.util.spec_from_file_location("dinar_params", path)
    tally = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tally)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with torch.device("meta"):
        assert count(StyleEncoder()) == tally.reference_trunk(512, 5, 512)
        assert count(StyleGAN2Discriminator()) == tally.reference_trunk(512, 3, 1)
        assert count(TextureGenerator()) == tally.reference_generator(256, 16)
        assert count(NeuralRenderer()) == tally.reference_renderer(21)
        assert count(NeuralRenderer(texture_channels=3)) == tally.reference_renderer(3)


def test_full_res_skip_is_an_option_off_by_default(tmp_path):
    """Default: DINAR's layout (no extra parameters); on: a 1x1 conv of the U-Net input added to its
    output features (checked against the sum computed from the module's parts), trainable, saved."""
    plain = NeuralRenderer(texture_channels=6, **TINY_RENDERER)
    assert plain.full_res_skip is None
    skip = NeuralRenderer(texture_channels=6, full_res_skip=True, **TINY_RENDERER)
    extra = sum(p.numel() for p in skip.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == (6 + 2 + 2) * 4 + 4  # 1x1 weights (U-Net input -> features) + bias
    texture = torch.randn(2, 6, 8, 8)
    uv, uv_mask = _scene(2)
    seen = {}
    skip.model.register_forward_hook(lambda m, args, out: seen.update(unet_in=args[0], unet_out=out))
    rgb_in = {}
    skip.rgb_head.register_forward_pre_hook(lambda m, args: rgb_in.update(x=args[0]))
    skip.eval()
    with torch.no_grad():
        skip(texture, uv, uv_mask)
        expected = seen["unet_out"] + torch.nn.functional.conv2d(
            seen["unet_in"], skip.full_res_skip.weight * skip.full_res_skip.scale, skip.full_res_skip.bias)
    torch.testing.assert_close(rgb_in["x"], expected)
    run = lambda m: m(texture, uv, uv_mask, background=1.0)  # noqa: E731
    skip.train()
    assert_all_parameters_get_gradients(skip, run)
    assert_save_load_round_trip(skip, run, tmp_path)
