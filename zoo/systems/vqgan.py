"""Training a VQGAN texture autoencoder: reconstruction + perceptual + adversarial + codebook losses.

Manual optimisation with two optimisers (generator = the VQGAN, discriminator = a PatchGAN), as
in taming-transformers. Batches follow the texture contract of the zoo's datamodules: a dict with
"texture" (B, C, H, W) in [-1, 1] and optionally "texture_mask" (B, 1, H, W), 1 on the UV atlas
(reconstruction losses count atlas texels only). DINAR's VQGAN encodes the pipeline's own textures,
which carry the known-texel and gap-fill masks as channels and are partial at inference; with
`mask_channels` the textures get those two channels (`zoo.render.complete_texture_layout`; a complete texture's
known mask is the atlas) and with `train_on="both"` the batch's partial textures ("partial",
"known_mask", optional "gap_mask") are reconstructed too, so the encoder learns the inputs the
inpainter will give it.
"""
from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from zoo.metrics.item_means import log_item_means
from zoo.metrics.lpips import load_lpips_weights, lpips_weights_help
from zoo.modules.discriminator import PatchDiscriminator
from zoo.modules.vqgan import VQGAN
from zoo.pretrained import export_folder
from zoo.render import complete_texture_layout, partial_texture_layout
from zoo.systems.common import FrozenNetworks, log_image_grid
from zoo.utils.images import preview

