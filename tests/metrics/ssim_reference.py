"""Independent float64 SSIM map for the metric tests: an explicit sum over the 11x11 window offsets
(no convolution), reflect (numpy 'reflect' = torch 'reflect') or zero padding."""
from __future__ import annotations

import math

import torch


def _shift_index(n: int, d: int, padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(n) + d
    valid = (idx >= 0) & (idx < n)
    if padding == "reflect":
        idx = torch.where(idx < 0, -idx, idx)
        idx = torch.where(idx >= n, 2 * (n - 1) - idx, idx)
        valid = torch.ones(n, dtype=torch.bool)
    return idx.clamp(0, n - 1), valid


def brute_ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float, padding: str,
                   window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x, y = x.double(), y.double()
    r = window // 2
    g = [math.exp(-((i - r) ** 2) / (2 * sigma ** 2)) for i in range(window)]
    g = [v / sum(g) for v in g]
    h, w = x.shape[-2:]
    moments = [torch.zeros_like(x) for _ in range(5)]
    for di in range(-r, r + 1):
        rows, row_ok = _shift_index(h, di, padding)
        for dj in range(-r, r + 1):
            cols, col_ok = _shift_index(w, dj, padding)
            ok = (row_ok[:, None] & col_ok[None, :]).double()
            xs = x[..., rows, :][..., cols] * ok
            ys = y[..., rows, :][..., cols] * ok
            wt = g[di + r] * g[dj + r]
            for m, v in zip(moments, (xs, ys, xs * xs, ys * ys, xs * ys)):
                m += wt * v
    mx, my, sxx, syy, sxy = moments
    vx, vy, cov = sxx - mx * mx, syy - my * my, sxy - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
