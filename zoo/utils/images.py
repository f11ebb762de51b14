"""Conversions between the zoo's image tensors and uint8 pictures (logging, figures, PNGs)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from zoo.utils.files import atomic_file

# A fixed palette for part labels 0..7 (background black), used in every figure.
PART_PALETTE = torch.tensor([
    [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
    [245, 130, 48], [145, 30, 180], [70, 240, 240],
], dtype=torch.uint8)


def to_uint8(image: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """(..., C, H, W) float in `value_range` -> (..., H, W, C) uint8 (1 channel -> grey RGB)."""
    lo, hi = value_range
    x = ((image.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    x = x[..., :3, :, :]
    return (x * 255).round().byte().movedim(-3, -1)


def labels_to_uint8(labels: torch.Tensor) -> torch.Tensor:
    """(..., H, W) int part labels -> (..., H, W, 3) uint8 colours."""
    return PART_PALETTE[labels.detach().long().cpu().clamp(0, len(PART_PALETTE) - 1)]


def uv_to_uint8(uv: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 2) UV grid in [-1, 1] (background < -1) -> (..., H, W, 3) uint8 (u red, v green)."""
    uvc = ((uv.detach().float().cpu() + 1) / 2).clamp(0, 1)
    rgb = torch.cat([uvc, torch.zeros_like(uvc[..., :1])], -1)
    rgb[(uv[..., 0] < -1).cpu()] = 0
    return (rgb * 255).round().byte()


def grid(rows: list[list[torch.Tensor]], pad: int = 2, fill: int = 255) -> torch.Tensor:
    """Tile (H, W, 3) uint8 pictures of any sizes into one (rows x columns) picture, top-aligned."""
    heights = [max(p.shape[0] for p in row) for row in rows]
    n_cols = max(len(row) for row in rows)
    widths = [max(row[c].shape[1] for row in rows if c < len(row)) for c in range(n_cols)]
    out = torch.full((sum(heights) + pad * (len(rows) + 1), sum(widths) + pad * (n_cols + 1), 3), fill, dtype=torch.uint8)
    y = pad
    for r, row in enumerate(rows):
        x = pad
        for c, pic in enumerate(row):
            out[y:y + pic.shape[0], x:x + pic.shape[1]] = pic
            x += widths[c] + pad
        y += heights[r] + pad
    return out


def save_png(picture: torch.Tensor | np.ndarray, path: str | Path) -> Path:
    """Write a (H, W, 3) or (H, W) uint8 tensor or array as PNG (parent folders created; never
    half-written: `atomic_file`)."""
    from PIL import Image

    path = Path(path)
    array = picture.numpy() if isinstance(picture, torch.Tensor) else np.asarray(picture)
    with atomic_file(path) as temporary:
        Image.fromarray(np.ascontiguousarray(array)).save(temporary, format="PNG")
    return path


def log_picture(loggers, key: str, picture: torch.Tensor, step: int, fallback_dir: str | Path | None = None,
                caption: str | None = None) -> None:
    """Send one (H, W, 3) uint8 picture to every logger that takes images.

    W&B (`log_image`) and TensorBoard (`add_image`) get it directly; for loggers without image
    support (CSV) the PNG is written under `fallback_dir/images/` instead, so nothing is lost.
    """
    written = False
    for logger in loggers:
        if hasattr(logger, "log_image"):
            extra = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[picture.numpy()], step=step, **extra)
            written = True
        elif hasattr(getattr(logger, "experiment", None), "add_image"):
            logger.experiment.add_image(key, picture.permute(2, 0, 1), global_step=step)
            written = True
    if not written and loggers and fallback_dir is not None:
        save_png(picture, Path(fallback_dir) / "images" / f"{key.replace('/', '_')}_{step:07d}.png")


def preview(images: torch.Tensor, channels: Sequence[int] | None = None) -> torch.Tensor:
    """The 3 (or 1) channels of textures (B, C, H, W) shown in image grids (default the first 3)."""
    if channels is not None:
        return images[:, list(channels)]
    return images[:, :3] if images.shape[1] >= 3 else images[:, :1]
