"""DINAR's StyleGAN2 networks: the image -> style encoder, the style -> neural texture generator and
the image discriminator of the adversarial loss (blocks in `zoo.modules.stylegan2_layers`).

Widths follow StyleGAN2's table (rosinality's port, which DINAR uses): a feature map of side s has
`min(base * m, max)` channels for s <= 32 and `base * m * 64 / s` for s >= 64, with m the channel
multiplier (2 in DINAR's configs/eval.yaml) and base 128. `base_channels` and `max_channels` only
exist so that tests can build tiny networks; at their defaults the parameter tensors are DINAR's.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from zoo.modules.stylegan2_layers import ConstantInput, ConvLayer, EqualLinear, ResBlock, StyledConv, ToRGB
from zoo.pretrained import PretrainedMixin


def stylegan2_width(size: int, channel_multiplier: int, base_channels: int = 128, max_channels: int = 512) -> int:
    """Channels of a feature map of side `size` (StyleGAN2's table, see the module docstring)."""
    if size <= 32:
        return min(base_channels * channel_multiplier, max_channels)
    return max(1, base_channels * channel_multiplier * 64 // size)


def _log2_side(size: int, name: str) -> int:
    if size < 8 or size & (size - 1):
        raise ValueError(f"{name} must be a power of two >= 8, got {size}")
    return int(math.log2(size))


def _check_widths(channel_multiplier: int, base_channels: int, max_channels: int) -> None:
    if min(channel_multiplier, base_channels, max_channels) < 1:
        raise ValueError(f"channel_multiplier={channel_multiplier}, base_channels={base_channels}, "
                         f"max_channels={max_channels} must all be >= 1")


class _ResidualTrunk(nn.Module):
    """StyleGAN2 discriminator body: from-RGB conv, one downsampling ResBlock per octave down to
    4x4, a 3x3 conv and two equalised linear layers to `out_dim`."""

    def __init__(self, image_size: int, in_channels: int, out_dim: int, channel_multiplier: int,
                 base_channels: int, max_channels: int, first_kernel: int, lr_mul: float,
                 blur_taps: Sequence[float]):
        super().__init__()
        log_size = _log2_side(image_size, "image_size")
        width = lambda s: stylegan2_width(s, channel_multiplier, base_channels, max_channels)  # noqa: E731
        layers: list[nn.Module] = [ConvLayer(in_channels, width(image_size), first_kernel, lr_mul=lr_mul,
                                             blur_taps=blur_taps)]
        for i in range(log_size, 2, -1):
            layers.append(ResBlock(width(2 ** i), width(2 ** (i - 1)), blur_taps=blur_taps, lr_mul=lr_mul))
        self.convs = nn.Sequential(*layers)
        c4 = width(4)
        self.final_conv = ConvLayer(c4, c4, 3, lr_mul=lr_mul, blur_taps=blur_taps)
        self.final_linear = nn.Sequential(EqualLinear(c4 * 16, c4, lr_mul=lr_mul, activation=True),
                                          EqualLinear(c4, out_dim, lr_mul=lr_mul))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.final_conv(self.convs(x))
        return self.final_linear(out.flatten(1))


class StyleEncoder(PretrainedMixin, nn.Module):
    """Image + person mask (+ a noise channel) -> one style vector (DINAR's `Encoder`).

    A StyleGAN2 discriminator body whose every layer trains 100x slower (lr_mul 0.01), so the
    style it feeds the generator moves gently.

    Args:
        image_size: side of the square input (512 in DINAR). Power of two >= 8.
        image_channels: channels of the image (3 RGB in [-1, 1]).
        mask_channels: channels of the person mask (1).
        noise_channel: append one N(0, 1) channel (DINAR does); pass `noise` to forward to fix it.
        style_dim: length of the output style (512).
        channel_multiplier: StyleGAN2 width multiplier (2 in DINAR's configs/eval.yaml).
        base_channels: width unit of the StyleGAN2 table (128; smaller only for tests).
        max_channels: width cap at 32 px and below (512).
        first_kernel: kernel of the first conv (1, StyleGAN2's fromRGB).
        lr_mul: learning-rate multiplier of every layer (0.01 in DINAR).
        blur_taps: 1-D FIR taps of the down-sampling filter ([1, 3, 3, 1]).
    """

    def __init__(self, image_size: int = 512, image_channels: int = 3, mask_channels: int = 1, noise_channel: bool = True,
                 style_dim: int = 512, channel_multiplier: int = 2, base_channels: int = 128, max_channels: int = 512,
                 first_kernel: int = 1, lr_mul: float = 0.01, blur_taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        _check_widths(channel_multiplier, base_channels, max_channels)
        if image_channels < 1 or mask_channels < 0 or style_dim < 1:
            raise ValueError(f"image_channels={image_channels} (>= 1), mask_channels={mask_channels} (>= 0), "
                             f"style_dim={style_dim} (>= 1) out of range")
        self.image_size, self.image_channels, self.mask_channels = image_size, image_channels, mask_channels
        self.noise_channel, self.style_dim = noise_channel, style_dim
        in_channels = image_channels + mask_channels + int(noise_channel)
        self.trunk = _ResidualTrunk(image_size, in_channels, style_dim, channel_multiplier, base_channels,
                                    max_channels, first_kernel, lr_mul, blur_taps)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, style_dim) style of image (B, C, S, S) in [-1, 1] and mask (B, M, S, S) in [0, 1]."""
        size = self.image_size
        if image.ndim != 4 or image.shape[1] != self.image_channels or tuple(image.shape[-2:]) != (size, size):
            raise ValueError(f"image must be (B, {self.image_channels}, {size}, {size}), got {tuple(image.shape)}")
        parts = [image]
        if self.mask_channels:
            if mask is None or tuple(mask.shape) != (image.shape[0], self.mask_channels, size, size):
                got = None if mask is None else tuple(mask.shape)
                raise ValueError(f"mask must be (B, {self.mask_channels}, {size}, {size}), got {got}")
            parts.append(mask.to(image.dtype))
        if self.noise_channel:
            if noise is None:
                noise = torch.randn_like(image[:, :1])
            elif tuple(noise.shape) != (image.shape[0], 1, size, size):
                raise ValueError(f"noise must be (B, 1, {size}, {size}), got {tuple(noise.shape)}")
            parts.append(noise)
        return self.trunk(torch.cat(parts, dim=1))


class StyleGAN2Discriminator(PretrainedMixin, nn.Module):
    """StyleGAN2 ResNet discriminator: one realness logit per image (DINAR's adversarial loss).

    Args:
        image_size: side of the square input (512 in DINAR's finetune config). Power of two >= 8.
        in_channels: channels of the judged image (3).
        channel_multiplier: StyleGAN2 width multiplier (2 in DINAR's configs/finetune_avatar.yaml).
        base_channels: width unit of the StyleGAN2 table (128; smaller only for tests).
        max_channels: width cap at 32 px and below (512).
        first_kernel: kernel of the fromRGB conv (1).
        blur_taps: 1-D FIR taps of the down-sampling filter ([1, 3, 3, 1]).
    """

    def __init__(self, image_size: int = 512, in_channels: int = 3, channel_multiplier: int = 2,
                 base_channels: int = 128, max_channels: int = 512, first_kernel: int = 1,
                 blur_taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        _check_widths(channel_multiplier, base_channels, max_channels)
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.image_size, self.in_channels = image_size, in_channels
        self.trunk = _ResidualTrunk(image_size, in_channels, 1, channel_multiplier, base_channels, max_channels,
                                    first_kernel, 1.0, blur_taps)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1) logits for image (B, in_channels, S, S)."""
        size = self.image_size
        if image.ndim != 4 or image.shape[1] != self.in_channels or tuple(image.shape[-2:]) != (size, size):
            raise ValueError(f"image must be (B, {self.in_channels}, {size}, {size}), got {tuple(image.shape)}")
        return self.trunk(image)


class TextureGenerator(PretrainedMixin, nn.Module):
    """StyleGAN2 synthesis network: a learned 4x4 constant -> a (out_channels, T, T) neural texture.

    Two styled 3x3 convs per octave (the first upsamples 2x), each octave's ToRGB-style 1x1 output
    added to the upsampled sum of the coarser ones (skip architecture). One style drives every
    layer (DINAR has no mapping network: the encoder gives the style directly).

    Noise: each layer adds noise times a learned scale. `noise_mode="random"` draws fresh noise,
    "const" uses the fixed buffers stored with the weights (reproducible avatars), "none" adds none.
    The default (None) is "random" in training mode and "const" in eval mode.

    Args:
        texture_size: side of the output texture (256 in DINAR). Power of two >= 8.
        out_channels: texture channels (16 generated channels in DINAR).
        style_dim: length of the input style (512).
        channel_multiplier: StyleGAN2 width multiplier (2 in DINAR's configs/eval.yaml).
        base_channels: width unit of the StyleGAN2 table (128; smaller only for tests).
        max_channels: width cap at 32 px and below (512).
        blur_taps: 1-D FIR taps of the up-sampling filter ([1, 3, 3, 1]).
    """

    NOISE_MODES = ("random", "const", "none")

    def __init__(self, texture_size: int = 256, out_channels: int = 16, style_dim: int = 512, channel_multiplier: int = 2,
                 base_channels: int = 128, max_channels: int = 512, blur_taps: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        _check_widths(channel_multiplier, base_channels, max_channels)
        if out_channels < 1 or style_dim < 1:
            raise ValueError(f"out_channels={out_channels} and style_dim={style_dim} must be >= 1")
        self.log_size = _log2_side(texture_size, "texture_size")
        self.texture_size, self.out_channels, self.style_dim = texture_size, out_channels, style_dim
        width = lambda s: stylegan2_width(s, channel_multiplier, base_channels, max_channels)  # noqa: E731
        c4 = width(4)
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, style_dim, blur_taps=blur_taps)
        self.to_rgb1 = ToRGB(c4, style_dim, out_channels, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        in_ch = c4
        for i in range(3, self.log_size + 1):
            out_ch = width(2 ** i)
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_taps=blur_taps))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_taps=blur_taps))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, out_channels, blur_taps=blur_taps))
            in_ch = out_ch
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.noises = nn.Module()
        for i in range(self.num_layers):
            side = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, side, side))

    def forward(self, style: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        """(B, out_channels, T, T) texture of style (B, style_dim)."""
        if style.ndim != 2 or style.shape[1] != self.style_dim:
            raise ValueError(f"style must be (B, {self.style_dim}), got {tuple(style.shape)}")
        mode = noise_mode or ("random" if self.training else "const")
        if mode not in self.NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {self.NOISE_MODES} or None, got {noise_mode!r}")
        if mode == "random":
            noise = [None] * self.num_layers
        else:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
            if mode == "none":
                noise = [torch.zeros_like(n) for n in noise]
        out = self.conv1(self.input(style.shape[0]), style, noise[0])
        skip = self.to_rgb1(out, style)
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, style, noise[2 * k + 1])
            out = self.convs[2 * k + 1](out, style, noise[2 * k + 2])
            skip = to_rgb(out, style, skip)
        return skip
