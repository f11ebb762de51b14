"""DINAR's one-image avatars through `python -m zoo predict` (paper section 3.4): a thin predict
system around `zoo.inference.dinar_pipeline.DinarOneImageAvatar`.

    python -m zoo predict --config configs/dinar/one_image_avatar.yaml --ckpt_path <stage-1 last.ckpt>

Per input view: encode -> occlusion-aware RGB sampling -> VQ encode -> diffusion inpainting ->
decode -> paste -> RGB fine-tuning, each stage with a progress bar and its seconds in the log; the
writer (`zoo.callbacks.avatar_writer.AvatarWriter`) then writes the final texture and animates it
(turntable, walk).

Networks: the stage-1 `DinarAvatarNet` and its discriminator are this system's state (keys
`network.*`, `discriminator.*`, as `NeuralAvatarSystem` checkpoints them, so `--ckpt_path` of a
stage-1 run fills them), or pretrained names / folders; the stage-2 VQGAN and denoiser are
pretrained names / folders (or modules), frozen and kept out of checkpoints. The fine-tuning's
perceptual term is LPIPS(vgg), as DINAR: with its weight > 0 and the weights file missing, the run
stops before any data is read, naming the file (set `pipeline: {finetune: {perceptual_weight: 0}}`
to run without it).

Batch contract (S = source_prefix): S+"image" (B, 3, H, W) person on black in [-1, 1], S+"mask",
S+"uv", S+"texel_cosines" (B, 1, T, T), optionally S+"occlusion" and "texture_mask" (the UV
atlas, for the soft paste); ids in "frame" or "person_id"
(`DinarFolderDataModule`, `SyntheticAvatarDataModule`).
"""
from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from torch import nn

from zoo.inference.dinar_pipeline import FINETUNE_KEYS, DinarOneImageAvatar, needs_perceptual
from zoo.losses.avatar import PerceptualDistance
from zoo.metrics.lpips import MetricUnavailable, load_lpips_vgg, lpips_status
from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.dinar import DinarAvatarNet
from zoo.modules.stylegan2 import StyleGAN2Discriminator
from zoo.modules.vqgan import VQGAN
from zoo.pretrained import load_pretrained
from zoo.pretrained.registry import resolve
from zoo.systems.common import FrozenNetworks

log = logging.getLogger(__name__)


def _module(value, cls: type, what: str) -> nn.Module:
    module = load_pretrained(value) if isinstance(value, str) else value
    if not isinstance(module, cls):
        raise TypeError(f"{what} must be a {cls.__name__} (a module or a pretrained name / folder), got "
                        f"{type(module).__name__}" + (f" from {value!r}" if isinstance(value, str) else ""))
    return module


