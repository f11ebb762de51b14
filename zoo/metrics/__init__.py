"""Thin wrappers over torchmetrics / kornia / lpips with every convention fixed and stated.

- `texture_metrics`: L1 / PSNR / SSIM of UV textures on texel-mask splits (all / visible / invisible).
- `build_image_metrics(variant, reid)`: SSIM, PSNR, LPIPS(alex), CosSim of renders vs real images,
  variants "standard" and "texformer".
- `NovelViewMetrics`: those image metrics over every ordered pair of views of the same person.
- LPIPS needs torchvision's AlexNet weights already on disk; otherwise it is reported unavailable.
"""
from zoo.metrics.image import (
    VARIANTS,
    ImageMetrics,
    build_image_metrics,
    reid_cosine_similarity,
    standard_psnr,
    standard_ssim,
    texformer_ssim,
    uint8_round_trip,
)
from zoo.metrics.lpips import ALEXNET_FILE, MetricUnavailable, alexnet_weights_path, load_lpips_alex, lpips_status
from zoo.metrics.novel_view import NovelViewMetrics, render_scores
from zoo.metrics.texture import TEXTURE_METRICS, texture_metrics

__all__ = [
    "ALEXNET_FILE",
    "TEXTURE_METRICS",
    "VARIANTS",
    "ImageMetrics",
    "MetricUnavailable",
    "NovelViewMetrics",
    "alexnet_weights_path",
    "build_image_metrics",
    "load_lpips_alex",
    "lpips_status",
    "reid_cosine_similarity",
    "render_scores",
    "standard_psnr",
    "standard_ssim",
    "texformer_ssim",
    "texture_metrics",
    "uint8_round_trip",
]
