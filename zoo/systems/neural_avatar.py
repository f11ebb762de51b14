"""DINAR stage 1 (paper sections 3.1-3.2, 4): train the texture encoder + generator and the neural
renderer end to end on pairs of views of one person (source -> target, different pose and camera).

Manual optimisation, one generator step and one discriminator step per batch:
    G: 2.2 L2 + 1.0 perceptual (random crop on the body) + 1.0 Dice + 0.1 face (L2 + perceptual)
       + 0.01 non-saturating adversarial              (`zoo.losses.avatar`, `zoo.losses.adversarial`)
    D: logistic loss on real / rendered targets, + lazy R1 (0.1, every 16 D steps).
Adam lr 2e-3 (paper), betas (0, 0.99) (StyleGAN2's, also DINAR's finetuning).

Batch contract (`zoo.datamodules.avatars.SyntheticAvatarDataModule`), with S = source_prefix and
T = target_prefix ("source_" / "target_"; "" / "novel_" read `SyntheticPeopleDataModule` pairs):
S+"image" (B, 3, H, W) in [-1, 1], S+"mask" (B, 1, H, W), S+"uv" (B, H, W, 2) (`render_uv`), and the
same three for the target. Optional: S+"rgb_texture" (B, 5, T, T) precomputed RGB channels (else
computed here, skipping S+"occlusion" pixels), T+"face_mask" or T+"parts" (face = `face_label`).
The real target is composited over the same background as the render.

Perceptual loss: `perceptual="lpips_vgg"` is the paper's; when its weights are missing the run
fails at start naming the file, unless `perceptual_fallback` names a stand-in ("reid": the zoo's
ReID features of `reid`), which is then used and logged. "none" disables the term.

With `vqgan` the same training is DINAR's end-to-end fine-tuning through the VQGAN branch (sections 3.3,
4; `zoo.systems.vq_branch`): the source texture passes through the frozen VQGAN before the renderer.
"""
from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from torch import nn

from zoo.losses.adversarial import LazyR1, logistic_discriminator_loss, nonsaturating_generator_loss
from zoo.losses.avatar import AvatarReconstructionLoss, avatar_item_scores
from zoo.metrics.item_means import log_item_means
from zoo.modules.vqgan import VQGAN
from zoo.pretrained import export_folder
from zoo.render import composite
from zoo.render.neural_texture import rgb_texture_channels, uv_body_mask  # scripts import uv_body_mask from here too
from zoo.systems.common import FrozenNetworks, check_step_decay, item_noise, log_image_grid, set_learning_rates, step_decay
from zoo.systems.perceptual import build_perceptual, check_perceptual_assets, check_perceptual_kinds
from zoo.systems.vq_branch import branch_parameters, check_branch_assets, check_branch_settings, load_stage1, load_vqgan, vq_roundtrip

log = logging.getLogger(__name__)


