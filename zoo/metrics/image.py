"""Image metrics of renders against real images, as named variants.

Every metric returns one value per image, (B,); aggregate over a test set with a mean. Images are
(B, 3, H, W) in [-1, 1]. Values depend on conventions that papers rarely state, so each variant
fixes them all:

"standard" (data-range correct; compares the two images as given, composite before calling):
- SSIM: torchmetrics, images clamped and mapped to [0, 1], data range 1 (C1 = 0.01^2, C2 = 0.03^2),
  Gaussian window 11, sigma 1.5, reflect padding by 5, mean of the same-size SSIM map.
- PSNR: torchmetrics, [0, 1], data range 1, per image.
- LPIPS: `lpips` AlexNet v0.1 on the [-1, 1] images (see `zoo.metrics.lpips`; unavailable without
  the backbone weights on disk).
- CosSim: mean over layers 1-4 of the cosine between flattened ReID features (needs `reid`, PCB in
  the papers); CosSim-R ("cossim_r"): the same with a second ReID network (`reid_r`, torchreid's
  ResNet-50 at 256x128 in the papers, `zoo.modules.reid.TorchreidResNet50`).

"texformer" (Texformer's evaluation code, for comparison with published numbers):
- render clamped to [-1, 1]; render, real image and render mask go through uint8
  (x -> floor((x + 1) / 2 * 255), as numpy's astype(uint8)) and back;
- SSIM on render * mask vs image * mask, still in [-1, 1] but with the range-1 constants
  (C1 = 0.01^2, C2 = 0.03^2), Gaussian 11 / 1.5, zero padding, mean of the same-size map
  (kornia's SSIM map on zero-padded images with 'valid' padding, eps 0);
- LPIPS(alex) on the same masked images;
- CosSim and CosSim-R on render * mask + background * (1 - mask) vs the real image (the render
  alone when no background is given).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from kornia.metrics import ssim as kornia_ssim_map
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.functional.regression import cosine_similarity

from zoo.metrics.lpips import MetricUnavailable, load_lpips_alex
from zoo.utils.frozen import check_frozen, check_image

VARIANTS = ("standard", "texformer")


@torch.no_grad()
def reid_cosine_similarity(reid: nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CosSim: mean over layers 1-4 of cos(flatten(phi_j(pred)), flatten(phi_j(target))), per image (B,)."""
    check_frozen(reid, "reid_cosine_similarity")
    check_image(pred, "pred")
    check_image(target, "target")
    fp, ft = reid.features(pred), reid.features(target)
    per_layer = [cosine_similarity(a.flatten(1), b.flatten(1), reduction="none") for a, b in zip(fp, ft)]
    return torch.stack(per_layer).mean(0)


def standard_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of the "standard" variant, per image (B,)."""
    p, t = (pred.clamp(-1, 1) + 1) / 2, (target.clamp(-1, 1) + 1) / 2
    return structural_similarity_index_measure(p, t, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                               data_range=1.0, reduction="none")


def standard_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR of the "standard" variant (data range 1 on [0, 1]), per image (B,)."""
    p, t = (pred.clamp(-1, 1) + 1) / 2, (target.clamp(-1, 1) + 1) / 2
    return peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))


def texformer_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Texformer's SSIM: range-1 constants on the given values, zero padding, map mean; per image (B,)."""
    pad = 11 // 2
    p = F.pad(pred, (pad, pad, pad, pad))
    t = F.pad(target, (pad, pad, pad, pad))
    return kornia_ssim_map(p, t, 11, max_val=1.0, eps=0.0, padding="valid").flatten(1).mean(1)


def uint8_round_trip(x: torch.Tensor, low: float = -1.0) -> torch.Tensor:
    """x in [low, 1] -> uint8 by truncation (numpy astype) -> back; low = -1 for images, 0 for masks."""
    scale = 255.0 / (1.0 - low)
    return torch.floor((x.clamp(low, 1.0) - low) * scale) / scale + low


