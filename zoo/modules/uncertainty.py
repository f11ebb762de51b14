"""Confidence network of RefineTex's uncertainty-based reconstruction loss (paper sec. 3.2.1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modules.unet_blocks import ConvBNReLU, check_image_tensor, check_positive_int, upsample2
from zoo.pretrained import PretrainedMixin

DOWNSAMPLES = ("maxpool", "avgpool")


class UncertaintyHead(PretrainedMixin, nn.Module):
    """Per-pixel Laplace scale sigma of the reconstruction error, from a small U-Net.

    Layout (implementation notes, section 2): six 3x3 conv-BN-ReLU layers of `width` channels;
    2x downsampling after conv 2 and conv 3, nearest 2x upsampling after conv 4 and conv 5, each
    upsampled map added to the output of the conv of the same size on the way down; then a 3x3
    conv to one channel and softplus. `sigma = softplus(x) + min_sigma`: the floor keeps
    |I - I_r| / sigma and log(sigma) of the loss finite when the network grows over-confident.
    Used in training only (the loss), never at inference.

    Args:
        in_channels: channels of the input: 3, the RGB input image alone (paper section 3.3; a
            render must not be fed in, or sigma learns the current error instead of the image's
            ambiguity).
        width: channels of the six hidden convs (128 in the paper).
        min_sigma: floor added to the softplus output (our choice, 1e-3 of a [-1, 1] image
            range; 0 disables it).
        downsample: "maxpool" (classic U-Net, default) or "avgpool" 2x2 downsampling.

    forward(inputs (B, in_channels, H, W), H and W divisible by 4) -> sigma (B, 1, H, W) > 0.
    """

    def __init__(self, in_channels: int = 3, width: int = 128, min_sigma: float = 1e-3,
                 downsample: str = "maxpool") -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("width", width)
        if not isinstance(min_sigma, (int, float)) or isinstance(min_sigma, bool) or min_sigma < 0:
            raise ValueError(f"min_sigma must be a float >= 0, got {min_sigma!r}")
        if downsample not in DOWNSAMPLES:
            raise ValueError(f"downsample must be one of {DOWNSAMPLES}, got {downsample!r}")
        self.in_channels, self.min_sigma = in_channels, float(min_sigma)
        self._pool = F.max_pool2d if downsample == "maxpool" else F.avg_pool2d
        self.convs = nn.ModuleList([ConvBNReLU(in_channels if i == 0 else width, width) for i in range(6)])
        self.out = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        check_image_tensor("inputs", inputs, self.in_channels, multiple_of=4)
        c1, c2, c3, c4, c5, c6 = self.convs
        h2 = c2(c1(inputs))                   # full
        h3 = c3(self._pool(h2, 2))            # 1/2
        h4 = c4(self._pool(h3, 2))            # 1/4
        h5 = c5(upsample2(h4) + h3)           # 1/2
        h6 = c6(upsample2(h5) + h2)           # full
        return F.softplus(self.out(h6)) + self.min_sigma
