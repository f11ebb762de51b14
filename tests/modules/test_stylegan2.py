"""StyleGAN2 blocks and DINAR's encoder / generator / discriminator."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import signal

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.stylegan2 import StyleEncoder, StyleGAN2Discriminator, TextureGenerator, stylegan2_width
from zoo.modules.stylegan2_layers import ModulatedConv2d, make_kernel, upfirdn2d

TINY = dict(base_channels=4, channel_multiplier=1, max_channels=8)


def _reference_upfirdn(x: np.ndarray, k: np.ndarray, up: int, down: int, p0: int, p1: int) -> np.ndarray:
    """float64 definition: zero-insert, pad (negative crops), full 2-D convolution (scipy), subsample."""
    out = []
    for plane in x.reshape(-1, *x.shape[-2:]):
        u = np.zeros((plane.shape[0] * up, plane.shape[1] * up))
        u[::up, ::up] = plane
        u = np.pad(u, ((max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
        u = u[max(-p0, 0): u.shape[0] - max(-p1, 0), max(-p0, 0): u.shape[1] - max(-p1, 0)]
        out.append(signal.convolve2d(u, k, mode="valid")[::down, ::down])
    return np.stack(out).reshape(*x.shape[:2], *out[0].shape)


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (0, -1)),
                                         (3, 1, (1, 1))])
def test_upfirdn2d_matches_float64_definition(up, down, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    k = torch.randn(4, 3, generator=g, dtype=torch.float64)  # asymmetric: catches a missing flip
    ours = upfirdn2d(x, k, up=up, down=down, pad=pad).numpy()
    ref = _reference_upfirdn(x.numpy(), k.numpy(), up, down, *pad)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_upfirdn2d_matches_scipy_upfirdn_separable():
    """A separable kernel along each axis is scipy.signal.upfirdn (full convolution, no trailing zeros)."""
    taps = np.array([1.0, 3.0, 3.0, 1.0])
    h = taps / taps.sum()
    x = np.random.default_rng(1).standard_normal((6, 5))
    up, kh = 2, len(h)
    ref = signal.upfirdn(h, signal.upfirdn(h, x, up=up, axis=0), up=up, axis=1)
    ours = upfirdn2d(torch.from_numpy(x)[None, None], torch.from_numpy(np.outer(h, h)), up=up,
                     pad=(kh - 1, kh - up))[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_modulated_conv_matches_per_sample_conv_float64():
    torch.manual_seed(0)
    conv = ModulatedConv2d(3, 4, 3, style_dim=5).double()
    x, style = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    out = conv(x, style)
    for b in range(2):
        s = style[b] @ (conv.modulation.weight * conv.modulation.scale).T + conv.modulation.bias
        w = conv.weight[0] * conv.scale * s[None, :, None, None]
        w = w / torch.sqrt((w ** 2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        torch.testing.assert_close(out[b], torch.nn.functional.conv2d(x[b:b + 1], w, padding=1)[0])


def test_upsampling_modulated_conv_doubles_side():
    conv = ModulatedConv2d(3, 4, 3, style_dim=5, upsample=True)
    assert conv(torch.randn(2, 3, 6, 6), torch.randn(2, 5)).shape == (2, 4, 12, 12)


def test_make_kernel_sums_to_one():
    assert float(make_kernel([1, 3, 3, 1]).sum()) == pytest.approx(1.0)


def test_widths_follow_stylegan2_table():
    assert [stylegan2_width(s, 2) for s in (4, 32, 64, 128, 256, 512)] == [256, 256, 256, 128, 64, 32]


@pytest.mark.parametrize("batch", [1, 3])
def test_encoder_shapes_gradients_save_load(batch, tmp_path):
    enc = StyleEncoder(image_size=16, style_dim=8, **TINY)
    image, mask, noise = torch.randn(batch, 3, 16, 16), torch.rand(batch, 1, 16, 16), torch.randn(batch, 1, 16, 16)
    run = lambda m: m(image, mask, noise)  # noqa: E731
    assert run(enc).shape == (batch, 8)
    assert_all_parameters_get_gradients(enc, run)
    assert_save_load_round_trip(enc, run, tmp_path)


def test_encoder_rejects_bad_inputs():
    enc = StyleEncoder(image_size=16, style_dim=8, **TINY)
    with pytest.raises(ValueError, match="image must be"):
        enc(torch.randn(1, 3, 8, 8), torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="mask must be"):
        enc(torch.randn(1, 3, 16, 16), None)
    with pytest.raises(ValueError, match="image_size"):
        StyleEncoder(image_size=24)


@pytest.mark.parametrize("batch", [1, 2])
def test_generator_shapes_gradients_save_load(batch, tmp_path):
    gen = TextureGenerator(texture_size=16, out_channels=5, style_dim=8, **TINY)
    style = torch.randn(batch, 8)
    assert gen(style).shape == (batch, 5, 16, 16)
    assert_all_parameters_get_gradients(gen.train(), lambda m: m(style, noise_mode="random"))
    assert_save_load_round_trip(gen, lambda m: m(style), tmp_path)  # eval: the stored constant noise


def test_generator_noise_modes():
    gen = TextureGenerator(texture_size=8, out_channels=2, style_dim=4, **TINY).eval()
    for layer in gen.convs:
        layer.noise.weight.data.fill_(1.0)
    style = torch.randn(1, 4)
    torch.testing.assert_close(gen(style), gen(style, noise_mode="const"))
    assert not torch.allclose(gen(style, noise_mode="random"), gen(style, noise_mode="random"))
    with pytest.raises(ValueError, match="noise_mode"):
        gen(style, noise_mode="fixed")


@pytest.mark.parametrize("batch", [1, 2])
def test_discriminator_shapes_gradients_save_load(batch, tmp_path):
    disc = StyleGAN2Discriminator(image_size=16, **TINY)
    image = torch.randn(batch, 3, 16, 16)
    assert disc(image).shape == (batch, 1)
    assert_all_parameters_get_gradients(disc, lambda m: m(image))
    assert_save_load_round_trip(disc, lambda m: m(image), tmp_path)
