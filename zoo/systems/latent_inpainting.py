"""DINAR's texture inpainting (paper section 3.3): a conditional DDPM in a frozen VQGAN's latent space.

Training: the complete texture T and the single-view partial texture T^j (gap-filled, B_fill) are
encoded by the frozen VQGAN, each with its known-texel and gap-fill masks as its last two channels
(DINAR's texture layout, `zoo.render.texture_with_masks`); the denoiser learns to denoise noisy(E(T)) given
E(T^j) and the known mask resized to the latent grid with nearest sampling, concatenated on
channels. E is the pre-quantisation encoding. Inference (`inpaint`): DDIM with the 3x3 erosion of
that resized mask replaced by the noised E(T^j) before every step (the last update is kept),
decode, and paste the known texels back in texture space (eq. 6): softly by default, as DINAR's
test phase does (`zoo.render.soft_paste_mask`: eroded, box-blurred known mask), or exactly.

Batches follow the zoo's texture contract: a dict with "texture" (B, C, H, W) in [-1, 1],
"texture_mask" (B, 1, H, W) 1 on the UV atlas, "partial" (B, C, H, W) zero where unseen,
"known_mask" (B, 1, H, W) 1 where a pixel landed and optionally "gap_mask" (B, 1, H, W) 1 on
texels filled by the gap fill (`zoo.render.fill_texture_gaps`); known = known_mask | gap_mask.
"""
from __future__ import annotations

import contextlib

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from zoo.diffusion import GaussianDiffusion
from zoo.diffusion.sampling import canonical_sampler
from zoo.metrics.item_means import log_item_means
from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.vqgan import VQGAN
from zoo.pretrained import load_pretrained
from zoo.render import complete_texture_layout, partial_texture_layout, soft_paste_mask
from zoo.systems.common import FrozenNetworks, log_image_grid
from zoo.utils.ema import ExponentialMovingAverage
from zoo.utils.images import preview

