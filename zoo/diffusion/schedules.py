"""Noise (beta) schedules of discrete-time Gaussian diffusion, computed in float64.

Names follow diffusers: "linear" is linear in beta (DDPM), "scaled_linear" is linear in
sqrt(beta) (latent diffusion, and DINAR's 3e-4 -> 2e-2; latent-diffusion's code calls this one
"linear"), "cosine" is Nichol & Dhariwal's alpha-bar schedule (diffusers' "squaredcos_cap_v2").
"""
from __future__ import annotations

import math

import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")


def cosine_alpha_bar(s: torch.Tensor | float, offset: float = 0.008) -> torch.Tensor:
    """Continuous cumulative signal fraction f(s) / f(0), f(s) = cos^2((s + offset) / (1 + offset) * pi / 2),
    for s in [0, 1] (Nichol & Dhariwal 2021, eq. 17)."""
    s = torch.as_tensor(s, dtype=torch.float64)
    f = torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2
    return f / math.cos(offset / (1 + offset) * math.pi / 2) ** 2


def make_beta_schedule(name: str, num_timesteps: int = 1000, beta_start: float = 3e-4, beta_end: float = 2e-2,
                       cosine_offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas (num_timesteps,) in float64.

    Args:
        name: "linear", "scaled_linear" or "cosine".
        num_timesteps: T, the number of training steps (1000 in DINAR).
        beta_start, beta_end: first and last beta of the (scaled) linear schedules
            (DINAR: 3e-4 and 2e-2 with "scaled_linear"); unused by "cosine".
        cosine_offset: s of the cosine schedule (0.008), keeps the first betas away from 0.
        max_beta: cosine betas are clipped to this, as near t = T alpha-bar reaches 0.
    """
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    if name in ("linear", "scaled_linear") and not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
    if name == "linear":
        betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    elif name == "scaled_linear":
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_timesteps, dtype=torch.float64) ** 2
    elif name == "cosine":
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        alpha_bar = cosine_alpha_bar(steps, cosine_offset)
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
    else:
        raise ValueError(f"beta schedule must be one of {BETA_SCHEDULES}, got {name!r}")
    return betas
