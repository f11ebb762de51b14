"""Pixel- and texel-level losses: RefineTex's uncertainty reconstruction (eq. 6) and cycle (eq. 7)
losses, and a soft Dice loss for masks (DINAR).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from zoo.losses._common import check_4d, check_reduction, check_same_shape, expand_mask, reduce

SQRT2 = math.sqrt(2.0)


def uncertainty_reconstruction_loss(image: torch.Tensor, render: torch.Tensor, sigma: torch.Tensor,
                                    mask: torch.Tensor | None = None, min_sigma: float = 1e-3,
                                    reduction: str = "mean") -> torch.Tensor:
    """Laplacian negative log-likelihood of `image` around `render` with scale `sigma` (RefineTex eq. 6).

    Per element: sqrt(2) |I - I_r| / sigma + log(sigma). The constant log(sqrt(2)) of the NLL is
    dropped (it does not change gradients). `sigma` is clamped to `min_sigma` from below so that a
    confidence network driving it to 0 cannot blow the loss up (the clamp has no gradient below it).

    Args:
        image: (B, C, H, W) ground-truth image I.
        render: (B, C, H, W) rendered image I_r.
        sigma: (B, 1 or C, H, W) positive scale predicted by the confidence network (one per pixel is
            broadcast over channels).
        mask: optional (B, 1 or C, H, W), (B, H, W) or (H, W) weights, 1 where a pixel counts.
        min_sigma: lower clamp of sigma (our choice 1e-3, for images in [-1, 1]).
        reduction: "mean" over the (masked) elements, or "sum" (eq. 6 sums over pixels).
    """
    check_4d(image, "image")
    check_same_shape(image, render, "image", "render")
    check_4d(sigma, "sigma")
    if sigma.shape[0] != image.shape[0] or sigma.shape[1] not in (1, image.shape[1]) \
            or sigma.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"sigma of shape {tuple(sigma.shape)} does not broadcast to image {tuple(image.shape)}")
    if not min_sigma > 0:
        raise ValueError(f"min_sigma must be > 0, got {min_sigma!r}")
    check_reduction(reduction)
    sigma = sigma.clamp(min=min_sigma).expand_as(image)
    nll = SQRT2 * (image - render).abs() / sigma + torch.log(sigma)
    return reduce(nll, None if mask is None else expand_mask(mask, nll), reduction)


def cycle_consistency_loss(texture: torch.Tensor, texture_cycle: torch.Tensor, mask: torch.Tensor | None = None,
                           reduction: str = "mean") -> torch.Tensor:
    """Squared L2 between a texture T(I) and the texture re-estimated from its novel-view render (eq. 7).

    Per texel and channel (T(I) - T(R(T(I))))^2, averaged over the (masked) elements or summed.
    Both arguments keep their gradients: detach one yourself to make it a fixed target.

    Args:
        texture: (B, C, H, W) texture estimated from the input image.
        texture_cycle: (B, C, H, W) texture estimated from the re-rendered image.
        mask: optional texel mask, (B|1, 1|C, H, W), (B, H, W) or (H, W).
        reduction: "mean" or "sum".
    """
    check_4d(texture, "texture")
    check_same_shape(texture, texture_cycle, "texture", "texture_cycle")
    check_reduction(reduction)
    sq = (texture - texture_cycle).square()
    return reduce(sq, None if mask is None else expand_mask(mask, sq), reduction)


def dice_loss(pred: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss 1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s) per sample, averaged over the batch.

    Args:
        pred: (B, ...) predicted mask probabilities in [0, 1].
        target: (B, ...) target mask in [0, 1].
        smooth: additive smoothing s (keeps two empty masks at loss 0).
    """
    check_same_shape(pred, target, "pred", "target")
    if pred.dim() < 2:
        raise ValueError(f"pred must be (B, ...), got {tuple(pred.shape)}")
    p, t = pred.flatten(1), target.flatten(1).to(pred.dtype)
    dice = (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return (1 - dice).mean()


class UncertaintyReconstructionLoss(nn.Module):
    """`weight * uncertainty_reconstruction_loss`.

    Args:
        weight: loss weight; 1e-3 is RefineTex's lambda_5 (eq. 8).
        min_sigma: lower clamp of sigma (our choice, 1e-3).
        reduction: "mean" or "sum" over the (masked) elements.
    """

    def __init__(self, weight: float = 1e-3, min_sigma: float = 1e-3, reduction: str = "mean"):
        super().__init__()
        check_reduction(reduction)
        if not min_sigma > 0:
            raise ValueError(f"min_sigma must be > 0, got {min_sigma!r}")
        self.weight, self.min_sigma, self.reduction = float(weight), float(min_sigma), reduction

    def forward(self, image: torch.Tensor, render: torch.Tensor, sigma: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.weight * uncertainty_reconstruction_loss(image, render, sigma, mask, self.min_sigma, self.reduction)


class CycleConsistencyLoss(nn.Module):
    """`weight * cycle_consistency_loss`.

    Args:
        weight: loss weight; 0.1 is RefineTex's lambda_4 (eq. 8).
        reduction: "mean" or "sum" over the (masked) elements.
    """

    def __init__(self, weight: float = 0.1, reduction: str = "mean"):
        super().__init__()
        check_reduction(reduction)
        self.weight, self.reduction = float(weight), reduction

    def forward(self, texture: torch.Tensor, texture_cycle: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.weight * cycle_consistency_loss(texture, texture_cycle, mask, self.reduction)


class DiceLoss(nn.Module):
    """`weight * dice_loss`.

    Args:
        weight: loss weight; 1.0 is DINAR's mask (Dice) loss weight.
        smooth: additive smoothing of the Dice ratio.
    """

    def __init__(self, weight: float = 1.0, smooth: float = 1.0):
        super().__init__()
        self.weight, self.smooth = float(weight), float(smooth)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * dice_loss(pred, target, self.smooth)
