"""Forward process, training targets and the training loss against hand computations."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.diffusion import GaussianDiffusion


def hand_alpha_bar(t: int, T: int = 1000, b0: float = 3e-4, b1: float = 2e-2) -> float:
    prod = 1.0
    for i in range(t + 1):
        beta = (math.sqrt(b0) + i * (math.sqrt(b1) - math.sqrt(b0)) / (T - 1)) ** 2
        prod *= 1.0 - beta
    return prod


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_targets_against_hand_computation(prediction_type):
    diffusion = GaussianDiffusion(prediction_type=prediction_type)
    x0 = torch.tensor([[[[0.5, -1.0]]], [[[2.0, 0.25]]]], dtype=torch.float64)
    noise = torch.tensor([[[[-0.3, 0.7]]], [[[1.5, -2.0]]]], dtype=torch.float64)
    t = torch.tensor([0, 617])
    x_t = diffusion.add_noise(x0, noise, t)
    target = diffusion.training_target(x0, noise, t)
    for b, step in enumerate(t.tolist()):
        a = hand_alpha_bar(step)
        for j in range(2):
            x, n = x0[b, 0, 0, j].item(), noise[b, 0, 0, j].item()
            assert x_t[b, 0, 0, j].item() == pytest.approx(math.sqrt(a) * x + math.sqrt(1 - a) * n, rel=1e-12)
            expected = {"epsilon": n, "sample": x,
                        "v_prediction": math.sqrt(a) * n - math.sqrt(1 - a) * x}[prediction_type]
            assert target[b, 0, 0, j].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # the target inverts back to x0 through predict_x0
    torch.testing.assert_close(diffusion.predict_x0(target, x_t, t), x0, rtol=1e-10, atol=1e-10)


def test_training_loss_concatenates_condition_and_is_mse():
    diffusion = GaussianDiffusion(num_train_timesteps=100)
    seen = {}

    def denoiser(x, t):
        seen["x"], seen["t"] = x, t
        return x[:, :2] * 0.5

    x0, cond = torch.randn(3, 2, 4, 4), torch.randn(3, 3, 4, 4)
    out = diffusion.training_loss(denoiser, x0, cond=cond, generator=torch.Generator().manual_seed(0))
    assert seen["x"].shape == (3, 5, 4, 4)
    torch.testing.assert_close(seen["x"][:, 2:], cond)
    assert seen["t"].dtype == torch.long and ((seen["t"] >= 0) & (seen["t"] < 100)).all()
    torch.testing.assert_close(out.loss, ((out.x_t * 0.5 - out.noise) ** 2).mean())
    again = diffusion.training_loss(denoiser, x0, cond=cond, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.loss, again.loss), "deterministic given a generator"
    l1 = diffusion.training_loss(denoiser, x0, cond=cond, t=out.t, noise=out.noise, loss_type="l1")
    torch.testing.assert_close(l1.loss, (out.x_t * 0.5 - out.noise).abs().mean())


def test_training_timesteps_are_uniform_over_the_whole_grid():
    """The latent-diffusion loop draws t from the global generator (no `t`, no generator): every step
    0..T-1, the high-noise end included, equally often (chi-square against uniform, scipy)."""
    from scipy.stats import chisquare

    diffusion = GaussianDiffusion()
    torch.manual_seed(0)
    t = torch.cat([diffusion.training_loss(lambda x, t: x, torch.zeros(4000, 1, 1, 1)).t for _ in range(25)])
    counts = torch.bincount(t, minlength=1000)
    assert len(counts) == 1000 and counts.min() > 0
    assert chisquare(counts.numpy()).pvalue > 1e-3
    assert (t >= 800).float().mean().item() == pytest.approx(0.2, abs=0.01)


def test_loss_gradients_reach_a_module():
    diffusion = GaussianDiffusion(num_train_timesteps=10)
    net = torch.nn.Conv2d(3, 2, 1)
    out = diffusion.training_loss(lambda x, t: net(x), torch.randn(2, 2, 4, 4), cond=torch.randn(2, 1, 4, 4))
    out.loss.backward()
    assert net.weight.grad.abs().sum() > 0


def test_invalid():
    with pytest.raises(ValueError, match="prediction_type"):
        GaussianDiffusion(prediction_type="score")
    diffusion = GaussianDiffusion(num_train_timesteps=10)
    with pytest.raises(ValueError, match="timesteps"):
        diffusion.add_noise(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.tensor([10]))
    with pytest.raises(ValueError, match="cond"):
        diffusion.training_loss(lambda x, t: x, torch.zeros(2, 1, 2, 2), cond=torch.zeros(1, 1, 2, 2))
