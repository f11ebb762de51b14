"""Discrete-time Gaussian diffusion around a denoiser passed in (no parameters, no weights).

Forward process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al. 2020). The denoiser is
any callable `denoiser(x, t) -> prediction` where `x` is the noisy sample with the condition
concatenated along channels (DINAR: noisy latent | partial-texture latent | known mask) and `t`
a (B,) long tensor of training timesteps. Sampling steps are diffusers' schedulers; this class
adds the conditioning and the inpainting loop (known region replaced before every step, as DINAR's
DDIM sampler; DINAR keeps the last update there and pastes known texels only after decoding).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from zoo.diffusion.sampling import DDIM_TIMESTEPS, canonical_sampler, erode_mask, make_scheduler
from zoo.diffusion.schedules import make_beta_schedule

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class DiffusionLoss:
    """`loss`: scalar; the rest (per sample) for logging and tests."""

    loss: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor
    x_t: torch.Tensor
    prediction: torch.Tensor
    target: torch.Tensor


class GaussianDiffusion:
    """Schedule, training targets / loss and (inpainting) sampling of a DDPM.

    Args:
        num_train_timesteps: T (1000 in DINAR).
        beta_schedule: "linear", "scaled_linear" (DINAR: linear in sqrt(beta)) or "cosine".
        beta_start, beta_end: (scaled) linear endpoints (DINAR: 3e-4, 2e-2).
        prediction_type: what the denoiser predicts: "epsilon" (DINAR), "sample" (x0) or
            "v_prediction" (v = sqrt(abar) eps - sqrt(1 - abar) x0, Salimans & Ho 2022).
        ddim_timesteps: DDIM grid, "leading" (DINAR: t = k c + 1, last step to alphas_cumprod[0])
            or "trailing" (t = T - 1 first, last step to 1); see `make_scheduler`.
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "scaled_linear",
                 beta_start: float = 3e-4, beta_end: float = 2e-2, prediction_type: str = "epsilon",
                 ddim_timesteps: str = "leading"):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if ddim_timesteps not in DDIM_TIMESTEPS:
            raise ValueError(f"ddim_timesteps must be one of {DDIM_TIMESTEPS}, got {ddim_timesteps!r}")
        self.num_train_timesteps = num_train_timesteps
        self.prediction_type = prediction_type
        self.ddim_timesteps = ddim_timesteps
        self.betas = make_beta_schedule(beta_schedule, num_train_timesteps, beta_start, beta_end)  # float64
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def _coef(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] as (B, 1, ..., 1) on like's device and dtype (indexing stays in float64)."""
        t = torch.as_tensor(t).long().cpu()
        if t.ndim == 0:
            t = t.expand(like.shape[0])
        if t.min() < 0 or t.max() >= self.num_train_timesteps:
            raise ValueError(f"timesteps must be in [0, {self.num_train_timesteps}), got {t.tolist()}")
        return values[t].to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def sample_timesteps(self, batch_size: int, device: torch.device | str = "cpu",
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform training timesteps (B,) in [0, T)."""
        gen_device = generator.device if generator is not None else device
        t = torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator, device=gen_device)
        return t.to(device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x0): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
        abar = self._coef(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the denoiser should output for x_t = add_noise(x0, noise, t)."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        abar = self._coef(self.alphas_cumprod, t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def predict_x0(self, prediction: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Clean-sample estimate implied by a denoiser output."""
        abar = self._coef(self.alphas_cumprod, t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - (1 - abar).sqrt() * prediction) / abar.sqrt()
        if self.prediction_type == "sample":
            return prediction
        return abar.sqrt() * x_t - (1 - abar).sqrt() * prediction

    @staticmethod
    def _model_input(x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            return x
        if cond.shape[0] != x.shape[0] or cond.shape[2:] != x.shape[2:]:
            raise ValueError(f"cond {tuple(cond.shape)} must match x {tuple(x.shape)} in batch and spatial size")
        return torch.cat([x, cond.to(x.dtype)], dim=1)

    def training_loss(self, denoiser: Denoiser, x0: torch.Tensor, cond: torch.Tensor | None = None,
                      t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, loss_type: str = "l2") -> DiffusionLoss:
        """Simple DDPM loss: mean of |denoiser(x_t | cond, t) - target|^2 (or |.| for "l1").

        `t` and `noise` are drawn (from `generator`) when not given."""
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2', got {loss_type!r}")
        if t is None:
            t = self.sample_timesteps(x0.shape[0], x0.device, generator)
        if noise is None:
            noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.add_noise(x0, noise, t)
        prediction = denoiser(self._model_input(x_t, cond), t)
        if prediction.shape != x0.shape:
            raise ValueError(f"denoiser returned {tuple(prediction.shape)}, expected {tuple(x0.shape)}")
        target = self.training_target(x0, noise, t)
        loss = F.mse_loss(prediction, target) if loss_type == "l2" else F.l1_loss(prediction, target)
        return DiffusionLoss(loss, t, noise, x_t, prediction, target)

    def make_scheduler(self, sampler: str):
        """A fresh diffusers scheduler on this schedule ("ddpm", "ddim" or "dpm++")."""
        return make_scheduler(sampler, self.betas, self.prediction_type, self.ddim_timesteps)

    @staticmethod
    def replacement_mask(known_mask: torch.Tensor, erode: bool = False) -> torch.Tensor:
        """Boolean (B, 1, h, w) region that sampling keeps equal to the known sample: the mask
        binarised at 0.5 and, with `erode`, eroded 3x3 (drops latent cells next to unknown ones,
        whose encoding mixes in unknown content)."""
        if known_mask.ndim != 4 or known_mask.shape[1] != 1:
            raise ValueError(f"known_mask must be (B, 1, h, w), got {tuple(known_mask.shape)}")
        mask = (known_mask > 0.5).float()
        return (erode_mask(mask, 3) if erode else mask) > 0.5

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, shape: tuple[int, ...] | torch.Size, cond: torch.Tensor | None = None,
               sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0,
               known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None, erode: bool = False,
               generator: torch.Generator | None = None, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32, final_paste: bool = False, init: torch.Tensor | None = None,
               init_timestep: int | None = None) -> torch.Tensor:
        """Draw samples of `shape` (B, C, h, w), optionally inpainting a known region.

        Args:
            denoiser: `denoiser(x, t)`; x holds the sample with `cond` concatenated on channels.
            cond: (B, C_cond, h, w) condition channels, or None.
            sampler: "ddpm", "ddim" or "dpm++" (DPM-Solver++ 2M).
            num_steps: sampling steps (<= T).
            eta: DDIM noise scale (0 deterministic DDIM; DINAR samples with eta 1); DDIM only.
            known, known_mask: inpainting. Before every denoiser call the region
                `replacement_mask(known_mask, erode)` of the current sample is replaced by `known`
                noised to the current timestep (DINAR / latent diffusion's DDIM sampler).
            erode: erode the known mask 3x3 first (DINAR).
            final_paste: also set that region to `known` after the last step. False (DINAR): the
                last update is kept there, and known content is pasted back only in texture space
                after decoding, so the decoder sees a latent the denoiser made consistent.
            generator: makes the run deterministic (initial noise, known-region noise, DDPM/DDIM noise).
            init, init_timestep: start from `init` (the sample shape) instead of pure noise: the grid
                steps above `init_timestep` are skipped and the sample starts as `init` noised to the
                first remaining grid timestep (SDEdit, Meng et al. 2022; diffusers' img2img
                "strength"). Not in DINAR; a probe of the high-noise steps.
        """
        sampler = canonical_sampler(sampler)
        if not 1 <= num_steps <= self.num_train_timesteps:
            raise ValueError(f"num_steps must be in [1, {self.num_train_timesteps}], got {num_steps}")
        if eta != 0.0 and sampler != "ddim":
            raise ValueError(f"eta={eta} only applies to the ddim sampler, not {sampler!r}")
        if (known is None) != (known_mask is None):
            raise ValueError("known and known_mask must be given together")
        shape = tuple(shape)
        device = torch.device(device) if device is not None else (
            cond.device if cond is not None else known.device if known is not None else torch.device("cpu"))
        region = None
        if known is not None:
            if tuple(known.shape) != shape:
                raise ValueError(f"known must have the sample shape {shape}, got {tuple(known.shape)}")
            region = self.replacement_mask(known_mask, erode).to(device)
            known = known.to(device=device, dtype=dtype)
        if (init is None) != (init_timestep is None):
            raise ValueError("init and init_timestep must be given together")
        scheduler = self.make_scheduler(sampler)
        scheduler.set_timesteps(num_steps, device=device)
        timesteps = scheduler.timesteps
        x = randn_tensor(shape, generator=generator, device=device, dtype=dtype) * scheduler.init_noise_sigma
        if init is not None:
            if sampler != "ddim" or tuple(init.shape) != shape:
                raise ValueError(f"init needs the ddim sampler and the sample shape {shape}, got {sampler!r} and "
                                 f"{tuple(init.shape)}")
            timesteps = timesteps[timesteps <= init_timestep]
            if len(timesteps) == 0:
                raise ValueError(f"init_timestep {init_timestep} is below every grid timestep ({scheduler.timesteps.min().item()})")
            x = self.add_noise(init.to(device=device, dtype=dtype), x, timesteps[:1].expand(shape[0]))
        step_kwargs = {"eta": eta} if sampler == "ddim" else {}
        for t in timesteps:
            t_batch = t.expand(shape[0]).to(device)
            if region is not None:
                noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
                x = torch.where(region, self.add_noise(known, noise, t_batch), x)
            model_in = self._model_input(scheduler.scale_model_input(x, t), cond)
            prediction = denoiser(model_in, t_batch)
            x = scheduler.step(prediction, t, x, generator=generator, **step_kwargs).prev_sample
        if region is not None and final_paste:
            x = torch.where(region, known, x)
        return x
