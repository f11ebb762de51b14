"""Texture metrics: masked splits by hand, masked SSIM against a float64 brute-force SSIM map."""
from __future__ import annotations

import math

import pytest
import torch

from tests.metrics.ssim_reference import brute_ssim_map
from zoo.metrics import texture_metrics


def _textures():
    target = torch.zeros(1, 3, 8, 8, dtype=torch.float64)  # 0.5 in [0, 1]
    visible = torch.zeros(8, 8, dtype=torch.bool)
    visible[:, :4] = True
    mask = torch.ones(8, 8)
    mask[0, :] = 0  # the first row is not in the atlas
    pred = target.clone()
    pred[..., visible] = 0.2  # 0.1 off in [0, 1]
    pred[..., ~visible] = -0.6  # 0.3 off in [0, 1]
    return pred, target, mask, visible


def test_masked_splits_by_hand():
    pred, target, mask, visible = _textures()
    out = texture_metrics(pred, target, mask, visible)
    assert set(out) == {f"{m}/{s}" for m in ("l1", "psnr", "ssim") for s in ("all", "visible", "invisible")}
    # atlas rows 1..7: 28 visible and 28 invisible texels
    assert out["l1/visible"].item() == pytest.approx(0.1)
    assert out["l1/invisible"].item() == pytest.approx(0.3)
    assert out["l1/all"].item() == pytest.approx(0.2)
    assert out["psnr/visible"].item() == pytest.approx(10 * math.log10(1 / 0.01))
    assert out["psnr/invisible"].item() == pytest.approx(10 * math.log10(1 / 0.09))
    assert out["psnr/all"].item() == pytest.approx(10 * math.log10(1 / 0.05))
    assert all(v.shape == (1,) for v in out.values())


def test_masked_ssim_is_the_ssim_map_averaged_over_the_split():
    torch.manual_seed(0)
    pred = torch.rand(2, 3, 12, 12, dtype=torch.float64) * 2 - 1
    target = (pred + 0.3 * torch.randn_like(pred)).clamp(-1, 1)
    mask = torch.rand(2, 1, 12, 12) > 0.3
    visible = torch.rand(2, 1, 12, 12) > 0.5
    out = texture_metrics(pred, target, mask, visible)
    ssim = brute_ssim_map((pred + 1) / 2, (target + 1) / 2, data_range=1.0, padding="reflect")
    for split, m in (("all", mask), ("visible", mask & visible), ("invisible", mask & ~visible)):
        m = m.expand_as(pred)
        expected = torch.stack([ssim[b][m[b]].mean() for b in range(2)])
        torch.testing.assert_close(out[f"ssim/{split}"], expected, rtol=1e-6, atol=1e-9)


def test_empty_split_is_nan_and_no_visible_means_all_only():
    pred, target, mask, _ = _textures()
    out = texture_metrics(pred, target, mask, visible=torch.ones(8, 8))
    assert torch.isnan(out["l1/invisible"]).all() and torch.isfinite(out["l1/visible"]).all()
    assert set(texture_metrics(pred, target, mask)) == {"l1/all", "psnr/all", "ssim/all"}
    with pytest.raises(ValueError, match="mask must be"):
        texture_metrics(pred, target, torch.ones(7, 8))