class ImageMetrics(nn.Module):
    """The metrics of one variant; call it with (pred, target[, mask, background]) -> {name: (B,)}.

    Args:
        variant: "standard" or "texformer" (see the module docstring).
        reid: frozen ReID network for CosSim (omitted -> no "cossim").
        reid_r: frozen second ReID network for CosSim-R (omitted -> no "cossim_r").
        use_lpips: try to build LPIPS(alex); see `unavailable` for why it is missing.
        hub_dir: torch hub folder holding checkpoints/alexnet-owt-7be5be79.pth (default torch.hub.get_dir()).

    Attributes:
        unavailable: {metric name: reason} for metrics that cannot be computed here.
    """

    def __init__(self, variant: str, reid: nn.Module | None = None, use_lpips: bool = True,
                 hub_dir: str | os.PathLike | None = None, reid_r: nn.Module | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown image metric variant {variant!r}; known variants: {', '.join(VARIANTS)}")
        self.variant = variant
        self.unavailable: dict[str, str] = {}
        if reid is not None:
            check_frozen(reid, f"ImageMetrics({variant!r})")
        else:
            self.unavailable["cossim"] = "unavailable: no ReID network given"
        self.reid = reid
        if reid_r is not None:
            check_frozen(reid_r, f"ImageMetrics({variant!r}) CosSim-R")
        else:
            self.unavailable["cossim_r"] = "unavailable: no CosSim-R network given"
        self.reid_r = reid_r
        self.lpips = None
        if use_lpips:
            try:
                self.lpips = load_lpips_alex(hub_dir)
            except MetricUnavailable as err:
                self.unavailable["lpips"] = str(err)
        else:
            self.unavailable["lpips"] = "unavailable: disabled (use_lpips=False)"

    def train(self, mode: bool = True):
        super().train(mode)
        for net in (self.reid, self.reid_r, self.lpips):
            if net is not None:
                net.eval()
        return self

    @property
    def names(self) -> tuple[str, ...]:
        base = ("ssim", "psnr", "lpips", "cossim", "cossim_r") if self.variant == "standard" else (
            "ssim", "lpips", "cossim", "cossim_r")
        return tuple(n for n in base if n not in self.unavailable)

    @torch.no_grad()
    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                background: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Args: pred (render) and target (real image) (B, 3, H, W) in [-1, 1]; for "texformer" the
        render mask (B, 1, H, W) in [0, 1] (required) and an optional background (B, 3, H, W)."""
        check_image(pred, "pred")
        check_image(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
        if self.variant == "standard":
            if mask is not None or background is not None:
                raise ValueError("the 'standard' variant compares the images as given: composite the render "
                                 "yourself instead of passing mask / background")
            out = {"ssim": standard_ssim(pred, target), "psnr": standard_psnr(pred, target)}
            if self.lpips is not None:
                out["lpips"] = self.lpips(pred.clamp(-1, 1), target.clamp(-1, 1)).flatten()
            if self.reid is not None:
                out["cossim"] = reid_cosine_similarity(self.reid, pred, target)
            if self.reid_r is not None:
                out["cossim_r"] = reid_cosine_similarity(self.reid_r, pred, target)
            return out
        if mask is None:
            raise ValueError("the 'texformer' variant needs the render mask (B, 1, H, W)")
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] != pred.shape[0] or mask.shape[-2:] != pred.shape[-2:]:
            raise ValueError(f"mask must be (B, 1, H, W) matching {tuple(pred.shape)}, got {tuple(mask.shape)}")
        render = uint8_round_trip(pred)
        real = uint8_round_trip(target)
        m = uint8_round_trip(mask.to(pred.dtype), low=0.0)
        out = {"ssim": texformer_ssim(render * m, real * m)}
        if self.lpips is not None:
            out["lpips"] = self.lpips(render * m, real * m).flatten()
        shown = render if background is None else render * m + background * (1 - m)
        if self.reid is not None:
            out["cossim"] = reid_cosine_similarity(self.reid, shown, real)
        if self.reid_r is not None:
            out["cossim_r"] = reid_cosine_similarity(self.reid_r, shown, real)
        return out


def build_image_metrics(variant: str, reid: nn.Module | None = None, use_lpips: bool = True,
                        hub_dir: str | os.PathLike | None = None, reid_r: nn.Module | None = None) -> ImageMetrics:
    """`ImageMetrics` for a variant name; an unknown name raises ValueError listing the known ones."""
    return ImageMetrics(variant, reid=reid, use_lpips=use_lpips, hub_dir=hub_dir, reid_r=reid_r)
