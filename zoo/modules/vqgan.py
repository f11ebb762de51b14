"""VQGAN autoencoder (Esser et al., "Taming Transformers") for textures of any channel count.

DINAR compresses its 21-channel 256x256 neural texture to a 6x64x64 latent with a VQGAN before
running diffusion (paper section 3.3; sizes in implementation notes section 4). Everything is an
argument so the same code serves RGB textures on CPU and DINAR's preset: the defaults, `VQGAN()`
(the one statement of DINAR's sizes; configs/inpainting/vqgan_dinar.yaml changes only the channels).

Why not diffusers' `VQModel`: its quantizer applies the commitment weight to the codebook term
(`legacy=True`, which `VQModel` does not expose), it has no dead-code restart and reports no
codebook usage, and its encoder/decoder are configured by block-type names rather than by the
resolution list DINAR is specified with. The blocks below are written from the paper's
description (GroupNorm residual blocks, single-head spatial attention, strided-conv downsampling,
nearest upsampling). DINAR's code differs from taming's VQGAN in two ways that the defaults
follow: LeakyReLU(0.01) activations instead of SiLU, and two output heads (BatchNorm, LeakyReLU,
3x3 conv) that replace the texture's RGB channels (-5:-2) and its known / gap mask channels (-2:)
(`activation`, `output_heads`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modules.quantize import VectorQuantizer
from zoo.pretrained import PretrainedMixin

ACTIVATIONS = ("leaky_relu", "silu")


def make_activation(name: str) -> nn.Module:
    """The activation named `name`: "leaky_relu" = LeakyReLU(0.01) (DINAR's VQGAN), "silu" (taming)."""
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def _check_groups(channels: int, groups: int, where: str) -> None:
    if channels % groups != 0:
        raise ValueError(f"{where}: {channels} channels are not divisible by norm_groups={groups}")


class ResnetBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, activation, conv) x 2, 1x1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int, dropout: float = 0.0,
                 activation: str = "leaky_relu"):
        super().__init__()
        self.act = make_activation(activation)
        _check_groups(in_channels, norm_groups, "ResnetBlock")
        _check_groups(out_channels, norm_groups, "ResnetBlock")
        self.norm1 = nn.GroupNorm(norm_groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = self.conv2(self.dropout(self.act(self.norm2(h))))
        return self.shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions, residual."""

    def __init__(self, channels: int, norm_groups: int):
        super().__init__()
        _check_groups(channels, norm_groups, "AttnBlock")
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv with right/bottom padding, so even sizes halve exactly."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 conv (no checkerboard artefacts of transposed convs)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _validate_sizes(base_channels: int, channel_multipliers: Sequence[int], num_res_blocks: int,
                    resolution: int, norm_groups: int) -> None:
    if base_channels < 1 or num_res_blocks < 1:
        raise ValueError(f"base_channels={base_channels} and num_res_blocks={num_res_blocks} must be >= 1")
    if len(channel_multipliers) < 1 or any(int(m) < 1 for m in channel_multipliers):
        raise ValueError(f"channel_multipliers must be a non-empty list of ints >= 1, got {channel_multipliers}")
    if resolution % 2 ** (len(channel_multipliers) - 1) != 0:
        raise ValueError(f"resolution={resolution} is not divisible by 2**{len(channel_multipliers) - 1}")
    for m in channel_multipliers:
        _check_groups(base_channels * m, norm_groups, "channel_multipliers")


def _run_blocks(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The residual blocks of an encoder / decoder level, each followed by its attention block if the
    level has them."""
    for i, block in enumerate(level.blocks):
        h = block(h)
        if len(level.attns):
            h = level.attns[i](h)
    return h


class Encoder(PretrainedMixin, nn.Module):
    """Convolutional encoder: one level per multiplier, stride-2 downsampling between levels.

    Args:
        in_channels: texture channels (3 for RGB, 21 for DINAR's neural texture).
        base_channels: width of the first level (64 in DINAR).
        channel_multipliers: width of level i is `base_channels * channel_multipliers[i]`;
            `len - 1` downsamplings ((1, 2, 4) in DINAR: 256 -> 64).
        num_res_blocks: residual blocks per level (2 in DINAR).
        attention_resolutions: nominal side lengths (px) at which levels get attention blocks;
            empty in DINAR (attention only in the middle block).
        mid_attention: attention block in the middle (True in DINAR).
        resolution: nominal input side length that `attention_resolutions` refers to (256).
        latent_channels: output channels (6 in DINAR).
        norm_groups: GroupNorm groups (16 in DINAR).
        dropout: dropout inside residual blocks (0 in taming's VQGAN).
        activation: "leaky_relu" (LeakyReLU(0.01), DINAR's code) or "silu" (taming-transformers).
    """

    def __init__(self, in_channels: int = 21, base_channels: int = 64, channel_multipliers: Sequence[int] = (1, 2, 4),
                 num_res_blocks: int = 2, attention_resolutions: Sequence[int] = (), mid_attention: bool = True,
                 resolution: int = 256, latent_channels: int = 6, norm_groups: int = 16, dropout: float = 0.0,
                 activation: str = "leaky_relu"):
        super().__init__()
        _validate_sizes(base_channels, channel_multipliers, num_res_blocks, resolution, norm_groups)
        self.act = make_activation(activation)
        self.in_channels = in_channels
        self.num_downsamplings = len(channel_multipliers) - 1
        widths = [base_channels * int(m) for m in channel_multipliers]
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.levels = nn.ModuleList()
        ch, res = base_channels, resolution
        for i, width in enumerate(widths):
            level = nn.Module()
            level.blocks = nn.ModuleList()
            level.attns = nn.ModuleList()
            for _ in range(num_res_blocks):
                level.blocks.append(ResnetBlock(ch, width, norm_groups, dropout, activation))
                ch = width
                if res in attention_resolutions:
                    level.attns.append(AttnBlock(ch, norm_groups))
            level.down = Downsample(ch) if i < len(widths) - 1 else nn.Identity()
            res = res // 2 if i < len(widths) - 1 else res
            self.levels.append(level)
        self.mid1 = ResnetBlock(ch, ch, norm_groups, dropout, activation)
        self.mid_attn = AttnBlock(ch, norm_groups) if mid_attention else nn.Identity()
        self.mid2 = ResnetBlock(ch, ch, norm_groups, dropout, activation)
        self.norm_out = nn.GroupNorm(norm_groups, ch, eps=1e-6)
        self.conv_out = nn.Conv2d(ch, latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2 ** self.num_downsamplings
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"x must be (B, {self.in_channels}, H, W) with H, W divisible by {factor}, "
                             f"got {tuple(x.shape)}")
        h = self.conv_in(x)
        for level in self.levels:
            h = level.down(_run_blocks(level, h))
        h = self.mid2(self.mid_attn(self.mid1(h)))
        return self.conv_out(self.act(self.norm_out(h)))


class OutputHead(nn.Sequential):
    """BatchNorm, activation, 3x3 conv on a few channels of the decoder output (DINAR's heads)."""

    def __init__(self, channels: int, activation: str):
        super().__init__(nn.BatchNorm2d(channels), make_activation(activation), nn.Conv2d(channels, channels, 3, padding=1))


class Decoder(PretrainedMixin, nn.Module):
    """Mirror of `Encoder`: `num_res_blocks + 1` residual blocks per level, nearest upsampling.

    Args: as `Encoder`, with `out_channels` (texture channels produced) in place of `in_channels`
    and `latent_channels` the input width, and
        output_heads: DINAR's two heads (BatchNorm, activation, 3x3 conv) that replace output
            channels -5:-2 (the neural texture's sampled RGB) and -2: (its known-texel and
            gap-fill masks); needs out_channels >= 5. False for textures without those channels.
    """

    def __init__(self, out_channels: int = 21, base_channels: int = 64, channel_multipliers: Sequence[int] = (1, 2, 4),
                 num_res_blocks: int = 2, attention_resolutions: Sequence[int] = (), mid_attention: bool = True,
                 resolution: int = 256, latent_channels: int = 6, norm_groups: int = 16, dropout: float = 0.0,
                 activation: str = "leaky_relu", output_heads: bool = True):
        super().__init__()
        _validate_sizes(base_channels, channel_multipliers, num_res_blocks, resolution, norm_groups)
        if output_heads and out_channels < 5:
            raise ValueError(f"output_heads needs out_channels >= 5 (RGB at -5:-2, masks at -2:), got {out_channels}")
        self.act = make_activation(activation)
        self.rgb_head = OutputHead(3, activation) if output_heads else None
        self.mask_head = OutputHead(2, activation) if output_heads else None
        self.latent_channels = latent_channels
        widths = [base_channels * int(m) for m in channel_multipliers]
        ch = widths[-1]
        res = resolution // 2 ** (len(widths) - 1)
        self.conv_in = nn.Conv2d(latent_channels, ch, 3, padding=1)
        self.mid1 = ResnetBlock(ch, ch, norm_groups, dropout, activation)
        self.mid_attn = AttnBlock(ch, norm_groups) if mid_attention else nn.Identity()
        self.mid2 = ResnetBlock(ch, ch, norm_groups, dropout, activation)
        self.levels = nn.ModuleList()  # coarse to fine
        for i in reversed(range(len(widths))):
            level = nn.Module()
            level.blocks = nn.ModuleList()
            level.attns = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.blocks.append(ResnetBlock(ch, widths[i], norm_groups, dropout, activation))
                ch = widths[i]
                if res in attention_resolutions:
                    level.attns.append(AttnBlock(ch, norm_groups))
            level.up = Upsample(ch) if i > 0 else nn.Identity()
            res = res * 2 if i > 0 else res
            self.levels.append(level)
        self.norm_out = nn.GroupNorm(norm_groups, ch, eps=1e-6)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"z must be (B, {self.latent_channels}, h, w), got {tuple(z.shape)}")
        h = self.mid2(self.mid_attn(self.mid1(self.conv_in(z))))
        for level in self.levels:
            h = level.up(_run_blocks(level, h))
        h = self.conv_out(self.act(self.norm_out(h)))
        if self.rgb_head is None:
            return h
        return torch.cat([h[:, :-5], self.rgb_head(h[:, -5:-2]), self.mask_head(h[:, -2:])], dim=1)


