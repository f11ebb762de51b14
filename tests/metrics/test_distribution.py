"""Wasserstein distances against scipy.stats.wasserstein_distance (an independent implementation)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from zoo.metrics.distribution import random_directions, sliced_wasserstein, wasserstein_1d


@pytest.mark.parametrize("n, m", [(7, 7), (5, 9), (1, 4)])
def test_wasserstein_1d_matches_scipy(n, m):
    rng = np.random.default_rng(n * 10 + m)
    u, v = rng.normal(size=n), rng.normal(1.0, 2.0, size=m)
    ours = wasserstein_1d(torch.from_numpy(u), torch.from_numpy(v))
    assert ours.item() == pytest.approx(wasserstein_distance(u, v), rel=1e-12, abs=1e-12)


def test_wasserstein_1d_equal_sizes_is_the_sorted_sample_formula_and_batches():
    rng = np.random.default_rng(1)
    u, v = rng.uniform(size=(3, 11)), rng.uniform(size=(3, 11))
    ours = wasserstein_1d(torch.from_numpy(u), torch.from_numpy(v))
    sorted_formula = np.abs(np.sort(u, 1) - np.sort(v, 1)).mean(1)
    np.testing.assert_allclose(ours.numpy(), sorted_formula, rtol=1e-12)
    assert wasserstein_1d(torch.from_numpy(u), torch.from_numpy(u)).abs().max().item() == 0.0


def test_wasserstein_1d_of_a_constant_is_the_mean_distance():
    v = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    assert wasserstein_1d(torch.tensor([1.0], dtype=torch.float64), v).item() == pytest.approx((1 + 0 + 2) / 3)


def test_sliced_wasserstein_is_the_mean_of_scipy_over_the_projections():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 3)), rng.normal(0.5, 0.3, size=(25, 3))
    directions = random_directions(16, 3, torch.Generator().manual_seed(0), torch.float64)
    ours = sliced_wasserstein(torch.from_numpy(x), torch.from_numpy(y), directions=directions)
    d = directions.numpy()
    reference = np.mean([wasserstein_distance(x @ t, y @ t) for t in d])
    assert ours.item() == pytest.approx(reference, rel=1e-12)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, rtol=1e-12)


def test_sliced_wasserstein_of_a_translation_is_half_its_length_in_3d():
    # A cloud and its copy shifted by c: W1 along theta is |<theta, c>|, and over the uniform sphere
    # in 3-D, E |<theta, c>| = |c| / 2.
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    c = torch.tensor([0.3, -0.4, 1.2], dtype=torch.float64)
    value = sliced_wasserstein(x, x + c, num_projections=20000, generator=torch.Generator().manual_seed(4))
    assert value.item() == pytest.approx(c.norm().item() / 2, rel=0.02)


def test_sliced_wasserstein_in_1d_is_w1():
    x, y = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [5.0], [6.0]])
    expected = wasserstein_distance([0.0, 2.0], [1.0, 5.0, 6.0])
    value = sliced_wasserstein(x, y, num_projections=5, generator=torch.Generator().manual_seed(0))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert not math.isnan(expected)


def test_bad_shapes_name_the_values():
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        sliced_wasserstein(torch.zeros(3, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least one value"):
        wasserstein_1d(torch.zeros(0), torch.zeros(3))
