"""PatchGAN discriminator (Isola et al., pix2pix) as used by VQGAN's adversarial loss.

Each output logit sees one receptive-field patch of the input, so the GAN loss judges local
texture statistics rather than global layout: what a texture autoencoder needs to stay sharp.
"""
from __future__ import annotations

import torch
from torch import nn

from zoo.pretrained import PretrainedMixin

_NORMS = ("batch", "group", "none")


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


class PatchDiscriminator(PretrainedMixin, nn.Module):
    """Stack of 4x4 convolutions: `n_layers` stride-2 layers, one stride-1 layer, a 1-channel head.

    Widths double per layer up to 8x `base_channels`. With `n_layers=3` the receptive field is
    70x70 px (the classic PatchGAN); the output is (B, 1, H/2^n_layers - 2, W/2^n_layers - 2).

    Args:
        in_channels: channels of the judged texture / image (3 RGB, 21 DINAR neural texture).
        base_channels: width of the first layer (64 in pix2pix and taming's VQGAN).
        n_layers: number of stride-2 layers (3 in pix2pix and taming).
        norm: "batch" (pix2pix, taming), "group" (batch-size independent, safe for tiny or
            per-GPU batches) or "none".
        norm_groups: GroupNorm groups when `norm="group"`; must divide every layer width.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, n_layers: int = 3, norm: str = "batch",
                 norm_groups: int = 32):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
        if in_channels < 1 or base_channels < 1 or n_layers < 1:
            raise ValueError(f"in_channels={in_channels}, base_channels={base_channels}, n_layers={n_layers} "
                             "must all be >= 1")
        widths = [base_channels * min(2 ** i, 8) for i in range(n_layers + 1)]
        if norm == "group" and any(w % norm_groups for w in widths[1:]):
            raise ValueError(f"norm_groups={norm_groups} must divide every layer width {widths[1:]}")
        self.in_channels = in_channels
        self.min_side = 3 * 2 ** n_layers  # n halvings, then two 4x4 stride-1 convs remove 2 px
        bias = norm == "none"  # a following norm makes a conv bias redundant
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(widths[i - 1], widths[i], 4, stride, 1, bias=bias),
                       _norm(norm, widths[i], norm_groups), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """pix2pix initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits (B, 1, h, w) for x (B, in_channels, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_side:
            raise ValueError(f"x sides {tuple(x.shape[-2:])} are below {self.min_side}, the smallest this "
                             "discriminator maps to at least one patch")
        return self.net(x)
