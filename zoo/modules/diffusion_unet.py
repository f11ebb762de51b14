"""Denoising U-Net of latent diffusion (ADM / LDM layout), conditioned by channel concatenation.

DINAR (paper section 3.3, implementation notes section 4) denoises 6x64x64 VQGAN latents; the
condition (the partial texture's latent and the nearest-resized known mask) is concatenated
to the noisy latent, so `in_channels = 6 + 6 + 1 = 13`. The defaults are that preset, so
`DiffusionUNet()` is DINAR's denoiser (~390 M parameters: count it on the meta device, see
benchmarks/inpainting_params.py); they are the one statement of its sizes (the config
configs/inpainting/diffusion_dinar.yaml names only the class).

Why not diffusers' `UNet2DModel`: it sets one attention *head dimension* for every level
(heads = width / head_dim), while DINAR uses 8 heads at every level (head widths 64, 96 and 128
at widths 512, 768 and 1024 for multipliers (2, 3, 4)), which it cannot express; it also selects
attention by block-type names instead of by feature-map resolution. This file is written from
the ADM/LDM description: sinusoidal time embedding + MLP added in every residual block,
BigGAN-style residual up/down sampling, zero-initialised residual outputs. Two details of DINAR's
code are defaults here: GroupNorm with 8 groups (its `normalization`), and `preproc_input`, two
3x3 convolutions that replace input channels -5:-2 and -2: before the first layer (DINAR applies
them to the concatenated input, i.e. to the last condition-latent channels and the mask).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.pretrained import PretrainedMixin


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of timesteps t (B,): [cos(t w_i), sin(t w_i)],
    w_i = max_period^(-i / (dim // 2)); a zero column is appended when dim is odd."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class TimestepResBlock(nn.Module):
    """Residual block with the time embedding added (or used as scale/shift) after the first conv.

    `up` / `down` resample inside the block (nearest x2 / average-pool /2) on both the residual
    branch and the skip path, as BigGAN and ADM do."""

    def __init__(self, in_channels: int, emb_channels: int, out_channels: int, dropout: float, norm_groups: int,
                 up: bool = False, down: bool = False, scale_shift_norm: bool = False):
        super().__init__()
        for c in (in_channels, out_channels):
            if c % norm_groups:
                raise ValueError(f"TimestepResBlock: {c} channels are not divisible by norm_groups={norm_groups}")
        self.up, self.down, self.scale_shift_norm = up, down, scale_shift_norm
        self.in_norm = nn.GroupNorm(norm_groups, in_channels)
        self.in_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_channels, out_channels * (2 if scale_shift_norm else 1))
        self.out_norm = nn.GroupNorm(norm_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(self._resample(F.silu(self.in_norm(x))))
        x = self._resample(x)
        e = self.emb_proj(F.silu(emb))[:, :, None, None]
        if self.scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        return self.skip(x) + self.out_conv(self.dropout(F.silu(h)))


class MultiHeadAttnBlock(nn.Module):
    """Multi-head self-attention over spatial positions, residual, zero-initialised output."""

    def __init__(self, channels: int, num_heads: int, norm_groups: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention width {channels} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (B, heads, hw, c/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, h, w))


class _Resample(nn.Module):
    """Conv resampling when `resblock_updown=False`: strided 3x3 conv down, nearest + 3x3 conv up."""

    def __init__(self, channels: int, up: bool):
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(channels, channels, 3, stride=1 if up else 2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest") if self.up else x)


class _EmbedSequential(nn.ModuleList):
    """Runs its layers in order, giving the time embedding to the residual blocks."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (TimestepResBlock, MultiHeadAttnBlock, _Resample)) else layer(x)
        return x


