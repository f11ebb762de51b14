"""DINAR's texture inpainting (paper section 3.3): a conditional DDPM in a frozen VQGAN's latent space.

Training: the complete texture T and the single-view partial texture T^j are encoded by the
frozen VQGAN; the denoiser learns to denoise noisy(E(T)) given E(T^j) and the bilinearly resized
known mask b(B_fill), concatenated on channels. Inference (`inpaint`): sample with the known
region of the latent replaced at every step, decode, and paste the known texels back (eq. 6).

Batches follow the zoo's texture contract: a dict with "texture" (B, C, H, W) in [-1, 1],
"texture_mask" (B, 1, H, W) 1 on the UV atlas, "partial" (B, C, H, W) zero where unseen and
"known_mask" (B, 1, H, W) 1 where "partial" is known.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from zoo.diffusion import GaussianDiffusion
from zoo.diffusion.sampling import canonical_sampler
from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.vqgan import VQGAN
from zoo.pretrained import load_pretrained
from zoo.systems.common import FrozenNetworks, log_image_grid
from zoo.utils.ema import ExponentialMovingAverage
from zoo.utils.images import preview


class LatentInpaintingSystem(FrozenNetworks, pl.LightningModule):
    """Conditional latent diffusion that completes partial textures.

    Args:
        denoiser: the U-Net; `in_channels` must be 2 * code_dim + 1 and `out_channels` code_dim
            of the VQGAN (DINAR: 13 and 6).
        vqgan: pretrained name or folder of a saved `VQGAN` (loaded with
            `zoo.pretrained.load_pretrained` in `setup`, frozen, not checkpointed), or a module.
        num_train_timesteps, beta_schedule, beta_start, beta_end, prediction_type: diffusion
            settings (DINAR: 1000, "scaled_linear", 3e-4, 2e-2, "epsilon"); see `GaussianDiffusion`.
        loss_type: "l2" (DDPM's simple loss) or "l1".
        lr: AdamW learning rate (1e-6 in DINAR, with batch 128).
        weight_decay: AdamW weight decay (PyTorch's default 0.01).
        use_ema: keep an EMA of the denoiser, used by `inpaint` and validation (DINAR samples with EMA).
        ema_decay: EMA decay (0.9999, latent diffusion).
        ema_warmup: LDM-style EMA decay warm-up.
        latent_scale: latents are multiplied by this before diffusion (1.0: VQ latents are O(1)).
        quantize_latents: diffuse quantised latents instead of pre-quantisation ones (latent
            diffusion diffuses pre-quantisation latents; decoding always snaps to the codebook).
        val_sampler, val_steps, val_eta: sampler of the validation inpainting (DINAR infers with
            DDIM, 200 steps, eta 1; validation uses fewer steps to stay cheap).
        erode_known_mask: erode the latent known mask 3x3 before replacing (DINAR).
        preview_channels: 3 (or 1) texture channels shown in image grids (default the first 3).
    """

    def __init__(self, denoiser: DiffusionUNet, vqgan: str | VQGAN, num_train_timesteps: int = 1000,
                 beta_schedule: str = "scaled_linear", beta_start: float = 3e-4, beta_end: float = 2e-2,
                 prediction_type: str = "epsilon", loss_type: str = "l2", lr: float = 1e-6,
                 weight_decay: float = 0.01, use_ema: bool = True, ema_decay: float = 0.9999, ema_warmup: bool = True,
                 latent_scale: float = 1.0, quantize_latents: bool = False, val_sampler: str = "ddim",
                 val_steps: int = 50, val_eta: float = 1.0, erode_known_mask: bool = True,
                 preview_channels: list[int] | None = None):
        super().__init__()
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2', got {loss_type!r}")
        if not isinstance(vqgan, (str, VQGAN)):
            raise TypeError(f"vqgan must be a pretrained name / folder or a VQGAN, got {type(vqgan).__name__}")
        self.save_hyperparameters(ignore=["denoiser", "vqgan"])
        if isinstance(vqgan, str):
            self.hparams["vqgan"] = vqgan
        self.denoiser = denoiser
        self.diffusion = GaussianDiffusion(num_train_timesteps, beta_schedule, beta_start, beta_end, prediction_type)
        self.ema = ExponentialMovingAverage(denoiser, ema_decay, ema_warmup) if use_ema else None
        self._vqgan_source = vqgan if isinstance(vqgan, str) else None
        if isinstance(vqgan, VQGAN):
            self._attach_vqgan(vqgan)

    # --- the frozen first stage -------------------------------------------------------------
    def _attach_vqgan(self, vqgan: VQGAN) -> None:
        code_dim = vqgan.code_dim
        if self.denoiser.in_channels != 2 * code_dim + 1 or self.denoiser.out_channels != code_dim:
            raise ValueError(f"denoiser must map {2 * code_dim + 1} -> {code_dim} channels for a VQGAN with "
                             f"code_dim={code_dim}, got {self.denoiser.in_channels} -> {self.denoiser.out_channels}")
        self.attach_frozen("vqgan", vqgan.to(self.device))

    @property
    def vqgan(self) -> VQGAN:
        """The frozen VQGAN, loaded on first use when given by name or path."""
        if self.frozen("vqgan") is None:
            module = load_pretrained(self._vqgan_source)
            if not isinstance(module, VQGAN):
                raise TypeError(f"{self._vqgan_source!r} holds a {type(module).__name__}, not a VQGAN")
            self._attach_vqgan(module)
        return self.frozen("vqgan")

    def setup(self, stage: str) -> None:
        self.vqgan  # load before training starts, so errors surface early

    @torch.no_grad()
    def encode(self, texture: torch.Tensor) -> torch.Tensor:
        """Diffusion latents of textures (B, C, H, W) -> (B, code_dim, H/f, W/f)."""
        return self.vqgan.encode(texture, quantize=self.hparams.quantize_latents) * self.hparams.latent_scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vqgan.decode(latents / self.hparams.latent_scale, quantize=True)

    def _condition(self, partial: torch.Tensor, known_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(partial latent, condition = latent | b(known mask), known-cell mask of the latent grid);
        b is an antialiased bilinear resize to the latent size (DINAR section 3.3)."""
        if partial.ndim != 4 or partial.shape[1] != self.vqgan.in_channels:
            raise ValueError(f"partial must be (B, {self.vqgan.in_channels}, H, W), got {tuple(partial.shape)}")
        if known_mask.shape != (partial.shape[0], 1, *partial.shape[2:]):
            raise ValueError(f"known_mask must be (B, 1, H, W) matching partial, got {tuple(known_mask.shape)}")
        z_partial = self.encode(partial)
        size = z_partial.shape[-2:]
        mask = known_mask.to(z_partial.dtype)
        resized = F.interpolate(mask, size=size, mode="bilinear", align_corners=False, antialias=True)
        fully_known = F.interpolate(mask, size=size, mode="area") > 0.999  # latent cells whose texels are all known
        return z_partial, torch.cat([z_partial, resized], dim=1), fully_known

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        z0 = self.encode(batch["texture"])
        _, cond, _ = self._condition(batch["partial"], batch["known_mask"])
        out = self.diffusion.training_loss(self.denoiser, z0, cond=cond, loss_type=self.hparams.loss_type)
        self.log("train/diffusion_loss", out.loss, prog_bar=True, batch_size=z0.shape[0])
        return out.loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update(self.denoiser)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.denoiser.parameters(), lr=self.hparams.lr,
                                 weight_decay=self.hparams.weight_decay)

    # --- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def inpaint(self, partial: torch.Tensor, known_mask: torch.Tensor, sampler: str = "ddim", steps: int = 200,
                eta: float | None = None, generator: torch.Generator | None = None, use_ema: bool = True,
                erode: bool | None = None) -> torch.Tensor:
        """Complete partial textures (B, C, H, W); texels where known_mask is 1 are `partial` exactly.

        `eta` defaults to 1 for DDIM (DINAR) and is unused by the other samplers; `erode` defaults
        to `erode_known_mask`. Sampling uses the EMA weights when available and `use_ema`.
        """
        known_mask = known_mask.to(partial.dtype)
        z_partial, cond, fully_known = self._condition(partial, known_mask)
        eta = (1.0 if eta is None else eta) if canonical_sampler(sampler) == "ddim" else 0.0
        erode = self.hparams.erode_known_mask if erode is None else erode
        was_training = self.denoiser.training
        self.denoiser.eval()
        try:
            if use_ema and self.ema is not None:
                with self.ema.swap_into(self.denoiser):
                    z = self._sample(z_partial, cond, fully_known, sampler, steps, eta, generator, erode)
            else:
                z = self._sample(z_partial, cond, fully_known, sampler, steps, eta, generator, erode)
        finally:
            self.denoiser.train(was_training)
        texture = self.decode(z)
        return torch.where(known_mask > 0.5, partial, texture)  # DINAR eq. 6

    def _sample(self, z_partial, cond, fully_known, sampler, steps, eta, generator, erode) -> torch.Tensor:
        return self.diffusion.sample(self.denoiser, z_partial.shape, cond=cond, sampler=sampler, num_steps=steps,
                                     eta=eta, known=z_partial, known_mask=fully_known.float(), erode=erode,
                                     generator=generator, device=z_partial.device, dtype=z_partial.dtype)

    # --- validation ---------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        texture, partial, known = batch["texture"], batch["partial"], batch["known_mask"]
        atlas = batch.get("texture_mask", torch.ones_like(known))
        z0 = self.encode(texture)
        _, cond, _ = self._condition(partial, known)
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss = self.diffusion.training_loss(self.denoiser, z0, cond=cond, loss_type=self.hparams.loss_type,
                                            generator=generator).loss
        hp = self.hparams
        result = self.inpaint(partial, known, sampler=hp.val_sampler, steps=hp.val_steps,
                              eta=hp.val_eta, generator=generator)
        unknown = (atlas * (1 - known)).expand_as(texture)
        l1 = ((result - texture).abs() * unknown).sum() / unknown.sum().clamp_min(1.0)
        self.log_dict({"val/diffusion_loss": loss, "val/l1_unknown": l1}, batch_size=texture.shape[0], sync_dist=True)
        if batch_idx == 0:
            columns = [preview(t, hp.preview_channels) for t in (partial, result, texture)]
            log_image_grid(self, "val/inpainting", columns)
