"""Face-structure loss (SSIM structure term) against hand values and a float64 brute-force loop."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.losses import FaceStructureLoss, face_structure_loss, ssim_structure_map


def _brute_structure(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float, c2: float,
                     min_var: float = 1e-5) -> torch.Tensor:
    """Independent loops: Gaussian-weighted local moments with zeros outside the image."""
    r = window // 2
    g = [math.exp(-((i - r) ** 2) / (2 * sigma ** 2)) for i in range(window)]
    g = [v / sum(g) for v in g]
    b, c, h, w = x.shape
    out = torch.zeros(b, c, h, w, dtype=torch.float64)
    for n in range(b):
        for k in range(c):
            for i in range(h):
                for j in range(w):
                    mx = my = sxx = syy = sxy = 0.0
                    for di in range(-r, r + 1):
                        for dj in range(-r, r + 1):
                            ii, jj = i + di, j + dj
                            if 0 <= ii < h and 0 <= jj < w:
                                wt = g[di + r] * g[dj + r]
                                xv, yv = float(x[n, k, ii, jj]), float(y[n, k, ii, jj])
                                mx += wt * xv
                                my += wt * yv
                                sxx += wt * xv * xv
                                syy += wt * yv * yv
                                sxy += wt * xv * yv
                    vx, vy = max(sxx - mx * mx, min_var), max(syy - my * my, min_var)
                    out[n, k, i, j] = (2 * (sxy - mx * my) + c2) / (2 * math.sqrt(vx) * math.sqrt(vy) + c2)
    return out


def test_window_one_by_hand():
    # A 1x1 window sees one texel: both variances are 0 -> clamped to 1e-5, covariance 0.
    x = torch.rand(1, 3, 2, 2, dtype=torch.float64)
    s = ssim_structure_map(x, -x, window_size=1, data_range=1.0)
    c2 = 0.03 ** 2
    torch.testing.assert_close(s, torch.full_like(s, c2 / (2 * 1e-5 + c2)))


@pytest.mark.parametrize("window", [3, 11])
def test_structure_map_brute_force(window):
    torch.manual_seed(0)
    x = torch.rand(1, 2, 6, 5, dtype=torch.float64) * 2 - 1
    y = 0.5 * x + 0.3 * torch.rand(1, 2, 6, 5, dtype=torch.float64)
    got = ssim_structure_map(x, y, window_size=window, sigma=1.5, data_range=2.0)
    expected = _brute_structure(x, y, window, 1.5, (0.03 * 2.0) ** 2)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_face_loss_masks_both_textures_and_averages():
    torch.manual_seed(0)
    tex = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    ref = torch.rand(1, 3, 8, 8, dtype=torch.float64) * 2 - 1
    mask = torch.zeros(8, 8, dtype=torch.float64)
    mask[2:6, 1:5] = 1
    s = _brute_structure(tex * mask, ref.expand_as(tex) * mask, 11, 1.5, 0.03 ** 2)
    got = face_structure_loss(tex, ref, mask)
    assert got.item() == pytest.approx(1 - s.mean().item(), rel=1e-9)
    in_mask = face_structure_loss(tex, ref, mask, average="mask")
    assert in_mask.item() == pytest.approx(1 - (s * mask).sum().item() / (mask.sum().item() * 6), rel=1e-9)
    module = FaceStructureLoss(mask)
    assert module(tex, ref).item() == pytest.approx(0.01 * got.item(), rel=1e-12)


def test_face_loss_gradients_no_nan():
    torch.manual_seed(0)
    tex = (torch.rand(2, 3, 12, 12) * 2 - 1).requires_grad_()
    mask = torch.zeros(12, 12)
    mask[3:9, 3:9] = 1
    loss = face_structure_loss(tex, torch.rand(1, 3, 12, 12) * 2 - 1, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(tex.grad).all() and tex.grad.abs().sum() > 0
    assert tex.grad[..., 0, 0].abs().sum() == 0  # texels outside the mask are multiplied by 0


def test_face_loss_rejects_bad_inputs():
    tex = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="reference"):
        face_structure_loss(tex, torch.zeros(2, 3, 8, 4), torch.ones(8, 8))
    with pytest.raises(ValueError, match="average"):
        face_structure_loss(tex, tex, torch.ones(8, 8), average="pixel")
    with pytest.raises(ValueError, match="window_size"):
        ssim_structure_map(tex, tex, window_size=4)
