"""The quick-start baseline's texture completion network: a plain U-Net in UV space.

It takes the partial texture of one view (its visible pixels scattered into UV) with the mask
of known texels and predicts the whole texture. It is deliberately simple (the zoo's smallest
complete system); RefineTex and the diffusion inpainter are the field's answers to the same
problem.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modules.unet_blocks import check_image_tensor, check_positive_int
from zoo.pretrained import PretrainedMixin


class _DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.GroupNorm(min(groups, out_channels), out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.GroupNorm(min(groups, out_channels), out_channels),
            nn.SiLU(),
        )


class TextureUNet(PretrainedMixin, nn.Module):
    """U-Net from (partial texture, known mask[, extra maps]) to a complete texture.

    Args:
        in_channels: channels of the partial texture (3 for RGB).
        out_channels: channels of the predicted texture (3 for RGB).
        extra_channels: constant UV maps concatenated to the input (e.g. the 3-channel rest-pose
            position code, which tells the network where on the body a texel is); 0 for none.
        base_channels: width of the first level; doubled at each level down.
        depth: number of 2x downsamplings (the texture size must be divisible by 2**depth).
        groups: GroupNorm groups (GroupNorm, not BatchNorm, so small CPU batches train well).
        paste_known: return the known texels unchanged and predict only the rest.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, extra_channels: int = 0,
                 base_channels: int = 32, depth: int = 3, groups: int = 8, paste_known: bool = True) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("base_channels", base_channels), ("depth", depth), ("groups", groups)):
            check_positive_int(name, value)
        if extra_channels < 0:
            raise ValueError(f"extra_channels must be >= 0, got {extra_channels}")
        if paste_known and in_channels != out_channels:
            raise ValueError(f"paste_known needs in_channels == out_channels, got {in_channels} and {out_channels}")
        self.in_channels, self.extra_channels, self.depth, self.paste_known = in_channels, extra_channels, depth, paste_known
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = _DoubleConv(in_channels + 1 + extra_channels, widths[0], groups)
        self.down = nn.ModuleList(_DoubleConv(widths[i], widths[i + 1], groups) for i in range(depth))
        self.up = nn.ModuleList(_DoubleConv(widths[i + 1] + widths[i], widths[i], groups) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, partial: torch.Tensor, known_mask: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """partial (B, C, H, W) in [-1, 1], known_mask (B, 1, H, W), extra (E, H, W) or (B, E, H, W)
        -> texture (B, out_channels, H, W) in [-1, 1]."""
        check_image_tensor("partial", partial, self.in_channels, multiple_of=2**self.depth)
        check_image_tensor("known_mask", known_mask, 1, batch=partial.shape[0])
        if known_mask.shape[-2:] != partial.shape[-2:]:
            raise ValueError(f"known_mask {tuple(known_mask.shape)} does not match partial {tuple(partial.shape)}")
        inputs = [partial * known_mask, known_mask]
        if self.extra_channels:
            if extra is None:
                raise ValueError(f"this network expects {self.extra_channels} extra channels, got none")
            if extra.dim() == 3:
                extra = extra.unsqueeze(0).expand(partial.shape[0], -1, -1, -1)
            check_image_tensor("extra", extra, self.extra_channels, batch=partial.shape[0])
            inputs.append(extra.to(partial.dtype))
        x = self.stem(torch.cat(inputs, 1))
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(F.avg_pool2d(x, 2))
        for block in self.up:
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], 1))
        texture = torch.tanh(self.head(x))
        if self.paste_known:
            texture = known_mask * partial + (1 - known_mask) * texture
        return texture
