"""Errors of averaged posterior samples and the samples' calibration, on masked texels.

A sampler returns draws x_1..x_K of p(x | input); y is the one true value. For K independent draws
with mean mu and variance s^2 (per texel), the mean of K draws has

    E (mean_K - y)^2 = (mu - y)^2 + s^2 / K,

so its squared error falls with K towards the error of the sampler's own mean. When the sampler is
calibrated (y is itself a draw of the same distribution) E (mu - y)^2 = s^2 as well, and the
expected squared error is s^2 (1 + 1/K): one draw (K = 1) scores twice the error of the posterior
mean (the perception-distortion trade-off, Blau & Michaeli 2018). These functions measure each
term; all take samples (K, B, C, H, W), target (B, C, H, W) and a texel mask (B or 1, 1, H, W), and
average over the masked texels and the C channels of each item.
"""
from __future__ import annotations

import torch


def _check(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if samples.ndim != 5 or samples.shape[1:] != target.shape:
        raise ValueError(f"samples must be (K, B, C, H, W) matching target {tuple(target.shape)}, got {tuple(samples.shape)}")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, target.shape[0]) or mask.shape[2:] != target.shape[2:]:
        raise ValueError(f"mask must be (B or 1, 1, H, W) matching {tuple(target.shape)}, got {tuple(mask.shape)}")
    return (mask > 0.5).to(samples.dtype).expand(target.shape[0], target.shape[1], *target.shape[2:])


def _masked_mean(values: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean of (..., B, C, H, W) values over the masked texels and channels of each item -> (..., B);
    NaN for an item with no masked texel."""
    count = m.sum((-3, -2, -1))
    return (values * m).sum((-3, -2, -1)) / count.where(count > 0, torch.nan)


def k_mean_errors(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, ks: list[int] | tuple[int, ...]
                  ) -> dict[int, dict[str, torch.Tensor]]:
    """L1 and MSE of the mean of K samples, per item (B,), for each K in `ks`: the K samples are
    split into disjoint groups (samples 0..K-1, K..2K-1, ...; floor(K_total / K) groups) and the
    errors of the groups' means are averaged, so every K uses all the draws it can."""
    m = _check(samples, target, mask)
    out = {}
    for k in ks:
        if not 1 <= k <= samples.shape[0]:
            raise ValueError(f"K must be in [1, {samples.shape[0]}] (the samples given), got {k}")
        groups = samples[:samples.shape[0] // k * k].reshape(-1, k, *samples.shape[1:]).mean(1)
        diff = groups - target
        out[k] = {"l1": _masked_mean(diff.abs(), m).mean(0), "mse": _masked_mean(diff ** 2, m).mean(0)}
    return out


def sample_variance(samples: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per item (B,): the sample-to-sample variance (unbiased, over the K draws) averaged over the
    masked texels and channels; the s^2 above. Needs K >= 2."""
    if samples.ndim != 5 or samples.shape[0] < 2:
        raise ValueError(f"samples must be (K >= 2, B, C, H, W), got {tuple(samples.shape)}")
    m = _check(samples, samples[0], mask)
    return _masked_mean(samples.var(0, unbiased=True), m)


def calibration(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, z: float = 2.0) -> dict[str, torch.Tensor]:
    """Per item (B,), with all K draws:
    - "variance": `sample_variance` (s^2, the spread the sampler claims);
    - "deviation": mean (y - mean_K)^2 / (1 + 1/K), an unbiased estimate of E (y - mu)^2 (what the
      spread should be, if the sampler were calibrated);
    - "ratio": deviation / variance (1 when calibrated; > 1: the truth lies further from the
      samples' mean than they spread: a biased or over-confident sampler);
    - "coverage": fraction of masked texel-channels where |y - mean_K| <= z s sqrt(1 + 1/K), with
      s the per-texel sample standard deviation (for calibrated Gaussian draws the scaled deviation
      is Student-t with K - 1 degrees of freedom: 0.91 at z = 2 and K = 8, 0.95 as K grows).
    """
    m = _check(samples, target, mask)
    k = samples.shape[0]
    variance = sample_variance(samples, mask)
    diff = target - samples.mean(0)
    deviation = _masked_mean(diff ** 2, m) / (1 + 1 / k)
    inside = (diff.abs() <= z * samples.std(0, unbiased=True) * (1 + 1 / k) ** 0.5).to(samples.dtype)
    return {"variance": variance, "deviation": deviation, "ratio": deviation / variance, "coverage": _masked_mean(inside, m)}


def fit_inverse_k(ks: list[int] | tuple[int, ...], values: list[float] | tuple[float, ...]) -> tuple[float, float]:
    """Least-squares (A, B) of values ~ A + B / K: A is the error extrapolated to infinitely many
    samples (the sampler's mean), B the part that averaging removes (the sample variance)."""
    if len(ks) != len(values) or len(ks) < 2:
        raise ValueError(f"need two or more (K, value) pairs of equal count, got {len(ks)} and {len(values)}")
    design = torch.stack([torch.ones(len(ks), dtype=torch.float64), 1 / torch.tensor(ks, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, torch.tensor(values, dtype=torch.float64)[:, None]).solution
    return float(solution[0, 0]), float(solution[1, 0])