@dataclass
class VQGANOutput:
    """`reconstruction` (B, C, H, W); `latents`: pre-quantisation latents (B, code_dim, h, w);
    the rest as `QuantizerOutput` (`quantizer_loss` = codebook + beta * commitment)."""

    reconstruction: torch.Tensor
    latents: torch.Tensor
    indices: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    quantizer_loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


class VQGAN(PretrainedMixin, nn.Module):
    """Encoder -> 1x1 conv -> vector quantiser -> 1x1 conv -> decoder.

    The defaults are DINAR's VQGAN (implementation notes section 4: 21 x 256 x 256 -> 6 x 64 x 64,
    8192 codes), so `VQGAN()` is that preset; tests/modules/test_vqgan.py checks them against the notes.

    Args:
        in_channels: texture channels (21 in DINAR; 3 for RGB textures).
        out_channels: reconstructed channels; None means `in_channels`.
        base_channels: width of the first level (64).
        channel_multipliers: per-level width multipliers; `len - 1` halvings ((1, 2, 4): /4).
        num_res_blocks: residual blocks per level (2; the decoder uses one more, as taming).
        attention_resolutions: nominal side lengths (px) of levels with attention ([] in DINAR).
        mid_attention: attention in the middle blocks (True in DINAR).
        resolution: nominal texture side length (256) that `attention_resolutions` refers to;
            any input whose sides divide by the downsampling factor is accepted.
        latent_channels: encoder output / decoder input width (6).
        num_codes: codebook size (8192).
        code_dim: code vector length, the channels of the diffusion latent (6).
        beta: commitment weight (0.25).
        norm_groups: GroupNorm groups (16).
        dropout: residual-block dropout (0).
        activation: "leaky_relu" (LeakyReLU(0.01), DINAR's code) or "silu" (taming-transformers).
        output_heads: DINAR's decoder heads on output channels -5:-2 (RGB) and -2: (known and
            gap masks); needs out_channels >= 5 (see `zoo.render.texture_with_masks`). False only for
            textures without mask channels.
    """

    def __init__(self, in_channels: int = 21, out_channels: int | None = None, base_channels: int = 64,
                 channel_multipliers: Sequence[int] = (1, 2, 4), num_res_blocks: int = 2,
                 attention_resolutions: Sequence[int] = (), mid_attention: bool = True, resolution: int = 256,
                 latent_channels: int = 6, num_codes: int = 8192, code_dim: int = 6, beta: float = 0.25,
                 norm_groups: int = 16, dropout: float = 0.0, activation: str = "leaky_relu",
                 output_heads: bool = True):
        super().__init__()
        if in_channels < 1 or (out_channels is not None and out_channels < 1):
            raise ValueError(f"in_channels={in_channels} and out_channels={out_channels} must be >= 1")
        shared = dict(base_channels=base_channels, channel_multipliers=list(channel_multipliers),
                      num_res_blocks=num_res_blocks, attention_resolutions=list(attention_resolutions),
                      mid_attention=mid_attention, resolution=resolution, latent_channels=latent_channels,
                      norm_groups=norm_groups, dropout=dropout, activation=activation)
        self.in_channels = in_channels
        self.out_channels = in_channels if out_channels is None else out_channels
        self.downsampling = 2 ** (len(channel_multipliers) - 1)
        self.encoder = Encoder(in_channels=in_channels, **shared)
        self.quant_conv = nn.Conv2d(latent_channels, code_dim, 1)
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta)
        self.post_quant_conv = nn.Conv2d(code_dim, latent_channels, 1)
        self.decoder = Decoder(out_channels=self.out_channels, output_heads=output_heads, **shared)

    @property
    def code_dim(self) -> int:
        return self.quantizer.code_dim

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last conv on the RGB channels (where GAN losses measure gradient
        norms): the RGB head's conv when the decoder has heads."""
        if self.decoder.rgb_head is not None:
            return self.decoder.rgb_head[-1].weight
        return self.decoder.conv_out.weight

    def encode(self, x: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """Latents (B, code_dim, H/f, W/f): quantised (straight-through) or pre-quantisation."""
        z = self.quant_conv(self.encoder(x))
        return self.quantizer(z).z_q if quantize else z

    def decode(self, z: torch.Tensor, quantize: bool = False) -> torch.Tensor:
        """Texture from code-space latents; `quantize=True` snaps them to the codebook first
        (what a diffusion model's samples need, as in latent diffusion)."""
        if z.ndim != 4 or z.shape[1] != self.code_dim:
            raise ValueError(f"z must be (B, {self.code_dim}, h, w), got {tuple(z.shape)}")
        if quantize:
            z = self.quantizer(z).z_q
        return self.decoder(self.post_quant_conv(z))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Texture from code indices (B, h, w)."""
        return self.decode(self.quantizer.codes(indices))

    def forward(self, x: torch.Tensor) -> VQGANOutput:
        z = self.quant_conv(self.encoder(x))
        q = self.quantizer(z)
        rec = self.decoder(self.post_quant_conv(q.z_q))
        return VQGANOutput(rec, z, q.indices, q.codebook_loss, q.commitment_loss, q.loss, q.perplexity, q.usage)


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (works on the meta device)."""
    return sum(math.prod(p.shape) for p in module.parameters())

