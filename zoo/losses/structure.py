"""Face-structure loss (RefineTex eq. 4, from Texformer): the SSIM structure term on the UV face and
hand regions of a predicted texture against a reference (synthetic) human texture.
"""
from __future__ import annotations

import torch
from kornia.filters import filter2d_separable, get_gaussian_kernel1d
from torch import nn

from zoo.losses._common import check_4d, expand_mask

AVERAGES = ("image", "mask")


def ssim_structure_map(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
                       data_range: float = 1.0, min_variance: float = 1e-5) -> torch.Tensor:
    """Per-pixel SSIM structure term s = (2 s_xy + C2) / (2 s_x s_y + C2), shape of `x`.

    Local moments use a normalised Gaussian window (`window_size`, `sigma`) with zero padding
    ('same' size, as the reference's conv2d with padding = window_size // 2). C2 = (0.03 * data_range)^2.
    The local variances are clamped to `min_variance` before the square root (the reference's guard:
    rounding can make them negative, and sqrt(0) has an infinite gradient).
    """
    check_4d(x, "x")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd int, got {window_size!r}")
    kernel = get_gaussian_kernel1d(window_size, sigma, device=x.device, dtype=x.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return filter2d_separable(t, kernel, kernel, border_type="constant")

    mu_x, mu_y = blur(x), blur(y)
    var_x = (blur(x * x) - mu_x.square()).clamp(min=min_variance)
    var_y = (blur(y * y) - mu_y.square()).clamp(min=min_variance)
    cov = blur(x * y) - mu_x * mu_y
    c2 = (0.03 * data_range) ** 2
    return (2 * cov + c2) / (2 * var_x.sqrt() * var_y.sqrt() + c2)


def face_structure_loss(texture: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor,
                        window_size: int = 11, sigma: float = 1.5, data_range: float = 1.0,
                        average: str = "image") -> torch.Tensor:
    """1 - mean SSIM structure between the masked texture and the masked reference texture.

    Both textures are multiplied by the face/hand mask first (eq. 4: s(M * T(I), M * F_syn)).
    `average="image"` averages the structure map over every texel, channel and sample, as
    Texformer does (texels outside the mask are 0 in both and score about 1, so they only dilute
    the loss; the paper's weight 0.01 was tuned with this). `average="mask"` averages over the
    mask's texels only (our option; scale-free in the mask size).

    Args:
        texture: (B, C, H, W) predicted UV texture in [-1, 1].
        reference: (B or 1, C, H, W) reference texture(s), a fixed target (no gradient needed).
        mask: (H, W), (B, H, W) or (B|1, 1|C, H, W) face + hands UV mask in {0, 1}.
        window_size, sigma: Gaussian window (11, 1.5 as SSIM).
        data_range: sets C2 = (0.03 * data_range)^2; 1.0 reproduces the reference's constants (it
            applies range-1 constants to [-1, 1] textures).
        average: "image" (reference) or "mask".
    """
    check_4d(texture, "texture")
    check_4d(reference, "reference")
    if reference.shape[1:] != texture.shape[1:] or reference.shape[0] not in (1, texture.shape[0]):
        raise ValueError(f"reference of shape {tuple(reference.shape)} does not match texture {tuple(texture.shape)}")
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    m = expand_mask(mask, texture)
    s = ssim_structure_map(texture * m, reference.expand_as(texture) * m, window_size, sigma, data_range)
    if average == "image":
        return 1.0 - s.mean()
    return 1.0 - (s * m).sum() / m.sum().clamp(min=1.0)


class FaceStructureLoss(nn.Module):
    """`weight * face_structure_loss`; weight 0.01 is RefineTex's lambda_3 (eq. 5).

    Args:
        mask: (H, W) face + hands UV mask, stored as a non-persistent buffer (follows the device,
            not saved in checkpoints: it comes from the body model's assets).
        weight, window_size, sigma, data_range, average: see `face_structure_loss`.
    """

    def __init__(self, mask: torch.Tensor, weight: float = 0.01, window_size: int = 11, sigma: float = 1.5,
                 data_range: float = 1.0, average: str = "image"):
        super().__init__()
        if mask.dim() != 2:
            raise ValueError(f"mask must be (H, W), got {tuple(mask.shape)}")
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
        self.register_buffer("mask", mask.float(), persistent=False)
        self.weight, self.window_size, self.sigma = float(weight), window_size, float(sigma)
        self.data_range, self.average = float(data_range), average

    def forward(self, texture: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.weight * face_structure_loss(texture, reference, self.mask, self.window_size, self.sigma,
                                                 self.data_range, self.average)
