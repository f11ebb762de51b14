"""Beta schedules: invariants, DINAR's endpoints, cosine against its closed form in float64."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from zoo.diffusion import BETA_SCHEDULES, make_beta_schedule


@pytest.mark.parametrize("name", BETA_SCHEDULES)
def test_invariants(name):
    betas = make_beta_schedule(name, 1000, 3e-4, 2e-2)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert ((betas > 0) & (betas < 1)).all()
    abar = torch.cumprod(1 - betas, 0)
    assert (abar[1:] < abar[:-1]).all(), "alphas_cumprod must be strictly decreasing"


def test_dinar_scaled_linear_endpoints_and_shape():
    betas = make_beta_schedule("scaled_linear", 1000, 3e-4, 2e-2)
    assert betas[0].item() == pytest.approx(3e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(2e-2, rel=1e-12)
    roots = betas.sqrt()
    steps = roots[1:] - roots[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, (2e-2 ** 0.5 - 3e-4 ** 0.5) / 999), rtol=1e-9, atol=0)


def test_linear_is_linear_in_beta():
    betas = make_beta_schedule("linear", 11, 1e-4, 2e-2)
    expected = [1e-4 + i * (2e-2 - 1e-4) / 10 for i in range(11)]
    torch.testing.assert_close(betas, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)


def test_cosine_matches_closed_form_float64():
    T, s = 1000, 0.008
    betas = make_beta_schedule("cosine", T)
    abar = torch.cumprod(1 - betas, 0)
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    closed = torch.tensor([f[t + 1] / f[0] for t in range(T)], dtype=torch.float64)
    unclipped = betas < 0.999
    assert unclipped[:-1].all()  # only the last step is clipped
    torch.testing.assert_close(abar[unclipped], closed[unclipped], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name,diffusers_name", [("linear", "linear"), ("scaled_linear", "scaled_linear"),
                                                 ("cosine", "squaredcos_cap_v2")])
def test_matches_diffusers_schedules(name, diffusers_name):
    ours = make_beta_schedule(name, 1000, 3e-4, 2e-2)
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_start=3e-4, beta_end=2e-2, beta_schedule=diffusers_name).betas
    np.testing.assert_allclose(ours.numpy(), theirs.double().numpy(), rtol=1e-5, atol=1e-7)


def test_invalid():
    with pytest.raises(ValueError, match="beta schedule"):
        make_beta_schedule("quadratic")
    with pytest.raises(ValueError, match="beta_start"):
        make_beta_schedule("linear", 10, 0.5, 0.1)
