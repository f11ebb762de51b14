"""UV texture metrics against a ground-truth texture, restricted to texel masks.

Inputs are textures in [-1, 1]; they are clamped to [-1, 1] and mapped to [0, 1], and every metric
is computed there with data range 1 (torchmetrics):
- L1: mean absolute error over the selected texels and channels;
- PSNR: 10 log10(1 / MSE) over the selected texels and channels;
- SSIM: torchmetrics' SSIM map (Gaussian window 11, sigma 1.5, reflect padding, same size as the
  texture) averaged over the selected texels and channels. The window still reads texels just
  outside the mask; that is what "masked SSIM" means here.
Splits: "all" = `mask`; with a `visible` mask also "visible" = mask & visible and
"invisible" = mask & ~visible (texels seen / not seen in the input image).
"""
from __future__ import annotations

import math

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.functional.regression import mean_absolute_error

TEXTURE_METRICS = ("l1", "psnr", "ssim")


def _as_texel_mask(mask: torch.Tensor, like: torch.Tensor, name: str) -> torch.Tensor:
    """(H, W), (B, H, W) or (B|1, 1, H, W) -> bool (B, 1, H, W)."""
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[:, None]
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != like.shape[-2:] \
            or mask.shape[0] not in (1, like.shape[0]):
        raise ValueError(f"{name} must be (H, W), (B, H, W) or (B, 1, H, W) matching {tuple(like.shape)}, "
                         f"got {tuple(mask.shape)}")
    return (mask > 0.5).expand(like.shape[0], 1, *like.shape[-2:])


def texture_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    visible: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-texture L1 / PSNR / SSIM on each texel split.

    Args:
        pred, target: (B, C, H, W) textures in [-1, 1].
        mask: texels that exist in the UV atlas (H, W), (B, H, W) or (B, 1, H, W); > 0.5 counts.
        visible: optional mask of the texels visible in the input image, same shapes.

    Returns:
        {"<metric>/<split>": (B,) tensor}, e.g. "psnr/invisible". A texture whose split is empty gets
        NaN for that split (aggregate with nanmean); identical textures give PSNR inf.
    """
    if pred.dim() != 4 or pred.shape != target.shape:
        raise ValueError(f"pred and target must be equal (B, C, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}")
    p = (pred.detach().clamp(-1, 1) + 1) / 2
    t = (target.detach().clamp(-1, 1) + 1) / 2
    splits = {"all": _as_texel_mask(mask, p, "mask")}
    if visible is not None:
        seen = _as_texel_mask(visible, p, "visible")
        splits["visible"] = splits["all"] & seen
        splits["invisible"] = splits["all"] & ~seen
    _, ssim_map = structural_similarity_index_measure(p, t, gaussian_kernel=True, sigma=1.5, kernel_size=11,
                                                      data_range=1.0, reduction="none", return_full_image=True)
    out: dict[str, torch.Tensor] = {}
    for split, m in splits.items():
        m = m.expand_as(p)
        values = {name: torch.full((p.shape[0],), math.nan, dtype=p.dtype, device=p.device) for name in TEXTURE_METRICS}
        for b in range(p.shape[0]):
            if not bool(m[b].any()):
                continue
            pb, tb = p[b][m[b]], t[b][m[b]]
            values["l1"][b] = mean_absolute_error(pb, tb)
            values["psnr"][b] = peak_signal_noise_ratio(pb, tb, data_range=1.0)
            values["ssim"][b] = ssim_map[b][m[b]].mean()
        for name, v in values.items():
            out[f"{name}/{split}"] = v
    return out