class DiffusionUNet(PretrainedMixin, nn.Module):
    """Predicts noise / x0 / v for a noisy latent concatenated with its condition channels.

    The defaults are DINAR's denoiser (implementation notes section 4), checked against the notes
    in tests/modules/test_diffusion_unet.py.

    Args:
        in_channels: noisy latent + condition channels (13 in DINAR: 6 + 6 latent + 1 mask).
        out_channels: predicted channels = latent channels (6 in DINAR).
        base_channels: width of the first level; the time embedding has 4x this width (256).
        channel_multipliers: per-level width multipliers, `len - 1` halvings ((1, 2, 3, 4)).
        num_res_blocks: residual blocks per level on the way down (2); the way up has one more.
        attention_resolutions: feature-map side lengths (px) with attention ((32, 16, 8) on a
            64 px latent, i.e. downsampling factors 2, 4, 8).
        resolution: nominal latent side length `attention_resolutions` refers to (64).
        num_heads: attention heads at every level (8), unless `head_channels` is set.
        head_channels: if set, heads = width // head_channels instead (diffusers' convention).
        dropout: dropout in residual blocks (0.5, DINAR paper).
        resblock_updown: BigGAN-style residual up/down sampling (True) instead of plain
            convolutional resampling.
        scale_shift_norm: time embedding as GroupNorm scale/shift (ADM) instead of an additive bias
            (LDM's default, used by DINAR's preset).
        norm_groups: GroupNorm groups (8, DINAR's code; LDM uses 32).
        mid_attention: attention in the middle block (True, as LDM).
        time_embed_dim: width of the time-embedding MLP; None means 4 * base_channels (ADM/LDM).
        preproc_input: DINAR's `preproc_input`: a 3x3 conv (3 -> 3) replaces input channels
            -5:-2 and another (2 -> 2) replaces channels -2: before the first layer; needs
            in_channels >= 5. False gives LDM's plain U-Net.
    """

    def __init__(self, in_channels: int = 13, out_channels: int = 6, base_channels: int = 256,
                 channel_multipliers: Sequence[int] = (1, 2, 3, 4), num_res_blocks: int = 2,
                 attention_resolutions: Sequence[int] = (32, 16, 8), resolution: int = 64, num_heads: int = 8,
                 head_channels: int | None = None, dropout: float = 0.5, resblock_updown: bool = True,
                 scale_shift_norm: bool = False, norm_groups: int = 8, mid_attention: bool = True,
                 time_embed_dim: int | None = None, preproc_input: bool = True):
        super().__init__()
        if min(in_channels, out_channels, base_channels, num_res_blocks, num_heads) < 1:
            raise ValueError("in_channels, out_channels, base_channels, num_res_blocks and num_heads must be >= 1, "
                             f"got {in_channels}, {out_channels}, {base_channels}, {num_res_blocks}, {num_heads}")
        if len(channel_multipliers) < 1 or any(int(m) < 1 for m in channel_multipliers):
            raise ValueError(f"channel_multipliers must be a non-empty list of ints >= 1, got {channel_multipliers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if head_channels is not None and head_channels < 1:
            raise ValueError(f"head_channels must be None or >= 1, got {head_channels}")
        if preproc_input and in_channels < 5:
            raise ValueError(f"preproc_input needs in_channels >= 5 (it convolves channels -5:-2 and -2:), "
                             f"got {in_channels}")
        self.in_channels, self.out_channels, self.base_channels = in_channels, out_channels, base_channels
        self.downsampling = 2 ** (len(channel_multipliers) - 1)
        emb_ch = 4 * base_channels if time_embed_dim is None else time_embed_dim
        if emb_ch < 1:
            raise ValueError(f"time_embed_dim must be None or >= 1, got {time_embed_dim}")

        def heads(ch: int) -> int:
            return ch // head_channels if head_channels is not None else num_heads

        def block(cin: int, cout: int, **kw) -> TimestepResBlock:
            return TimestepResBlock(cin, emb_ch, cout, dropout, norm_groups, scale_shift_norm=scale_shift_norm, **kw)

        self.preproc_rgb = nn.Conv2d(3, 3, 3, padding=1) if preproc_input else None
        self.preproc_mask = nn.Conv2d(2, 2, 3, padding=1) if preproc_input else None
        self.time_embed = nn.Sequential(nn.Linear(base_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.input_blocks = nn.ModuleList([_EmbedSequential([nn.Conv2d(in_channels, base_channels, 3, padding=1)])])
        skips, ch, res = [base_channels], base_channels, resolution
        self.attention_sides: list[int] = []
        for level, mult in enumerate(channel_multipliers):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [block(ch, base_channels * int(mult))]
                ch = base_channels * int(mult)
                if res in attention_resolutions:
                    layers.append(MultiHeadAttnBlock(ch, heads(ch), norm_groups))
                    self.attention_sides.append(res)
                self.input_blocks.append(_EmbedSequential(layers))
                skips.append(ch)
            if level < len(channel_multipliers) - 1:
                down = block(ch, ch, down=True) if resblock_updown else _Resample(ch, up=False)
                self.input_blocks.append(_EmbedSequential([down]))
                skips.append(ch)
                res //= 2
        middle: list[nn.Module] = [block(ch, ch)]
        if mid_attention:
            middle.append(MultiHeadAttnBlock(ch, heads(ch), norm_groups))
        self.middle_block = _EmbedSequential(middle + [block(ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_multipliers))):
            for i in range(num_res_blocks + 1):
                layers = [block(ch + skips.pop(), base_channels * int(mult))]
                ch = base_channels * int(mult)
                if res in attention_resolutions:
                    layers.append(MultiHeadAttnBlock(ch, heads(ch), norm_groups))
                if level > 0 and i == num_res_blocks:
                    layers.append(block(ch, ch, up=True) if resblock_updown else _Resample(ch, up=True))
                    res *= 2
                self.output_blocks.append(_EmbedSequential(layers))
        self.out = nn.Sequential(nn.GroupNorm(norm_groups, ch), nn.SiLU(),
                                 _zero(nn.Conv2d(ch, out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor | int | float) -> torch.Tensor:
        """Prediction (B, out_channels, H, W) for input x (B, in_channels, H, W) at timesteps t
        (a number or a (B,) tensor, in training-step units 0..T-1)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % self.downsampling or x.shape[3] % self.downsampling:
            raise ValueError(f"x sides {tuple(x.shape[2:])} must be divisible by {self.downsampling}")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a number or a ({x.shape[0]},) tensor, got shape {tuple(t.shape)}")
        emb = self.time_embed(timestep_embedding(t, self.base_channels).to(x.dtype))
        h, skips = x, []
        if self.preproc_rgb is not None:
            h = torch.cat([x[:, :-5], self.preproc_rgb(x[:, -5:-2]), self.preproc_mask(x[:, -2:])], dim=1)
        for blk in self.input_blocks:
            h = blk(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
