"""Sampling through diffusers' schedulers and the inpainting loop."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.diffusion import SAMPLERS, GaussianDiffusion, erode_mask

SHAPE = (2, 3, 8, 8)


def oracle(diffusion: GaussianDiffusion, x0: torch.Tensor, channels: int = 3):
    """A perfect denoiser: knows x0 and returns the exact target for the noisy input it gets."""

    def denoiser(x, t):
        x_t = x[:, :channels]
        abar = diffusion.alphas_cumprod[t.cpu()].to(x_t).view(-1, 1, 1, 1)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        return diffusion.training_target(x0, eps, t)

    return denoiser


def random_mask(seed: int = 0) -> torch.Tensor:
    return (torch.rand(SHAPE[0], 1, *SHAPE[2:], generator=torch.Generator().manual_seed(seed)) > 0.4).float()


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_ddim_eta0_with_oracle_recovers_x0(prediction_type):
    # "trailing" ends on alpha-bar 1: the last step lands on the clean sample
    diffusion = GaussianDiffusion(prediction_type=prediction_type, ddim_timesteps="trailing")
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    out = diffusion.sample(oracle(diffusion, x0), SHAPE, sampler="ddim", num_steps=20, eta=0.0,
                           generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)


def _dinar_alphas_cumprod(T: int = 1000) -> list[float]:
    """DINAR's schedule written out by hand: beta_i = (sqrt(3e-4) + i / (T - 1) (sqrt(2e-2) - sqrt(3e-4)))^2."""
    a, b, out, prod = math.sqrt(3e-4), math.sqrt(2e-2), [], 1.0
    for i in range(T):
        prod *= 1.0 - (a + i / (T - 1) * (b - a)) ** 2
        out.append(prod)
    return out