class DinarOneImageSystem(FrozenNetworks, pl.LightningModule):
    """Predict-only system of DINAR's whole inference (see the module docstring).

    Args:
        network: the stage-1 avatar network, a module or a pretrained name / folder.
        vqgan: the stage-2 VQGAN, a module or a pretrained name / folder.
        denoiser: the stage-2 latent denoiser, a module or a pretrained name / folder.
        discriminator: the stage-1 discriminator (the fine-tuning's adversarial term), a module, a
            pretrained name / folder, or None when that term's weight is 0.
        pipeline: settings of `DinarOneImageAvatar` (diffusion schedule as the denoiser was
            trained, sampler, steps, fine-tuning, ...); DINAR's defaults where absent.
        back_visible: the inputs show the back (DINAR's 128-step fine-tuning with 64 steps of
            global colour scale / shift first); None: decided per input from its view (the face
            texels' mean view cosine <= 0), with the batch's "face_mask_uv" (the body's UV face region).
        background: background of the renders in [-1, 1] (1.0 white, DINAR; the writer's too).
        seed: the random source of each item is seed + its batch index (encoder noise, sampler,
            fine-tuning crops): a run is repeatable.
        source_prefix: batch key prefix of the input view.
        progress: a progress bar per stage.
    """

    def __init__(self, network: str | DinarAvatarNet, vqgan: str | VQGAN, denoiser: str | DiffusionUNet,
                 discriminator: str | StyleGAN2Discriminator | None = None, pipeline: dict | None = None,
                 back_visible: bool | None = None, background: float = 1.0, seed: int = 0, source_prefix: str = "source_",
                 progress: bool = True):
        super().__init__()
        self.save_hyperparameters(ignore=["network", "vqgan", "denoiser", "discriminator"])
        for key, value in (("network", network), ("vqgan", vqgan), ("denoiser", denoiser),
                           ("discriminator", discriminator)):
            if isinstance(value, str) or value is None:
                self.hparams[key] = value
        settings = dict(pipeline or {})
        if "background" in settings:
            raise ValueError("set background on the system (it is the writer's too), not in pipeline")
        unknown = set(settings.get("finetune") or {}) - set(FINETUNE_KEYS)
        if unknown:
            raise ValueError(f"unknown pipeline.finetune settings {sorted(unknown)}; allowed: {FINETUNE_KEYS}")
        self.settings = settings
        # stage 1 is this system's state (a stage-1 checkpoint fills it); stage 2 is loaded on first use
        self.network = _module(network, DinarAvatarNet, "network")
        self.discriminator = None if discriminator is None else _module(discriminator, StyleGAN2Discriminator,
                                                                        "discriminator")
        self._stage2 = {"vqgan": vqgan, "denoiser": denoiser}

    @property
    def perceptual(self) -> PerceptualDistance | None:
        """The fine-tuning's LPIPS(vgg) distance once `setup` loaded it; None when not needed."""
        return self.frozen("perceptual")

    @property
    def needs_perceptual(self) -> bool:
        return needs_perceptual(self.settings.get("finetune_steps"), self.settings.get("finetune"))

    @property
    def pipeline(self) -> DinarOneImageAvatar:
        """The whole-inference module around this system's networks (built on first use)."""
        runner = self.frozen_networks.get("pipeline")
        if runner is None:
            runner = DinarOneImageAvatar(self.network, _module(self._stage2["vqgan"], VQGAN, "vqgan"),
                                         _module(self._stage2["denoiser"], DiffusionUNet, "denoiser"),
                                         self.discriminator, background=self.hparams.background, **self.settings)
            self.attach_frozen("pipeline", runner)
        if next(runner.vqgan.parameters()).device != self.device:  # the stage-1 part moves with the system
            runner.to(self.device)
        return runner

    def check_predict_assets(self) -> None:
        """Raise, naming the file, when a stage-2 network given by name or the fine-tuning's
        LPIPS(vgg) weights are missing (the CLI calls this before any data is prepared)."""
        for source in self._stage2.values():
            if isinstance(source, str):
                resolve(source)
        if self.needs_perceptual:
            status = lpips_status(net="vgg")
            if status != "ok":
                raise MetricUnavailable(f"the RGB fine-tuning's perceptual loss is LPIPS(vgg): {status}; or set "
                                        "pipeline: {finetune: {perceptual_weight: 0}}")

    def setup(self, stage: str) -> None:
        if stage != "predict":
            raise ValueError(f"DinarOneImageSystem only predicts (python -m zoo predict), got stage {stage!r}")
        self.check_predict_assets()
        self.pipeline  # build now: a wrong network surfaces before the first image
        if self.needs_perceptual and self.frozen("perceptual") is None:  # frozen: kept out of the state dict
            self.attach_frozen("perceptual", PerceptualDistance(load_lpips_vgg(), "lpips"))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A stage-1 `NeuralAvatarSystem` checkpoint fills `network` and `discriminator`; its
        discriminator step counter has no use here, and its discriminator is not needed when this
        system has none."""
        state = checkpoint["state_dict"]
        state.pop("disc_steps", None)
        if self.discriminator is None:
            dropped = [k for k in state if k.startswith("discriminator.")]
            for key in dropped:
                del state[key]
            if dropped:
                log.info("DinarOneImageSystem: no discriminator configured; %d discriminator tensors of the "
                         "checkpoint not used", len(dropped))

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        p = self.hparams.source_prefix
        names = batch.get("frame", batch.get("person_id"))
        name = str(names[0]) if names is not None and len(names) == 1 else f"batch {batch_idx}"
        generator = torch.Generator(device=self.device).manual_seed(int(self.hparams.seed) + batch_idx)
        result = self.pipeline(batch[p + "image"], batch[p + "mask"], batch[p + "uv"], batch[p + "texel_cosines"],
                               batch.get(p + "occlusion"), self.hparams.back_visible, self.perceptual,
                               generator,
                               progress=self.hparams.progress, prefix=f"{name}: ", atlas=batch.get("texture_mask"),
                               face_mask=batch.get("face_mask_uv"))
        log.info("%s: %.2f s in all (%s)", name, sum(result.seconds.values()),
                 ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items()))
        out = {"texture": result.texture, "inpainted": result.inpainted, "single_view": result.single_view,
               "image": batch[p + "image"]}
        for key in ("person_id", "frame", "source_view"):
            if key in batch:
                out[key] = batch[key]
        return out