KNOWN_PASTES = ("soft", "hard")


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
        mask_channels: the VQGAN sees textures with their known and gap masks as two extra last
            channels (DINAR: its neural texture carries both; a partial texture without them is
            indistinguishable from a dark one). False: colour channels only (a VQGAN trained
            without masks).
        ddim_timesteps: DDIM grid, "leading" (DINAR: t = k c + 1, last step to alphas_cumprod[0])
            or "trailing"; see `zoo.diffusion.sampling.make_scheduler`.
        final_latent_paste: set the replaced latent region to the known latent after the last
            step. False (DINAR): known content is pasted only in texture space after decoding.
        known_paste: how known texels return after decoding: "soft" (DINAR's test phase: weight
            = the known mask eroded 3x3 then box-blurred 3x3, `soft_paste_mask`, so the rim of the
            known region blends into the decoded colours) or "hard" (known texels exactly `partial`).
    """

    def __init__(self, denoiser: DiffusionUNet, vqgan: str | VQGAN, num_train_timesteps: int = 1000,
                 beta_schedule: str = "scaled_linear", beta_start: float = 3e-4, beta_end: float = 2e-2,
                 prediction_type: str = "epsilon", loss_type: str = "l2", lr: float = 1e-6,
                 weight_decay: float = 0.01, use_ema: bool = True, ema_decay: float = 0.9999, ema_warmup: bool = True,
                 latent_scale: float = 1.0, quantize_latents: bool = False, val_sampler: str = "ddim",
                 val_steps: int = 50, val_eta: float = 1.0, erode_known_mask: bool = True,
                 preview_channels: list[int] | None = None, mask_channels: bool = True,
                 ddim_timesteps: str = "leading", final_latent_paste: bool = False, known_paste: str = "soft"):
        super().__init__()
        if known_paste not in KNOWN_PASTES:
            raise ValueError(f"known_paste must be one of {KNOWN_PASTES}, got {known_paste!r}")
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2', got {loss_type!r}")
        if not isinstance(vqgan, (str, VQGAN)):
            raise TypeError(f"vqgan must be a pretrained name / folder or a VQGAN, got {type(vqgan).__name__}")
        self.save_hyperparameters(ignore=["denoiser", "vqgan"])
        if isinstance(vqgan, str):
            self.hparams["vqgan"] = vqgan
        self.denoiser = denoiser
        self.diffusion = GaussianDiffusion(num_train_timesteps, beta_schedule, beta_start, beta_end, prediction_type,
                                           ddim_timesteps)
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
        """Diffusion latents (B, code_dim, H/f, W/f) of VQGAN inputs (B, C_vqgan, H, W), pre-quantisation
        unless `quantize_latents` (DINAR diffuses the encoder output before quantisation)."""
        if texture.ndim != 4 or texture.shape[1] != self.vqgan.in_channels:
            raise ValueError(f"VQGAN input must be (B, {self.vqgan.in_channels}, H, W), got {tuple(texture.shape)}"
                             + (" (textures with mask_channels carry 2 mask channels)" if self.hparams.mask_channels
                                else ""))
        return self.vqgan.encode(texture, quantize=self.hparams.quantize_latents) * self.hparams.latent_scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vqgan.decode(latents / self.hparams.latent_scale, quantize=True)

    def partial_input(self, partial: torch.Tensor, known_mask: torch.Tensor, gap_mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """VQGAN input of partial textures (zero where unknown; with `mask_channels`, the known and
        gap masks appended) and their known mask known_mask | gap_mask: DINAR's filled mask, used
        for the condition and for the paste."""
        with_masks = partial_texture_layout(partial, known_mask, gap_mask)
        return (with_masks if self.hparams.mask_channels else with_masks[:, :-2]), with_masks[:, -2:-1]

    def complete_input(self, texture: torch.Tensor, atlas: torch.Tensor | None = None) -> torch.Tensor:
        """VQGAN input of complete textures: with `mask_channels`, known mask = the atlas, no gap."""
        return complete_texture_layout(texture, atlas) if self.hparams.mask_channels else texture

    def vqgan_inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(complete, partial) VQGAN inputs of a batch and the partial textures' filled known mask."""
        partial, known = self.partial_input(batch["partial"], batch["known_mask"], batch.get("gap_mask"))
        return self.complete_input(batch["texture"], batch.get("texture_mask")), partial, known

    def _condition(self, vqgan_input: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(partial latent, condition = latent | resized mask, resized mask): the known mask is
        resized to the latent grid with nearest sampling, as DINAR's condition channel."""
        if known.shape != (vqgan_input.shape[0], 1, *vqgan_input.shape[2:]):
            raise ValueError(f"known mask must be (B, 1, H, W) matching the partial texture {tuple(vqgan_input.shape)}, "
                             f"got {tuple(known.shape)}")
        z_partial = self.encode(vqgan_input)
        resized = F.interpolate(known.to(z_partial.dtype), size=z_partial.shape[-2:], mode="nearest")
        return z_partial, torch.cat([z_partial, resized], dim=1), resized

    # --- training ---------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        complete, partial, known = self.vqgan_inputs(batch)
        z0 = self.encode(complete)
        _, cond, _ = self._condition(partial, known)
        out = self.diffusion.training_loss(self.denoiser, z0, cond=cond, loss_type=self.hparams.loss_type)
        self.log("train/diffusion_loss", out.loss, prog_bar=True, batch_size=z0.shape[0])
        return out.loss

    def optimizer_step(self, *args, **kwargs) -> None:
        # The EMA follows each optimiser step here, not in on_train_batch_end: that hook runs after
        # the callbacks' (checkpoints saved after a step would miss the step's EMA update).
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.denoiser)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.denoiser.parameters(), lr=self.hparams.lr,
                                 weight_decay=self.hparams.weight_decay)

    # --- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def inpaint(self, partial: torch.Tensor, known_mask: torch.Tensor, gap_mask: torch.Tensor | None = None,
                sampler: str = "ddim", steps: int = 200, eta: float | None = None,
                generator: torch.Generator | None = None, use_ema: bool = True, erode: bool | None = None,
                cond_override: torch.Tensor | None = None, atlas: torch.Tensor | None = None) -> torch.Tensor:
        """Complete partial textures (B, C, H, W); texels where known_mask or gap_mask is 1 are
        pasted back from `partial` after decoding (DINAR eq. 6): exactly with known_paste "hard";
        with "soft" (DINAR), blended by `soft_paste_mask(known, atlas)` (1 inside the known region,
        fractional on its rim, 0 on unknown texels). `atlas` (1 or B, 1, H, W): the UV atlas (DINAR's
        binary UV map; None: every texel).

        `eta` defaults to 1 for DDIM (DINAR) and is unused by the other samplers; `erode` defaults
        to `erode_known_mask`. Sampling uses the EMA weights when available and `use_ema`.
        `cond_override` (B, code_dim + 1, h, w) replaces the denoiser's condition channels only
        (the known-region replacement and the paste still use this input): a probe of how much
        the samples follow the condition.
        """
        vqgan_input, known = self.partial_input(partial, known_mask, gap_mask)
        z_partial, cond, resized = self._condition(vqgan_input, known)
        if cond_override is not None:
            if cond_override.shape != cond.shape:
                raise ValueError(f"cond_override must be {tuple(cond.shape)}, got {tuple(cond_override.shape)}")
            cond = cond_override
        eta = (1.0 if eta is None else eta) if canonical_sampler(sampler) == "ddim" else 0.0
        erode = self.hparams.erode_known_mask if erode is None else erode
        was_training = self.denoiser.training
        self.denoiser.eval()
        try:
            with self.ema.swap_into(self.denoiser) if use_ema and self.ema is not None else contextlib.nullcontext():
                z = self._sample(z_partial, cond, resized, sampler, steps, eta, generator, erode)
        finally:
            self.denoiser.train(was_training)
        decoded = self.decode(z)[:, :partial.shape[1]]
        if self.hparams.known_paste == "hard":
            return torch.where(known > 0.5, partial, decoded)  # DINAR eq. 6, in texture space
        weight = soft_paste_mask(known, None if atlas is None else atlas.to(known))
        return (1 - weight) * decoded + weight * partial

    def _sample(self, z_partial, cond, resized, sampler, steps, eta, generator, erode, init=None,
                init_timestep=None) -> torch.Tensor:
        return self.diffusion.sample(self.denoiser, z_partial.shape, cond=cond, sampler=sampler, num_steps=steps,
                                     eta=eta, known=z_partial, known_mask=resized, erode=erode,
                                     generator=generator, device=z_partial.device, dtype=z_partial.dtype,
                                     final_paste=self.hparams.final_latent_paste, init=init, init_timestep=init_timestep)

    # --- validation ---------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Diffusion loss and inpainting L1 on unknown texels, one item at a time with noise seeded by
        the item's view_id: a value does not depend on which items share its batch or process, so
        the means over N processes equal the 1-process means (`log_item_means`)."""
        hp = self.hparams
        size = batch["texture"].shape[0]
        ids = batch.get("view_id")
        losses, l1s, results = [], [], []
        for i in range(size):
            item = {k: v[i:i + 1] for k, v in batch.items() if torch.is_tensor(v) and v.ndim and v.shape[0] == size}
            seed = int(ids[i]) if ids is not None else batch_idx * size + i
            generator = torch.Generator(device=self.device).manual_seed(seed)
            complete, partial_input, known = self.vqgan_inputs(item)
            atlas = item.get("texture_mask", torch.ones_like(known))
            _, cond, _ = self._condition(partial_input, known)
            losses.append(self.diffusion.training_loss(self.denoiser, self.encode(complete), cond=cond,
                                                       loss_type=hp.loss_type, generator=generator).loss)
            result = self.inpaint(item["partial"], item["known_mask"], item.get("gap_mask"), sampler=hp.val_sampler,
                                  steps=hp.val_steps, eta=hp.val_eta, generator=generator, atlas=atlas)
            unknown = (atlas * (1 - known)).expand_as(item["texture"])
            l1s.append(((result - item["texture"]).abs() * unknown).sum() / unknown.sum().clamp_min(1.0))
            results.append(result)
        log_item_means(self, {"val/diffusion_loss": torch.stack(losses), "val/l1_unknown": torch.stack(l1s)})
        if batch_idx == 0:
            columns = [preview(t, hp.preview_channels) for t in (batch["partial"], torch.cat(results), batch["texture"])]
            log_image_grid(self, "val/inpainting", columns)