@pytest.mark.parametrize("steps", [200, 50, 7])
def test_ddim_leading_grid_is_dinars(steps):
    """DINAR (latent diffusion's DDIM sampler): c = T // S, t = k c + 1 for k = S-1 .. 0, and the last
    update goes to alphas_cumprod[0] (eta 0: x = sqrt(abar_0) x0_hat + sqrt(1 - abar_0) eps)."""
    diffusion = GaussianDiffusion()
    seen = []

    def denoiser(x, t):
        seen.append(int(t[0]))
        return torch.full_like(x, 0.5)

    scheduler = diffusion.make_scheduler("ddim")
    scheduler.set_timesteps(steps)
    c = 1000 // steps
    assert scheduler.timesteps.tolist() == [k * c + 1 for k in reversed(range(steps))]
    diffusion.sample(denoiser, SHAPE, sampler="ddim", num_steps=steps, generator=torch.Generator().manual_seed(0))
    assert seen == [k * c + 1 for k in reversed(range(steps))]
    # the last step, in float64 by hand
    abar = _dinar_alphas_cumprod()
    x = torch.randn(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    eps = torch.full_like(x, 0.5)
    x0_hat = (x - math.sqrt(1 - abar[1]) * eps) / math.sqrt(abar[1])
    expected = math.sqrt(abar[0]) * x0_hat + math.sqrt(1 - abar[0]) * eps
    out = scheduler.step(eps.float(), scheduler.timesteps[-1], x.float(), eta=0.0).prev_sample
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampler", ["ddpm", "dpm++"])
def test_other_samplers_with_oracle_recover_x0(sampler):
    diffusion = GaussianDiffusion()
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    out = diffusion.sample(oracle(diffusion, x0), SHAPE, sampler=sampler, num_steps=15,
                           generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-3)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("erode", [False, True])
def test_known_region_holds_exactly_with_final_paste(sampler, erode):
    diffusion = GaussianDiffusion()
    known = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    mask = random_mask()
    cond = torch.cat([known, mask], 1)

    def denoiser(x, t):  # an arbitrary, non-oracle network stand-in
        assert x.shape == (2, 7, 8, 8)
        return torch.tanh(x[:, :3] + x[:, 3:6]) * 0.3

    out = diffusion.sample(denoiser, SHAPE, cond=cond, sampler=sampler, num_steps=8,
                           eta=1.0 if sampler == "ddim" else 0.0, known=known, known_mask=mask, erode=erode,
                           generator=torch.Generator().manual_seed(2), final_paste=True)
    region = diffusion.replacement_mask(mask, erode).expand(SHAPE)
    assert region.any() and not region.all()
    assert torch.equal(out[region], known[region])
    assert not torch.equal(out[~region], known[~region])
    if erode:
        assert region.sum() < (mask > 0.5).expand(SHAPE).sum()


def test_without_final_paste_the_last_update_is_kept():
    """DINAR keeps the last DDIM update in the known region (no latent paste after the last step); from
    t = 1 that update stays close to the known latent, but is not it."""
    diffusion = GaussianDiffusion()
    known, mask = torch.randn(SHAPE), random_mask()

    def denoiser(x, t):
        return torch.tanh(x) * 0.3

    out = diffusion.sample(denoiser, SHAPE, sampler="ddim", num_steps=8, eta=1.0, known=known, known_mask=mask,
                           generator=torch.Generator().manual_seed(2))
    region = diffusion.replacement_mask(mask).expand(SHAPE)
    assert not torch.equal(out[region], known[region])
    assert (out[region] - known[region]).abs().max() < 0.15


def test_known_region_is_noised_to_the_current_timestep():
    diffusion = GaussianDiffusion(num_train_timesteps=1000)
    known = torch.randn(SHAPE)
    mask = torch.ones(SHAPE[0], 1, *SHAPE[2:])
    std = []

    def denoiser(x, t):
        std.append(((x - diffusion.alphas_cumprod[t[0]].sqrt().item() * known).std().item(),
                    (1 - diffusion.alphas_cumprod[t[0]]).sqrt().item()))
        return torch.zeros_like(x)

    diffusion.sample(denoiser, SHAPE, sampler="ddim", num_steps=5, known=known, known_mask=mask,
                     generator=torch.Generator().manual_seed(0))
    for measured, expected in std:
        assert measured == pytest.approx(expected, rel=0.25)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_deterministic_given_generator(sampler):
    diffusion = GaussianDiffusion()
    kw = dict(sampler=sampler, num_steps=6, known=torch.randn(SHAPE), known_mask=random_mask(),
              eta=1.0 if sampler == "ddim" else 0.0)
    den = lambda x, t: 0.1 * x  # noqa: E731
    a = diffusion.sample(den, SHAPE, generator=torch.Generator().manual_seed(5), **kw)
    b = diffusion.sample(den, SHAPE, generator=torch.Generator().manual_seed(5), **kw)
    c = diffusion.sample(den, SHAPE, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_erode_against_brute_force():
    mask = random_mask(7)
    eroded = erode_mask(mask, 3)
    h, w = mask.shape[-2:]
    for b in range(mask.shape[0]):
        for i in range(h):
            for j in range(w):
                window = mask[b, 0, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
                assert eroded[b, 0, i, j] == window.min()


def test_invalid_calls():
    diffusion = GaussianDiffusion(num_train_timesteps=10)
    den = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="sampler"):
        diffusion.sample(den, SHAPE, sampler="euler", num_steps=5)
    with pytest.raises(ValueError, match="eta"):
        diffusion.sample(den, SHAPE, sampler="ddpm", eta=1.0, num_steps=5)
    with pytest.raises(ValueError, match="together"):
        diffusion.sample(den, SHAPE, known=torch.zeros(SHAPE), num_steps=5)
    with pytest.raises(ValueError, match="num_steps"):
        diffusion.sample(den, SHAPE, num_steps=11)


def test_init_starts_from_the_noised_init_at_the_first_kept_grid_step():
    # DDIM 10 steps, leading grid 901, 801, ..., 1: init_timestep 650 keeps 601 .. 1; the denoiser's
    # first input is init noised to t = 601 with the initial noise draw of the generator.
    diffusion = GaussianDiffusion()
    init = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    seen = []

    def denoiser(x, t):
        seen.append((int(t[0]), x.clone()))
        return torch.zeros_like(x)

    diffusion.sample(denoiser, SHAPE, sampler="ddim", num_steps=10, eta=1.0, init=init, init_timestep=650,
                     generator=torch.Generator().manual_seed(2))
    assert [t for t, _ in seen] == [601, 501, 401, 301, 201, 101, 1]
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    abar = float(_dinar_alphas_cumprod()[601])
    torch.testing.assert_close(seen[0][1], math.sqrt(abar) * init + math.sqrt(1 - abar) * noise, rtol=0, atol=1e-5)


def test_init_with_oracle_recovers_x0_and_bad_inits():
    diffusion = GaussianDiffusion(ddim_timesteps="trailing")
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    out = diffusion.sample(oracle(diffusion, x0), SHAPE, sampler="ddim", num_steps=20, eta=0.0,
                           init=torch.zeros(SHAPE), init_timestep=500, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)
    den = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="together"):
        diffusion.sample(den, SHAPE, init=torch.zeros(SHAPE), num_steps=5)
    with pytest.raises(ValueError, match="ddim"):
        diffusion.sample(den, SHAPE, sampler="ddpm", init=torch.zeros(SHAPE), init_timestep=500, num_steps=5)
    with pytest.raises(ValueError, match="below every grid timestep"):
        diffusion.sample(den, SHAPE, sampler="ddim", init=torch.zeros(SHAPE), init_timestep=0, num_steps=5)
