"""DINAR's neural renderer (its `renderers/pix2pix.py`): neural texture + rasterised UV -> RGB + mask.

The texture goes through two 3x3 convs, is sampled at every pixel's UV, and is concatenated with
learned features of the UV map and of the body mask; a pix2pixHD-style U-Net with skips (64 base
channels, 3 stride-2 downsamplings, 3 residual blocks, bilinear upsampling) turns that into 16
feature channels, from which two heads predict RGB (tanh) and the person mask (sigmoid). The mask
is made "hard" on the body (max with the rasterised mask: the head only adds hair and clothing
outside the mesh), then the person is composited over the background.

Convolutions use the equalised learning rate of `zoo.modules.stylegan2_layers` and activations are
bias + leaky ReLU(0.2) * sqrt 2, as in DINAR, so its weights map tensor for tensor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modules.stylegan2_layers import BiasLeakyReLU, EqualConv2d
from zoo.pretrained import PretrainedMixin

_NORMS = ("batch", "instance")


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels, affine=True)


def _conv_norm_act(in_ch: int, out_ch: int, norm: str, kernel: int = 3, stride: int = 1, padding: int = 1,
                   bias: bool = True) -> list[nn.Module]:
    return [EqualConv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias), _norm(norm, out_ch),
            BiasLeakyReLU(out_ch)]


def _preproc(in_ch: int, out_ch: int, norm: str) -> nn.Sequential:
    """Two bias-free 3x3 conv + norm + activation layers."""
    return nn.Sequential(*_conv_norm_act(in_ch, out_ch, norm, bias=False), *_conv_norm_act(out_ch, out_ch, norm, bias=False))


def _head(channels: int, hidden_convs: int, out_ch: int, norm: str, final: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = [_norm(norm, channels), BiasLeakyReLU(channels)]
    for _ in range(hidden_convs):
        layers += _conv_norm_act(channels, channels, norm, bias=False)
    layers += [EqualConv2d(channels, out_ch, 3, padding=1), final]
    return nn.Sequential(*layers)


class _ResnetBlock(nn.Module):
    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), EqualConv2d(channels, channels, 3), _norm(norm, channels), BiasLeakyReLU(channels),
            nn.ReflectionPad2d(1), EqualConv2d(channels, channels, 3), _norm(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class SkipUNet(nn.Module):
    """pix2pixHD global generator with U-Net skips (DINAR's `GlobalGeneratorSkip`): 7x7 stem,
    `n_downsampling` stride-2 convs (widths double), `n_blocks` residual blocks, bilinear 2x
    upsampling + 3x3 conv over [features, skip] per level, 7x7 output conv."""

    def __init__(self, in_channels: int, out_channels: int, base_channels: int, n_downsampling: int, n_blocks: int,
                 norm: str):
        super().__init__()
        ngf = base_channels
        self.start = nn.Sequential(nn.ReflectionPad2d(3), *_conv_norm_act(in_channels, ngf, norm, kernel=7, padding=0))
        self.downsamples = nn.ModuleList(
            nn.Sequential(*_conv_norm_act(ngf * 2 ** i, ngf * 2 ** (i + 1), norm, stride=2)) for i in range(n_downsampling))
        deep = ngf * 2 ** n_downsampling
        self.resblocks = nn.Sequential(*(_ResnetBlock(deep, norm) for _ in range(n_blocks)))
        self.upsamples = nn.ModuleList()
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            self.upsamples.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"),
                                                *_conv_norm_act(2 * ngf * mult, ngf * mult // 2, norm)))
        self.final = nn.Sequential(nn.ReflectionPad2d(3), EqualConv2d(ngf, out_channels, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.start(x)
        skips = []
        for down in self.downsamples:
            x = down(x)
            skips.append(x)
        x = self.resblocks(x)
        for up, skip in zip(self.upsamples, reversed(skips)):
            x = up(torch.cat([x, skip], dim=1))
        return self.final(x)


class NeuralRenderer(PretrainedMixin, nn.Module):
    """Neural texture + per-pixel UV + body mask -> person RGB and mask, composited over a background.

    Args:
        texture_channels: channels of the neural texture (21 in DINAR: 16 generated + 3 RGB + 2
            masks; 3 for an RGB-only texture, 16 for a neural-only one).
        uv_features: channels of the UV-map pre-convs (8 in DINAR).
        mask_features: channels of the body-mask pre-convs (4 in DINAR).
        base_channels: U-Net width at full resolution (64, "ngf").
        n_downsampling: stride-2 levels of the U-Net (3); image sides must divide by 2 ** this.
        n_blocks: residual blocks at the bottom of the U-Net (3).
        features: channels the U-Net hands to the two heads (16).
        rgb_hidden_convs: hidden 3x3 convs of the RGB head (2 in DINAR).
        mask_hidden_convs: hidden 3x3 convs of the mask head (4 in DINAR).
        mask_head_channels: channels the mask head emits (DINAR's emits 3, of which the first
            `mask_channels` are used; kept so DINAR's weights map).
        mask_channels: mask channels returned (1: person / background).
        hard_mask: take max(predicted mask, rasterised body mask) (DINAR's `hardsegm`).
        norm: "batch" (DINAR) or "instance".
        align_corners: `grid_sample` convention of the UV grid (DINAR's rasteriser uses True; the
            zoo's `render_uv` gives texel-centre coordinates, False).
        full_res_skip: add a 1x1 conv of the U-Net's input to its output features (False, DINAR's
            layout, whose finest skip is at half resolution). A departure for small images: at
            64 px a limb is 2-3 px wide, so colour sampled from the texture only reaches the heads
            through a stride-2 level; the skip hands it over at full resolution (measured on the CPU
            config, DINAR row, 500 steps, one seed: held-out PSNR +0.5-0.7 dB).
    """

    def __init__(self, texture_channels: int = 21, uv_features: int = 8, mask_features: int = 4, base_channels: int = 64,
                 n_downsampling: int = 3, n_blocks: int = 3, features: int = 16, rgb_hidden_convs: int = 2,
                 mask_hidden_convs: int = 4, mask_head_channels: int = 3, mask_channels: int = 1, hard_mask: bool = True,
                 norm: str = "batch", align_corners: bool = False, full_res_skip: bool = False):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
        sizes = dict(texture_channels=texture_channels, uv_features=uv_features, mask_features=mask_features,
                     base_channels=base_channels, features=features, mask_head_channels=mask_head_channels)
        bad = {k: v for k, v in sizes.items() if v < 1}
        if bad or n_downsampling < 0 or n_blocks < 0 or rgb_hidden_convs < 0 or mask_hidden_convs < 0:
            raise ValueError(f"sizes must be >= 1 and counts >= 0, got {bad or dict(n_downsampling=n_downsampling, n_blocks=n_blocks)}")
        if not 1 <= mask_channels <= mask_head_channels:
            raise ValueError(f"mask_channels={mask_channels} must be in [1, mask_head_channels={mask_head_channels}]")
        self.texture_channels, self.mask_channels = texture_channels, mask_channels
        self.hard_mask, self.align_corners = hard_mask, align_corners
        self.multiple = 2 ** n_downsampling
        self.ntex_preproc = _preproc(texture_channels, texture_channels, norm)
        self.uv_preproc = _preproc(2, uv_features, norm)
        self.uv_mask_preproc = _preproc(1, mask_features, norm)
        self.model = SkipUNet(texture_channels + uv_features + mask_features, features, base_channels, n_downsampling,
                              n_blocks, norm)
        self.full_res_skip = EqualConv2d(texture_channels + uv_features + mask_features, features, 1) \
            if full_res_skip else None
        self.rgb_head = _head(features, rgb_hidden_convs, 3, norm, nn.Tanh())
        self.segm_head = _head(features, mask_hidden_convs, mask_head_channels, norm, nn.Sigmoid())

    def forward(self, texture: torch.Tensor, uv: torch.Tensor, uv_mask: torch.Tensor,
                background: torch.Tensor | float | None = 1.0) -> dict[str, torch.Tensor]:
        """Render a batch.

        Args:
            texture: (B, texture_channels, T, T).
            uv: (B, H, W, 2) grid in [-1, 1] (`zoo.render.render_uv`; background outside [-1, 1]).
            uv_mask: (B, 1, H, W), 1 where the body mesh is visible.
            background: image (B, 3, H, W) or constant in [-1, 1] (1.0 = white, as DINAR), or None
                for no compositing.

        Returns:
            {"rgb": composited (B, 3, H, W) in [-1, 1], "foreground": the RGB head's (B, 3, H, W),
             "mask": (B, mask_channels, H, W) in [0, 1] (channel 0 is the person)}.
        """
        b = texture.shape[0]
        if texture.ndim != 4 or texture.shape[1] != self.texture_channels:
            raise ValueError(f"texture must be (B, {self.texture_channels}, T, T), got {tuple(texture.shape)}")
        if uv.ndim != 4 or uv.shape[0] != b or uv.shape[-1] != 2:
            raise ValueError(f"uv must be (B={b}, H, W, 2), got {tuple(uv.shape)}")
        h, w = uv.shape[1:3]
        if tuple(uv_mask.shape) != (b, 1, h, w):
            raise ValueError(f"uv_mask must be ({b}, 1, {h}, {w}), got {tuple(uv_mask.shape)}")
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"image sides ({h}, {w}) must be multiples of {self.multiple}")
        uv_mask = uv_mask.to(texture.dtype)
        tex = self.ntex_preproc(texture)
        sampled = F.grid_sample(tex, uv.to(tex.dtype), align_corners=self.align_corners) * uv_mask
        uv_img = uv.permute(0, 3, 1, 2).to(tex.dtype)
        unet_input = torch.cat([sampled, self.uv_preproc(uv_img), self.uv_mask_preproc(uv_mask)], dim=1)
        features = self.model(unet_input)
        if self.full_res_skip is not None:
            features = features + self.full_res_skip(unet_input)
        rgb = self.rgb_head(features)
        mask = self.segm_head(features)[:, : self.mask_channels]
        if self.hard_mask:
            mask = torch.cat([(mask[:, :1] + uv_mask).clamp(0.0, 1.0), mask[:, 1:]], dim=1)
        person = mask[:, :1]
        out = rgb if background is None else rgb * person + (1.0 - person) * background
        return {"rgb": out, "foreground": rgb, "mask": mask}
