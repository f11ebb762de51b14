"""Mask fusion of flow-sampled and directly predicted textures (RefineTex eq. 1, from Texformer)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modules.unet_blocks import check_image_tensor
from zoo.pretrained import PretrainedMixin

PADDING_MODES = ("zeros", "border", "reflection")


@dataclass
class FusionOutput:
    """texture: (B, C, Huv, Wuv) fused texture; sampled: (B, C, Huv, Wuv) the image sampled at
    the flow (the flow-only texture, useful on its own for visualisation and losses)."""

    texture: torch.Tensor
    sampled: torch.Tensor


class MaskFusion(PretrainedMixin, nn.Module):
    """texture = mask * grid_sample(image, flow) + (1 - mask) * rgb (paper eq. 1).

    Visible texels copy exact pixels through the flow, unseen ones take the hallucinated RGB;
    the network learns the soft mask that chooses. Parameter-free.

    Args:
        align_corners: `grid_sample` convention for the flow. False (default, PyTorch's default):
            -1 and 1 are the outer edges of the image; the deformable refiner uses the same
            convention so both read flow identically.
        padding_mode: what texels whose flow leaves the image read: "zeros" (default, black,
            like the reference's default grid_sample), "border" or "reflection".

    forward(image (B, C, Hi, Wi), flow (B, 2, Huv, Wuv) (x, y) in [-1, 1], rgb (B, C, Huv, Wuv),
    mask (B, 1, Huv, Wuv)) -> FusionOutput(texture, sampled).
    """

    def __init__(self, align_corners: bool = False, padding_mode: str = "zeros") -> None:
        super().__init__()
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.align_corners = bool(align_corners)
        self.padding_mode = padding_mode

    def sample(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Bilinearly sample image (B, C, Hi, Wi) at flow (B, 2, Ho, Wo) -> (B, C, Ho, Wo)."""
        check_image_tensor("image", image)
        check_image_tensor("flow", flow, 2, batch=image.shape[0])
        return F.grid_sample(image, flow.permute(0, 2, 3, 1), mode="bilinear",
                             padding_mode=self.padding_mode, align_corners=self.align_corners)

    def forward(self, image: torch.Tensor, flow: torch.Tensor, rgb: torch.Tensor,
                mask: torch.Tensor) -> FusionOutput:
        sampled = self.sample(image, flow)
        b, c, h, w = sampled.shape
        if tuple(rgb.shape) != (b, c, h, w):
            raise ValueError(f"rgb must be {(b, c, h, w)} (image channels, flow size), got {tuple(rgb.shape)}")
        if tuple(mask.shape) != (b, 1, h, w):
            raise ValueError(f"mask must be {(b, 1, h, w)}, got {tuple(mask.shape)}")
        return FusionOutput(texture=mask * sampled + (1 - mask) * rgb, sampled=sampled)
