"""Samplers come from diffusers; the zoo only builds them from its own schedule and adds masks.

`make_scheduler` hands diffusers the exact betas of a `GaussianDiffusion` (`trained_betas`), so
training and every sampler share one schedule whatever its name.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

SAMPLERS = ("ddpm", "ddim", "dpm++")
DDIM_TIMESTEPS = ("leading", "trailing")
_ALIASES = {"dpmsolver++": "dpm++", "dpm_solver++": "dpm++", "dpmsolver": "dpm++"}


def canonical_sampler(name: str) -> str:
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {name!r}")
    return name


def make_scheduler(name: str, betas: torch.Tensor, prediction_type: str = "epsilon",
                   ddim_timesteps: str = "leading"):
    """A fresh diffusers scheduler (they are stateful: one per sampling run).

    Args:
        name: "ddpm" (ancestral), "ddim" (eta chosen per step call) or "dpm++"
            (DPMSolverMultistepScheduler, algorithm "dpmsolver++", 2nd order).
        betas: (T,) training betas.
        prediction_type: "epsilon", "sample" or "v_prediction" (what the denoiser outputs).
        ddim_timesteps: the DDIM grid. "leading" (DINAR's, from latent diffusion's sampler): with
            c = T // steps the timesteps are t = k c + 1, k = steps-1 .. 0, and the last step goes
            to alphas_cumprod[0], not to 1 (diffusers: leading spacing, steps_offset 1,
            set_alpha_to_one False). "trailing": t = T - 1 first and the last step to alpha-bar 1
            (the cleaner grid of Lin et al. 2024; not what DINAR samples with).
    DDPM and DPM-Solver++ use diffusers' "trailing" spacing (DDPM with all T steps is then
    T-1 .. 0, as DINAR's ancestral loop; DPM-Solver++ is not in DINAR). No sample clipping
    (latents are unbounded); DPM-Solver++'s last step lands on its clean-sample estimate.
    """
    if ddim_timesteps not in DDIM_TIMESTEPS:
        raise ValueError(f"ddim_timesteps must be one of {DDIM_TIMESTEPS}, got {ddim_timesteps!r}")
    common = dict(num_train_timesteps=len(betas), trained_betas=betas.double().cpu().numpy(),
                  prediction_type=prediction_type)
    name = canonical_sampler(name)
    if name == "ddpm":
        return DDPMScheduler(clip_sample=False, variance_type="fixed_small", timestep_spacing="trailing", **common)
    if name == "ddim":
        if ddim_timesteps == "leading":
            return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, timestep_spacing="leading",
                                 steps_offset=1, **common)
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing", **common)
    return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True,
                                       final_sigmas_type="zero", timestep_spacing="trailing", **common)


def erode_mask(mask: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """Binary erosion of a (B, 1, h, w) mask with a square kernel: a texel stays known only if its
    whole neighbourhood is known. The image border is not treated as unknown."""
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    if kernel_size == 1:
        return mask
    return -F.max_pool2d(-mask.float(), kernel_size, stride=1, padding=kernel_size // 2)