log = logging.getLogger(__name__)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `values` (B, C, H, W) over texels where mask (B, 1, H, W) is 1 (all if None)."""
    if mask is None:
        return values.mean()
    weight = mask.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


class VQGANSystem(FrozenNetworks, pl.LightningModule):
    """VQGAN training (Esser et al. 2021) for textures of any channel count.

    Args:
        vqgan: the autoencoder being trained.
        discriminator: PatchGAN judging textures; its `in_channels` must equal the VQGAN's output.
        lr: Adam learning rate of the VQGAN (taming: 4.5e-6 x batch size).
        disc_lr: discriminator learning rate; None means `lr`.
        betas: Adam betas of both optimisers ((0.5, 0.9), taming).
        reconstruction_loss: "l1" (taming) or "l2" (DINAR's texture-space regulariser).
        reconstruction_weight: weight of the reconstruction loss.
        reconstruction_channel_weights: one weight per output channel of the reconstruction loss,
            normalised to mean 1; None: every channel alike (taming's and DINAR's). Ours for CPU
            runs without LPIPS: DINAR's perceptual term acts on the RGB channels only, and without
            it the 3 RGB channels of a 21-channel texture get 3/21 of the loss.
        perceptual_weight: LPIPS weight (1.0, taming); 0 switches the perceptual loss off. A weight
            > 0 needs `perceptual_weights` and fails at start without them (the zoo never downloads).
        perceptual_weights: local file with a full LPIPS state dict, or "hub-cache" for LPIPS(`perceptual_net`)
            from torchvision's backbone file in the torch hub cache and the lpips package's linear heads
            (`zoo.metrics.lpips.load_lpips_weights`); None only with perceptual_weight 0.
        perceptual_net: LPIPS backbone of that file ("vgg", "alex", "squeeze").
        perceptual_channels: 3 texture channels fed to LPIPS (default the first 3; DINAR's RGB
            channels of the neural texture are 16, 17, 18).
        adversarial_loss: "hinge" (taming) or "non_saturating".
        adversarial_weight: generator adversarial weight (0.8, taming).
        adaptive_weight: scale the adversarial term by |grad rec| / |grad adv| at the decoder's
            last layer (taming); False uses `adversarial_weight` as is.
        disc_start: generator steps before the adversarial terms start (taming: 10k-250k).
        codebook_weight: weight of codebook + beta * commitment loss (1.0).
        dead_code_restart_every: restart codes unused since the last restart every N generator
            steps from the current batch's encoder outputs (0 disables).
        dead_code_min_count: codes used fewer times than this are dead.
        image_log_every_n_steps: image grid period in generator steps (0 disables).
        preview_channels: 3 (or 1) channels shown in image grids (default the first 3).
        export_path: where `on_train_end` saves the VQGAN with `save_pretrained`: a folder, or a
            bare name for `$ZOO_HOME/<name>` (then `from_pretrained(name)` finds it).
        mask_channels: append the known and gap-fill masks as two last channels (DINAR's texture
            layout); the VQGAN then has C + 2 input / output channels.
        train_on: "both" (DINAR: complete textures and the batch's partial textures, each with its
            masks, in every step) or "complete" (complete textures only).
    """

    def __init__(self, vqgan: VQGAN, discriminator: PatchDiscriminator, lr: float = 1e-4, disc_lr: float | None = None,
                 betas: tuple[float, float] = (0.5, 0.9), reconstruction_loss: str = "l1",
                 reconstruction_weight: float = 1.0, reconstruction_channel_weights: list[float] | None = None,
                 perceptual_weight: float = 1.0,
                 perceptual_weights: str | None = None, perceptual_net: str = "vgg",
                 perceptual_channels: list[int] | None = None, adversarial_loss: str = "hinge",
                 adversarial_weight: float = 0.8, adaptive_weight: bool = True, disc_start: int = 10000,
                 codebook_weight: float = 1.0, dead_code_restart_every: int = 0, dead_code_min_count: float = 1.0,
                 image_log_every_n_steps: int = 500, preview_channels: list[int] | None = None,
                 export_path: str | None = None, mask_channels: bool = True, train_on: str = "both"):
        super().__init__()
        if train_on not in ("both", "complete"):
            raise ValueError(f"train_on must be 'both' or 'complete', got {train_on!r}")
        if train_on == "both" and not mask_channels:
            raise ValueError("train_on='both' needs mask_channels: without them a partial texture's unknown texels "
                             "look like black ones")
        if reconstruction_loss not in ("l1", "l2"):
            raise ValueError(f"reconstruction_loss must be 'l1' or 'l2', got {reconstruction_loss!r}")
        if adversarial_loss not in ("hinge", "non_saturating"):
            raise ValueError(f"adversarial_loss must be 'hinge' or 'non_saturating', got {adversarial_loss!r}")
        if discriminator.in_channels != vqgan.out_channels:
            raise ValueError(f"discriminator.in_channels={discriminator.in_channels} must equal "
                             f"vqgan.out_channels={vqgan.out_channels}")
        weights = reconstruction_channel_weights
        if weights is not None and (len(weights) != vqgan.out_channels or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"reconstruction_channel_weights must be {vqgan.out_channels} weights >= 0 with a positive "
                             f"sum (one per output channel), got {weights!r}")
        self.save_hyperparameters(ignore=["vqgan", "discriminator"])
        self.automatic_optimization = False
        self.vqgan, self.discriminator = vqgan, discriminator
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))  # checkpointed step count
        if perceptual_weight < 0:
            raise ValueError(f"perceptual_weight must be >= 0, got {perceptual_weight}")
        if perceptual_weight > 0:  # LPIPS is on: its weights must be on disk now, not found missing later
            if perceptual_weights is None:
                raise ValueError(f"perceptual_weight={perceptual_weight} needs LPIPS weights, but perceptual_weights is "
                                 f"None: {lpips_weights_help(perceptual_net)}; or set perceptual_weight: 0.0 to "
                                 "train without the perceptual loss")
            self.attach_frozen("lpips", load_lpips_weights(perceptual_weights, perceptual_net))

    def configure_optimizers(self):
        hp = self.hparams
        opt_g = torch.optim.Adam(self.vqgan.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.disc_lr or hp.lr, betas=tuple(hp.betas))
        return [opt_g, opt_d]

    def _texture(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """VQGAN inputs of the batch and the loss mask (the atlas) of each."""
        x, mask = batch["texture"], batch.get("texture_mask")
        extra = 2 if self.hparams.mask_channels else 0
        if x.ndim != 4 or x.shape[1] + extra != self.vqgan.in_channels:
            raise ValueError(f"batch['texture'] must be (B, {self.vqgan.in_channels - extra}, H, W) for a VQGAN with "
                             f"{self.vqgan.in_channels} input channels (mask_channels={bool(extra)}), "
                             f"got {tuple(x.shape)}")
        if not extra:
            return x, mask
        complete = complete_texture_layout(x, mask)
        if self.hparams.train_on == "complete" or "partial" not in batch:
            return complete, mask
        partial = partial_texture_layout(batch["partial"], batch["known_mask"], batch.get("gap_mask"))
        atlas = torch.ones_like(x[:, :1]) if mask is None else mask.to(x.dtype).expand_as(x[:, :1])
        return torch.cat([complete, partial]), torch.cat([atlas, atlas])

    def _nll(self, x: torch.Tensor, rec: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        hp = self.hparams
        diff = (rec - x).abs() if hp.reconstruction_loss == "l1" else (rec - x) ** 2
        if hp.reconstruction_channel_weights is not None:
            weights = torch.tensor(hp.reconstruction_channel_weights, dtype=diff.dtype, device=diff.device)
            diff = diff * (weights / weights.mean())[None, :, None, None]
        terms = {"rec_loss": masked_mean(diff, mask)}
        lpips_net = self.frozen("lpips")
        if lpips_net is not None:
            channels = list(hp.perceptual_channels) if hp.perceptual_channels is not None else [0, 1, 2]
            keep = mask if mask is not None else 1.0
            terms["perceptual_loss"] = lpips_net(rec[:, channels] * keep, x[:, channels] * keep).mean()
        terms["nll"] = hp.reconstruction_weight * terms["rec_loss"] + hp.perceptual_weight * terms.get(
            "perceptual_loss", torch.zeros((), device=x.device))
        return terms

    def _adaptive_weight(self, nll: torch.Tensor, g_loss: torch.Tensor) -> torch.Tensor:
        if not self.hparams.adaptive_weight:
            return torch.tensor(self.hparams.adversarial_weight, device=nll.device)
        last = self.vqgan.last_layer
        nll_grad = torch.autograd.grad(nll, last, retain_graph=True)[0]
        g_grad = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
        weight = (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()
        return weight * self.hparams.adversarial_weight

    def _generator_adv(self, logits_fake: torch.Tensor) -> torch.Tensor:
        if self.hparams.adversarial_loss == "hinge":
            return -logits_fake.mean()
        return F.softplus(-logits_fake).mean()

    def _disc_loss(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        if self.hparams.adversarial_loss == "hinge":
            return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
        return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())

    def training_step(self, batch: dict, batch_idx: int) -> None:
        hp = self.hparams
        opt_g, opt_d = self.optimizers()
        x, mask = self._texture(batch)
        step = int(self.generator_steps)
        adversarial = step >= hp.disc_start and hp.adversarial_weight > 0

        self.toggle_optimizer(opt_g)
        out = self.vqgan(x)
        terms = self._nll(x, out.reconstruction, mask)
        loss = terms["nll"] + hp.codebook_weight * out.quantizer_loss
        if adversarial:
            terms["g_adv_loss"] = self._generator_adv(self.discriminator(out.reconstruction))
            terms["adv_weight"] = self._adaptive_weight(terms["nll"], terms["g_adv_loss"])
            loss = loss + terms["adv_weight"] * terms["g_adv_loss"]
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        if adversarial:
            self.toggle_optimizer(opt_d)
            logits_real = self.discriminator(x.detach())
            logits_fake = self.discriminator(out.reconstruction.detach())
            terms["disc_loss"] = self._disc_loss(logits_real, logits_fake)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(terms["disc_loss"])
            opt_d.step()
            self.untoggle_optimizer(opt_d)
            terms["logits_real"], terms["logits_fake"] = logits_real.mean().detach(), logits_fake.mean().detach()

        self.generator_steps += 1
        terms.update(loss=loss, codebook_loss=out.codebook_loss, commitment_loss=out.commitment_loss,
                     codebook_usage=out.usage, perplexity=out.perplexity)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items() if k != "nll"},
                      on_step=True, prog_bar=False, batch_size=x.shape[0])
        self._maybe_restart_codes(out.latents.detach())
        every = hp.image_log_every_n_steps
        if every and (step % every == 0):
            columns = [preview(t, hp.preview_channels) for t in (x, out.reconstruction)]
            log_image_grid(self, "train/reconstruction", columns)

    def _maybe_restart_codes(self, latents: torch.Tensor) -> None:
        every = self.hparams.dead_code_restart_every
        if not every or int(self.generator_steps) % every:
            return
        quantizer = self.vqgan.quantizer
        strategy = self.trainer.strategy
        quantizer.usage_counts.copy_(strategy.reduce(quantizer.usage_counts.clone(), reduce_op="sum"))
        restarted = quantizer.restart_dead_codes(latents, self.hparams.dead_code_min_count)
        with torch.no_grad():  # every rank keeps rank 0's codebook
            quantizer.embedding.weight.copy_(strategy.broadcast(quantizer.embedding.weight.detach(), src=0))
        self.log("train/dead_codes_restarted", float(restarted), on_step=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x, mask = self._texture(batch)
        out = self.vqgan(x)
        terms = self._nll(x, out.reconstruction, mask)
        log_item_means(self, {"val/rec_loss": terms["rec_loss"]}, batch_size=x.shape[0])
        # batch statistics of the codebook (not item means): averaged over processes' batches
        self.log_dict({"val/codebook_usage": out.usage, "val/perplexity": out.perplexity}, batch_size=x.shape[0],
                      sync_dist=True)
        if batch_idx == 0:
            channels = self.hparams.preview_channels
            log_image_grid(self, "val/reconstruction", [preview(t, channels) for t in (x, out.reconstruction)])

    def on_train_end(self) -> None:
        path = self.hparams.export_path
        if path and self.trainer.is_global_zero:
            folder = self.vqgan.save_pretrained(export_folder(path))
            log.info("VQGANSystem: exported the VQGAN to %s", folder)
