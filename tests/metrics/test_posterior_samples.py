"""Averaged-sample errors and calibration: brute-force float64 loops and the Gaussian law s^2 (1 + 1/K)."""
from __future__ import annotations

import pytest
import torch
from scipy.stats import t as student_t

from zoo.metrics.posterior_samples import calibration, fit_inverse_k, k_mean_errors, sample_variance


def _data(k=8, b=2, c=3, h=4, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = torch.randn(k, b, c, h, w, generator=g, dtype=torch.float64)
    target = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    mask = (torch.rand(b, 1, h, w, generator=g) > 0.4).double()
    return samples, target, mask


def test_k_mean_errors_brute_force():
    samples, target, mask = _data()
    out = k_mean_errors(samples, target, mask, [1, 2, 3, 8])
    for k in (1, 2, 3, 8):
        for b in range(target.shape[0]):
            l1s, mses = [], []
            for g in range(8 // k):
                mean = sum(samples[g * k + i, b] for i in range(k)) / k
                vals = [(mean[ch, y, x] - target[b, ch, y, x]).item()
                        for ch in range(3) for y in range(4) for x in range(5) if mask[b, 0, y, x] > 0.5]
                l1s.append(sum(abs(v) for v in vals) / len(vals))
                mses.append(sum(v * v for v in vals) / len(vals))
            assert out[k]["l1"][b].item() == pytest.approx(sum(l1s) / len(l1s), rel=1e-12)
            assert out[k]["mse"][b].item() == pytest.approx(sum(mses) / len(mses), rel=1e-12)


def test_sample_variance_brute_force():
    samples, _, mask = _data(k=4)
    out = sample_variance(samples, mask)
    for b in range(2):
        vals = []
        for ch in range(3):
            for y in range(4):
                for x in range(5):
                    if mask[b, 0, y, x] > 0.5:
                        v = [samples[i, b, ch, y, x].item() for i in range(4)]
                        mu = sum(v) / 4
                        vals.append(sum((a - mu) ** 2 for a in v) / 3)
        assert out[b].item() == pytest.approx(sum(vals) / len(vals), rel=1e-12)


def test_calibrated_gaussian_draws_follow_one_plus_one_over_k():
    # Per texel a mean mu and spread s; the truth and the K samples are independent draws of
    # N(mu, s^2): calibrated, so MSE of the K-mean = s^2 (1 + 1/K) and the ratio is 1.
    g = torch.Generator().manual_seed(5)
    k, shape = 8, (1, 1, 200, 200)
    mu = torch.randn(shape, generator=g, dtype=torch.float64)
    s = 0.5
    samples = mu + s * torch.randn(k, *shape, generator=g, dtype=torch.float64)
    target = mu + s * torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.ones(1, 1, 200, 200, dtype=torch.float64)
    errors = k_mean_errors(samples, target, mask, [1, 2, 4, 8])
    for kk in (1, 2, 4, 8):
        assert errors[kk]["mse"].item() == pytest.approx(s ** 2 * (1 + 1 / kk), rel=0.03)
    cal = calibration(samples, target, mask)
    assert cal["variance"].item() == pytest.approx(s ** 2, rel=0.02)
    assert cal["ratio"].item() == pytest.approx(1.0, rel=0.03)
    # (y - mean_K) / (s_hat sqrt(1 + 1/K)) is Student-t with K - 1 degrees of freedom
    assert cal["coverage"].item() == pytest.approx(2 * student_t.cdf(2.0, k - 1) - 1, abs=0.01)
    a, b = fit_inverse_k([1, 2, 4, 8], [errors[kk]["mse"].item() for kk in (1, 2, 4, 8)])
    assert a == pytest.approx(s ** 2, rel=0.05) and b == pytest.approx(s ** 2, rel=0.1)


def test_biased_sampler_has_ratio_above_one():
    g = torch.Generator().manual_seed(6)
    shape = (1, 1, 100, 100)
    samples = 0.1 * torch.randn(4, *shape, generator=g, dtype=torch.float64)
    target = 1.0 + torch.zeros(shape, dtype=torch.float64)
    cal = calibration(samples, target, torch.ones(1, 1, 100, 100))
    assert cal["ratio"].item() > 50 and cal["coverage"].item() < 0.01


def test_fit_inverse_k_exact_and_errors():
    assert fit_inverse_k([1, 2, 4], [3.0, 2.0, 1.5]) == pytest.approx((1.0, 2.0))
    with pytest.raises(ValueError, match="K must be in"):
        k_mean_errors(*_data(k=2), [3])
    with pytest.raises(ValueError, match="mask must be"):
        k_mean_errors(torch.zeros(2, 1, 1, 3, 3), torch.zeros(1, 1, 3, 3), torch.zeros(1, 3, 3), [1])
