"""Conv-BN-ReLU blocks and the three-scale U-Net shared by the RefineTex modules.

Everything here is 128 channels wide in the paper configuration and never changes width with
depth (implementation notes, section 1): the U-Nets are small because attention, not depth,
carries the long-range work.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.pretrained import PretrainedMixin


def check_image_tensor(name: str, tensor: torch.Tensor, channels: int | None = None,
                       multiple_of: int = 1, batch: int | None = None) -> None:
    """Raise `ValueError` naming `name` and its shape unless it is (B, C, H, W) as required."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    want_c = "C" if channels is None else str(channels)
    if tensor.dim() != 4 or (channels is not None and tensor.shape[1] != channels):
        raise ValueError(f"{name} must be (B, {want_c}, H, W), got {tuple(tensor.shape)}")
    if batch is not None and tensor.shape[0] != batch:
        raise ValueError(f"{name} must have batch size {batch}, got {tuple(tensor.shape)}")
    if tensor.shape[-2] % multiple_of or tensor.shape[-1] % multiple_of:
        raise ValueError(
            f"{name} height and width must be divisible by {multiple_of}, got {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class ConvBNReLU(PretrainedMixin, nn.Sequential):
    """3x3 conv (no bias: the BatchNorm that follows would cancel it and leave it a dead,
    zero-gradient parameter), BatchNorm, ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: 2 to halve the resolution (Texformer's way down), else 1.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def conv_stack(in_channels: int, width: int, count: int, stride: int = 1) -> nn.Sequential:
    """`count` ConvBNReLU layers; the first one takes `in_channels` and `stride`."""
    layers = [ConvBNReLU(in_channels if i == 0 else width, width, stride if i == 0 else 1)
              for i in range(count)]
    return nn.Sequential(*layers)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def _add(x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    return x if extra is None else x + extra


class ThreeScaleUNet(PretrainedMixin, nn.Module):
    """A width-preserving U-Net with features at full, 1/2 and 1/4 resolution.

    Layout (implementation notes, section 1): `in_convs` conv-BN-ReLU at full size; two
    downsampling steps, each a stride-2 conv-BN-ReLU followed by one conv-BN-ReLU; two
    conv-BN-ReLU at 1/4 with an additive residual; two upsampling steps, each nearest x2 followed
    by two conv-BN-ReLU and an additive skip from the same scale of the way down; then
    `out_convs` conv-BN-ReLU at full size. With `in_convs=1, out_convs=2` it is one of
    Texformer's query/key/value encoders (13 convs); with `in_convs=2, out_convs=1` and the
    attention outputs injected it is Texformer's output decoder.

    Args:
        in_channels: channels of the input map.
        width: channels everywhere inside (128 in the paper).
        in_convs: conv-BN-ReLU layers before the first downsampling (>= 1).
        out_convs: conv-BN-ReLU layers after the last upsampling (>= 0).

    `forward(x, inject=None)` takes x (B, in_channels, H, W) with H, W divisible by 4 and returns
    `(full, half, quarter)` feature maps. `inject`, a (full, half, quarter) triple of maps of
    `width` channels (entries may be None), is added at each scale on the way down and again on
    the way up: the "sums at each scale" of Texformer's output decoder.
    """

    def __init__(self, in_channels: int, width: int = 128, in_convs: int = 1, out_convs: int = 2) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("width", width)
        check_positive_int("in_convs", in_convs)
        if isinstance(out_convs, bool) or not isinstance(out_convs, int) or out_convs < 0:
            raise ValueError(f"out_convs must be an int >= 0, got {out_convs!r}")
        self.in_channels = in_channels
        self.width = width
        self.inc = conv_stack(in_channels, width, in_convs)
        self.down1 = conv_stack(width, width, 2, stride=2)
        self.down2 = conv_stack(width, width, 2, stride=2)
        self.mid = conv_stack(width, width, 2)
        self.up1 = conv_stack(width, width, 2)
        self.up0 = conv_stack(width, width, 2)
        self.out = conv_stack(width, width, out_convs) if out_convs else nn.Identity()

    def forward(self, x: torch.Tensor, inject: Sequence[torch.Tensor | None] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_image_tensor("x", x, self.in_channels, multiple_of=4)
        i0, i1, i2 = inject if inject is not None else (None, None, None)
        e0 = self.inc(x)
        e1 = _add(self.down1(e0), i1)
        e2 = _add(self.down2(e1), i2)
        quarter = _add(self.mid(e2) + e2, i2)
        half = _add(self.up1(upsample2(quarter)) + e1, i1)
        full = _add(self.up0(upsample2(half)) + e0, i0)
        return self.out(full), half, quarter