class NeuralAvatarSystem(FrozenNetworks, pl.LightningModule):
    """DINAR's stage-1 training of the avatar network (see the module docstring).

    Args:
        network: the avatar network (`zoo.modules.dinar.DinarAvatarNet`).
        discriminator: judges rendered / real targets (`zoo.modules.stylegan2.StyleGAN2Discriminator`,
            image size = the render size).
        perceptual: "lpips_vgg" (paper), "reid" or "none".
        perceptual_fallback: stand-in when LPIPS(vgg) weights are missing ("reid"), or None to fail.
        reid: ReID network name / folder for the "reid" perceptual distance.
        l2_weight, perceptual_weight, dice_weight, face_weight, adversarial_weight: 2.2, 1.0, 1.0,
            0.1, 0.01 (paper section 4).
        r1_weight, r1_interval: lazy R1 gamma and period (0.1, 16).
        crop_size: perceptual crop side (256 of 512 in the paper); face_crop_size around the face.
        lr, disc_lr, betas: Adam settings (2e-3; disc_lr None = lr; (0, 0.99)).
        lr_decay_milestones: Lightning global steps (the unit of `max_steps`: one generator and one
            discriminator step per batch count 2) at which both learning rates are multiplied by
            `lr_decay_factor`. Empty (default, the paper's constant lr). The rate is a function of the
            global step alone, set before each batch, so a resumed run follows the same schedule and
            a checkpoint taken before the first milestone continues exactly as if trained with it.
        lr_decay_factor: multiplier per milestone passed, in (0, 1].
        texture_size: side of the RGB channels sampled from the source (256; = the generator's).
        erode: erosion of the person mask before RGB sampling (DINAR: 5).
        background: constant background of renders and targets in [-1, 1] (1.0 white, DINAR).
        face_label: part label of the face/head in "novel_parts" (1, the zoo's coarse head).
        source_prefix, target_prefix: batch key prefixes of the two views (see the module docstring).
        image_log_every_n_steps: image grid period (0 disables).
        export_path: where `on_train_end` saves the network (`save_pretrained`); None skips.
        vqgan: DINAR's VQGAN branch (fine-tuning "end-to-end ... to adapt the renderer to VQGAN decompression
            artifacts"): a trained `VQGAN` (module, or saved name / folder loaded at setup, frozen, kept out of
            checkpoints) through which the source texture is encoded, quantised (straight-through) and decoded
            before rendering, in training (see `vq_branch_probability`) and validation. None: stage 1.
        vq_branch_probability: fraction of training batches through the VQGAN branch (1.0: every batch; the
            paper states no fraction, its fine-tuning is the branch's). Prediction returns the direct texture.
        trainable: parts of the avatar network trained, "all" (encoder, generator, renderer: the paper's
            end-to-end) or "renderer" (ours, for a stage 2 already trained on this generator's textures: a
            trained generator would move its textures away from those the VQGAN and denoiser learned); the
            discriminator always trains.
        init_from: a stage-1 checkpoint whose network and discriminator start the fine-tuning (read at the
            start of a fit, weights_only, strict; a resumed fit then loads its own checkpoint over it).
    """

    def __init__(self, network: nn.Module, discriminator: nn.Module, perceptual: str = "lpips_vgg",
                 perceptual_fallback: str | None = None, reid: str | None = None, l2_weight: float = 2.2,
                 perceptual_weight: float = 1.0, dice_weight: float = 1.0, face_weight: float = 0.1,
                 adversarial_weight: float = 0.01, r1_weight: float = 0.1, r1_interval: int = 16, crop_size: int = 256,
                 face_crop_size: int = 128, lr: float = 2e-3, disc_lr: float | None = None,
                 betas: tuple[float, float] = (0.0, 0.99), lr_decay_milestones: tuple[int, ...] = (),
                 lr_decay_factor: float = 0.1, texture_size: int = 256, erode: int = 5, background: float = 1.0,
                 face_label: int = 1, source_prefix: str = "source_", target_prefix: str = "target_",
                 image_log_every_n_steps: int = 200, export_path: str | None = None, vqgan: str | VQGAN | None = None,
                 vq_branch_probability: float = 1.0, trainable: str = "all", init_from: str | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["network", "discriminator", "vqgan"])
        self.hparams["vqgan"] = vqgan if not isinstance(vqgan, nn.Module) else None
        self._vqgan_source = vqgan
        self.automatic_optimization = False
        self.network, self.discriminator = network, discriminator
        generated = getattr(getattr(network, "generator", None), "texture_size", texture_size)
        if generated != texture_size:
            raise ValueError(f"texture_size={texture_size} must equal the generator's texture_size={generated}")
        check_perceptual_kinds(perceptual, perceptual_fallback)
        check_step_decay(lr_decay_milestones, lr_decay_factor)
        check_branch_settings(vqgan, vq_branch_probability, trainable, init_from)
        self.perceptual_used, self._through_vq = None, False
        self.r1 = LazyR1(r1_weight, r1_interval)
        self.register_buffer("disc_steps", torch.zeros((), dtype=torch.long))

    def check_assets(self) -> None:
        """Raise, naming the missing file, when the training's perceptual network cannot be built
        (the CLI calls this before any data is prepared)."""
        check_perceptual_assets(self.hparams.perceptual, self.hparams.perceptual_fallback, self.hparams.reid)
        check_branch_assets(self._vqgan_source, self.hparams.init_from)

    def setup(self, stage: str) -> None:
        """Build the perceptual distance for training (fails here, before any step, when a required asset
        is missing); with `vqgan`, load it (frozen) and, in a fit, the `init_from` weights."""
        if self._vqgan_source is not None and self.frozen("vqgan") is None:
            self.attach_frozen("vqgan", load_vqgan(self._vqgan_source, self.network.texture_channels))
        if stage == "fit" and self.hparams.init_from is not None:
            step = load_stage1(self, self.hparams.init_from)
            log.info("NeuralAvatarSystem: started from %s (step %d)", self.hparams.init_from, step)
        if stage != "fit" or self.frozen("reconstruction") is not None:
            return  # validation and predict use no perceptual network
        hp = self.hparams
        distance, self.perceptual_used = build_perceptual(hp.perceptual, hp.perceptual_fallback, hp.reid)
        log.info("NeuralAvatarSystem: %s", self.perceptual_used)
        loss = AvatarReconstructionLoss(distance, hp.l2_weight, hp.perceptual_weight, hp.dice_weight, hp.face_weight,
                                        hp.crop_size, hp.face_crop_size)
        self.attach_frozen("reconstruction", loss.to(self.device))

    def configure_optimizers(self):
        hp = self.hparams
        params = branch_parameters(self.network, self._vqgan_source, hp.trainable)
        opt_g = torch.optim.Adam(params, lr=hp.lr, betas=tuple(hp.betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.disc_lr or hp.lr, betas=tuple(hp.betas))
        return [opt_g, opt_d]

    def learning_rates(self, global_step: int) -> tuple[float, float]:
        """(generator side, discriminator) Adam learning rates at `global_step` (`lr_decay_milestones`)."""
        hp = self.hparams
        factor = step_decay(global_step, hp.lr_decay_milestones, hp.lr_decay_factor)
        return hp.lr * factor, (hp.disc_lr or hp.lr) * factor

    def source_texture(self, batch: dict, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The avatar texture of each source view (B, C, T, T); `noise`: the encoder's noise channel
        (None: fresh noise, as in training)."""
        net, p = self.network, self.hparams.source_prefix
        rgb = batch.get(p + "rgb_texture")
        if rgb is None and net.use_rgb_channels:
            rgb = rgb_texture_channels(batch[p + "image"], batch[p + "uv"], batch[p + "mask"], self.hparams.texture_size,
                                       erode=self.hparams.erode, exclude=batch.get(p + "occlusion"))
        texture = net.make_texture(batch[p + "image"], batch[p + "mask"], rgb, noise=noise)
        return vq_roundtrip(self.frozen("vqgan"), texture) if self._through_vq else texture

    def evaluation_noise(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The encoder's noise channel for validation and prediction: one N(0, 1) draw per item from a generator
        seeded by the item's ids, so the values are the same in every run and on any number of
        processes (fresh global-RNG noise would differ per process). Without ids in the batch,
        the item's position in this process's share seeds it (`zoo.systems.common.item_noise`)."""
        return item_noise(batch, batch[self.hparams.source_prefix + "image"], batch_idx, ("person_index", "person_id", "source_view"))

    def target(self, batch: dict) -> dict[str, torch.Tensor]:
        """Real image composited over the background, its mask, UV, body mask and face mask."""
        prefix = self.hparams.target_prefix
        image, mask, uv = batch[prefix + "image"], batch[prefix + "mask"], batch[prefix + "uv"]
        face = batch.get(prefix + "face_mask")
        if face is None and prefix + "parts" in batch:
            parts = batch[prefix + "parts"]
            face = (parts.view(parts.shape[0], 1, *parts.shape[-2:]) == self.hparams.face_label).to(image.dtype)
        return {"real": composite(image, mask, self.hparams.background), "mask": mask, "uv": uv,
                "uv_mask": uv_body_mask(uv), "face": face}

    def render(self, texture: torch.Tensor, tgt: dict) -> dict[str, torch.Tensor]:
        return self.network.render(texture, tgt["uv"], tgt["uv_mask"], self.hparams.background)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        hp = self.hparams
        opt_g, opt_d = self.optimizers()
        set_learning_rates((opt_g, opt_d), self.learning_rates(self.global_step))
        tgt = self.target(batch)
        self._through_vq = self._vqgan_source is not None and (
            hp.vq_branch_probability == 1.0 or float(torch.rand(())) < hp.vq_branch_probability)

        self.toggle_optimizer(opt_g)
        out = self.render(self.source_texture(batch), tgt)
        terms = self.frozen("reconstruction")(out["rgb"], out["mask"], tgt["real"], tgt["mask"], tgt["uv_mask"], tgt["face"])
        loss = terms.pop("total")
        if hp.adversarial_weight > 0:
            terms["g_adv"] = nonsaturating_generator_loss(self.discriminator(out["rgb"]))
            loss = loss + hp.adversarial_weight * terms["g_adv"]
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        if hp.adversarial_weight > 0:
            self.toggle_optimizer(opt_d)
            real = tgt["real"].detach()
            with_r1 = self.r1.due(int(self.disc_steps))
            if with_r1:
                real.requires_grad_(True)
            logits_real = self.discriminator(real)
            terms["d_loss"] = logistic_discriminator_loss(logits_real, self.discriminator(out["rgb"].detach()))
            d_loss = terms["d_loss"]
            if with_r1:
                terms["r1"] = self.r1(logits_real, real)
                d_loss = d_loss + terms["r1"]
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            opt_d.step()
            self.untoggle_optimizer(opt_d)
            self.disc_steps += 1
        terms["loss"] = loss
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, on_step=True, batch_size=tgt["real"].shape[0])
        every = hp.image_log_every_n_steps
        if every and self.global_step % every == 0:
            source = batch[hp.source_prefix + "image"]
            log_image_grid(self, "train/renders", [source, tgt["real"], out["rgb"].detach()])

    @torch.no_grad()
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """PSNR, masked L2 and Dice per item, averaged over items (exact on N processes: `log_item_means`); with
        `vqgan`, of the renders through the VQGAN branch."""
        tgt, self._through_vq = self.target(batch), self._vqgan_source is not None
        out = self.render(self.source_texture(batch, self.evaluation_noise(batch, batch_idx)), tgt)
        scores = avatar_item_scores(out["rgb"], out["mask"], tgt["real"], tgt["mask"], tgt["uv_mask"])
        log_item_means(self, {f"val/{k}": v for k, v in scores.items()})
        if batch_idx == 0:
            log_image_grid(self, "val/renders", [batch[self.hparams.source_prefix + "image"], tgt["real"], out["rgb"]])

    @torch.no_grad()
    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Each source view's texture (written out by `zoo.callbacks.avatar_writer.AvatarWriter`); the
        encoder noise is `evaluation_noise`, so a prediction is the same in every run and process count."""
        self._through_vq = False
        texture = self.source_texture(batch, self.evaluation_noise(batch, batch_idx))
        out = {"texture": texture, "image": batch[self.hparams.source_prefix + "image"]}
        out.update({key: batch[key] for key in ("person_id", "source_view", "view_id", "frame") if key in batch})
        return out

    def on_train_end(self) -> None:
        path = self.hparams.export_path
        if path and self.trainer.is_global_zero:
            log.info("NeuralAvatarSystem: exported the avatar network to %s",
                     self.network.save_pretrained(export_folder(path)))
