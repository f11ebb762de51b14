"""Random RefineTex batches with the keys the datamodules give (`RefineTexSystem`'s batch contract)
and the UV maps it reads, for the system tests and the RefineTex benchmarks."""
from __future__ import annotations

import torch


def random_refinetex_batch(batch: int, image_size: tuple[int, int], texture_size: int,
                           generator: torch.Generator) -> dict:
    """Source and novel views (image in [-1, 1], parts, uv, mask), the ground-truth texture with its atlas
    and known masks, and a background, drawn from `generator` in a fixed order (tests pin losses on it)."""
    (H, W), T = image_size, texture_size
    out = {}
    for prefix in ("", "novel_"):
        out[prefix + "image"] = torch.rand(batch, 3, H, W, generator=generator) * 2 - 1
        out[prefix + "parts"] = torch.randint(0, 8, (batch, H, W), generator=generator)
        out[prefix + "uv"] = torch.rand(batch, H, W, 2, generator=generator) * 1.8 - 0.9
        out[prefix + "mask"] = (torch.rand(batch, 1, H, W, generator=generator) > 0.3).float()
    out["texture"] = torch.rand(batch, 3, T, T, generator=generator) * 2 - 1
    out["texture_mask"] = torch.ones(batch, 1, T, T)
    out["known_mask"] = (torch.rand(batch, 1, T, T, generator=generator) > 0.5).float()
    out["background"] = torch.rand(batch, 3, H, W, generator=generator) * 2 - 1
    return out


def tiny_uv_maps(texture_size: int) -> dict:
    """The UV maps a datamodule provides: a face / hands mask (the first 4 texel rows) and a full atlas."""
    T = texture_size
    return {"face_hands_mask": torch.zeros(T, T, dtype=torch.bool).index_fill_(0, torch.arange(4), True),
            "texture_mask": torch.ones(1, T, T)}
