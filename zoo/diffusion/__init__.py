"""Gaussian diffusion around a denoiser passed in: schedules, training targets / loss, samplers
(diffusers' DDPM, DDIM and DPM-Solver++) and the inpainting loop. Holds no parameters."""
from zoo.diffusion.gaussian import PREDICTION_TYPES, DiffusionLoss, GaussianDiffusion
from zoo.diffusion.sampling import SAMPLERS, erode_mask, make_scheduler
from zoo.diffusion.schedules import BETA_SCHEDULES, cosine_alpha_bar, make_beta_schedule

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "SAMPLERS",
    "DiffusionLoss",
    "GaussianDiffusion",
    "cosine_alpha_bar",
    "erode_mask",
    "make_beta_schedule",
    "make_scheduler",
]
