"""Distances between empirical distributions that do not reward blur.

A per-texel L1 / L2 against one reference favours the posterior mean (a blur); these compare the
distribution of values instead (e.g. the colours of a texture's unseen texels against the true
texture's), where a constant fill scores as badly as its spread is wrong.

- `wasserstein_1d`: W1 between two 1-D empirical distributions with uniform weights, any sizes:
  the integral of |F_u - F_v| over the line (as `scipy.stats.wasserstein_distance`).
- `sliced_wasserstein`: the mean of `wasserstein_1d` over projections of D-dimensional point clouds
  on unit directions (Rabin et al. 2011; Bonneel et al. 2015), random unit vectors from a seeded
  generator unless given.
"""
from __future__ import annotations

import torch


def wasserstein_1d(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """W1 between the empirical distributions of u (..., N) and v (..., M) along the last axis,
    uniform weights; leading axes are batch axes (equal). Returns (...).

    Computed as the area between the two empirical CDFs (exact for any N, M): sort the pooled
    values, and sum |F_u - F_v| times the gap to the next pooled value."""
    if u.ndim < 1 or v.ndim < 1 or u.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"u and v must share their leading (batch) axes, got {tuple(u.shape)} and {tuple(v.shape)}")
    if u.shape[-1] == 0 or v.shape[-1] == 0:
        raise ValueError(f"u and v need at least one value each, got {u.shape[-1]} and {v.shape[-1]}")
    u_sorted, _ = torch.sort(u, dim=-1)
    v_sorted, _ = torch.sort(v, dim=-1)
    pooled, _ = torch.sort(torch.cat([u, v], dim=-1), dim=-1)
    gaps = pooled[..., 1:] - pooled[..., :-1]
    at = pooled[..., :-1].contiguous()
    cdf_u = torch.searchsorted(u_sorted.contiguous(), at, right=True).to(u.dtype) / u.shape[-1]
    cdf_v = torch.searchsorted(v_sorted.contiguous(), at, right=True).to(u.dtype) / v.shape[-1]
    return ((cdf_u - cdf_v).abs() * gaps).sum(-1)


def random_directions(num: int, dim: int, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`num` unit vectors (num, dim), uniform on the sphere (normalised Gaussian draws)."""
    if num < 1 or dim < 1:
        raise ValueError(f"need num >= 1 and dim >= 1, got num={num}, dim={dim}")
    d = torch.randn(num, dim, generator=generator, dtype=torch.float64)
    return (d / d.norm(dim=1, keepdim=True)).to(dtype)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, num_projections: int = 128,
                       generator: torch.Generator | None = None, directions: torch.Tensor | None = None) -> torch.Tensor:
    """Sliced W1 between point clouds x (N, D) and y (M, D): the mean over unit directions theta of
    `wasserstein_1d(x theta, y theta)`. `directions` (P, D) unit vectors; default `num_projections`
    random ones from `generator` (pass a seeded one: the value depends on the draw). Returns a
    scalar tensor. In 1-D (D = 1, direction +-1) it is W1 itself."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (N, D) and (M, D) with the same D, got {tuple(x.shape)} and {tuple(y.shape)}")
    if directions is None:
        directions = random_directions(num_projections, x.shape[1], generator, x.dtype)
    if directions.ndim != 2 or directions.shape[1] != x.shape[1]:
        raise ValueError(f"directions must be (P, {x.shape[1]}), got {tuple(directions.shape)}")
    directions = directions.to(x)
    return wasserstein_1d((x @ directions.T).T, (y @ directions.T).T).mean()
