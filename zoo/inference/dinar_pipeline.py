"""DINAR from one image to a complete avatar texture (paper sections 3.1-3.5), as one module that
runs without Lightning: `DinarOneImageAvatar(...)(image, person_mask, uv, cosines, occlusion)`.

Stages, each timed (seconds in the log and in the result) with a progress bar:
    encode      stage-1 style encoder + texture generator: the generated channels (16 in DINAR);
    rgb         occlusion-aware RGB sampling: the image's pixels scattered into the texture except
                the occlusion detector's (`zoo.render.rgb_texture_channels`), 5 channels;
    vq_encode   the stage-2 VQGAN encodes the single-view texture T^j: channels zeroed off the known
                texels, its known-or-filled and gap masks as the last two (as
                `zoo.systems.latent_inpainting` trains: `partial_input`), pre-quantisation latents;
    diffusion   latent inpainting conditioned on (latent | known mask resized nearest), with the
                known latent cells (3x3-eroded) replaced by the noised known latent before each step;
                DDIM 200 steps, eta 1 (DINAR's setting), or DDPM / DPM-Solver++;
    decode      VQGAN decoding, codes snapped to the codebook;
    paste       eq. 6: every channel of T^j where B_fill (its known-or-filled mask), the decoded
                texture elsewhere; "soft" (DINAR's test phase, `zoo.render.soft_paste_mask`): the
                rim of the known region blends into the decoded texels, its inside holds exactly;
                "hard": the whole known region holds exactly;
    finetune    RGB fine-tuning on the input image (`zoo.inference.dinar_finetune.finetune_rgb`).
Animation (the avatar drawn in new poses by the neural renderer) is `render_avatar` in
`zoo.callbacks.avatar_writer`, run by the predict system's writer.

Public API (signatures kept stable; `python -m zoo avatar --method dinar` builds on them):

    view_inputs(crop, mask, vertices, K, faces, corner_uvs, image_size, texture_size,
                limb_colours=None) -> {"image", "person_mask", "uv", "cosines", "occlusion"}
        one photo crop + its body fit -> the pipeline's inputs at the encoder's size.
    DinarOneImageAvatar(avatar, vqgan, denoiser, discriminator=None, **settings)
        (image, person_mask, uv, cosines, occlusion=None, back_visible=None, perceptual=None,
         generator=None, progress=False, prefix="", atlas=None, face_mask=None) -> OneImageResult
        with .texture (B, C, T, T) the final texture (render it with `avatar.render` or
        `zoo.callbacks.avatar_writer.render_avatar`), .inpainted, .single_view, .known, .seconds.
    needs_perceptual(finetune_steps, finetune) -> bool: whether LPIPS(vgg) must be passed.

The networks are the stage-1 `DinarAvatarNet` (+ its discriminator, for the fine-tuning's
adversarial term) and the stage-2 `VQGAN` and `DiffusionUNet`; the diffusion settings must be those
the denoiser was trained with (`LatentInpaintingSystem`'s arguments, DINAR's defaults).
"""
from __future__ import annotations

import inspect
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from zoo.diffusion import GaussianDiffusion
from zoo.diffusion.sampling import canonical_sampler
from zoo.inference.dinar_finetune import back_visible as shows_back
from zoo.inference.dinar_finetune import finetune_rgb, finetune_schedule
from zoo.losses.avatar import PerceptualDistance
from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.dinar import DinarAvatarNet
from zoo.modules.stylegan2 import StyleGAN2Discriminator
from zoo.modules.vqgan import VQGAN
from zoo.pretrained import PretrainedMixin
from zoo.render.neural_texture import rgb_texture_channels, texel_view_cosines
from zoo.render.occlusion import dilations_for, occlusion_from_uv
from zoo.render.rasterize import rasterize
from zoo.render.shading import composite, render_uv
from zoo.render.uv_space import partial_texture_layout, soft_paste_mask

log = logging.getLogger(__name__)
KNOWN_PASTES = ("soft", "hard")
STAGES = ("encode", "rgb", "vq_encode", "diffusion", "decode", "paste", "finetune")
# finetune_rgb's keywords a config may set (the rest are the call's data).
FINETUNE_KEYS = tuple(k for k, p in inspect.signature(finetune_rgb).parameters.items()
                      if p.kind is p.KEYWORD_ONLY and k not in ("discriminator", "perceptual", "known_mask", "generator",
                                                                "progress", "steps", "rescale_steps", "background",
                                                                "atlas_mask"))


@torch.no_grad()
def view_inputs(crop: torch.Tensor, mask: torch.Tensor, vertices: torch.Tensor, K: torch.Tensor, faces: torch.Tensor,
                corner_uvs: torch.Tensor, image_size: int, texture_size: int,
                limb_colours: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The pipeline's inputs for one photo crop with its body fit, as `DinarFolder` makes them.

    Args:
        crop: (3, H, W) the photo crop in [0, 1]; mask: (1, H, W) the person's segmentation.
        vertices: (V, 3) camera-space vertices of the fitted body; K: (3, 3) intrinsics of the crop.
        faces, corner_uvs: the body's triangles (F, 3) and UV layout (F, 3, 2).
        image_size: the encoder's input side S (the crop is resized to S x S; K follows).
        texture_size: the texture side T.
        limb_colours: the body's limb-colour texture (`zoo.render.occlusion.limb_colour_texture`)
            for the occlusion detector; None: no detector.

    Returns:
        image (1, 3, S, S) the person on black in [-1, 1], person_mask (1, 1, S, S), uv
        (1, S, S, 2), cosines (1, 1, T, T), occlusion (1, 1, S, S) (zeros without a detector).
    """
    if crop.dim() != 3 or crop.shape[0] != 3 or mask.shape != (1, *crop.shape[1:]):
        raise ValueError(f"crop must be (3, H, W) and mask (1, H, W), got {tuple(crop.shape)} and {tuple(mask.shape)}")
    H, W = crop.shape[1:]
    S = image_size
    K_s = K.clone().float()
    K_s[0] *= S / W
    K_s[1] *= S / H
    K_s[0, 2] = (K[0, 2] + 0.5) * S / W - 0.5  # pixel centres at integer coordinates (zoo.render.camera)
    K_s[1, 2] = (K[1, 2] + 0.5) * S / H - 0.5
    verts = vertices[None].float()
    uv, uv_mask = render_uv(rasterize(verts, faces, K_s[None], (S, S)), corner_uvs)
    image = F.interpolate(crop[None].float(), size=(S, S), mode="bilinear", antialias=True, align_corners=False)
    person = (F.interpolate(mask[None].float(), size=(S, S), mode="area") > 0.5).float()
    if limb_colours is not None:
        occlusion = occlusion_from_uv(limb_colours, uv, uv_mask, dilations=dilations_for(S))
    else:
        occlusion = torch.zeros_like(uv_mask)
    cosines = texel_view_cosines(verts, faces, corner_uvs, texture_size)
    return {"image": composite(image * 2 - 1, person, -1.0), "person_mask": person, "uv": uv, "cosines": cosines,
            "occlusion": occlusion}


def needs_perceptual(finetune_steps: int | None, finetune: dict | None) -> bool:
    """Whether a pipeline with these settings fine-tunes with a perceptual term (weight > 0)."""
    return finetune_steps != 0 and (finetune or {}).get("perceptual_weight", 1.0) > 0


class StageClock:
    """Times named stages: `with clock.stage("diffusion", total=200) as bar: ... bar.update(1)`.
    Logs "<prefix>stage: X.XX s" and keeps the seconds in `seconds`; a tqdm bar per stage when
    `progress`."""

    def __init__(self, progress: bool = True, prefix: str = "") -> None:
        self.progress, self.prefix = progress, prefix
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: int = 1):
        bar = tqdm(total=total, desc=f"{self.prefix}{name}", unit="step", leave=False, disable=not self.progress)
        start = time.perf_counter()
        try:
            yield bar
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            bar.update(max(total - bar.n, 0))
            bar.close()
            log.info("%s%s: %.2f s", self.prefix, name, self.seconds[name])


class _Counted:
    """The denoiser, calling `tick()` after each evaluation (the diffusion stage's progress)."""

    def __init__(self, denoiser: nn.Module, tick) -> None:
        self.denoiser, self.tick = denoiser, tick

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.denoiser(x, t)
        self.tick()
        return out


@dataclass
class OneImageResult:
    """Textures (B, C, T, T) after each step and the seconds of each stage (summed over items).

    single_view: T^j (generated + RGB channels); inpainted: after the paste (eq. 6); texture: after
    the fine-tuning (= inpainted when it is off); known: (B, 1, T, T) B_fill of the input view;
    back_visible: per item, the view showed the back (the 128-step schedule; empty without fine-tuning)."""

    single_view: torch.Tensor
    inpainted: torch.Tensor
    texture: torch.Tensor
    known: torch.Tensor
    seconds: dict[str, float] = field(default_factory=dict)
    finetune_losses: list[list[dict[str, float]]] = field(default_factory=list)
    back_visible: list[bool] = field(default_factory=list)


class DinarOneImageAvatar(PretrainedMixin, nn.Module):
    """DINAR's whole inference: one image with its body fit -> the avatar's neural texture.

    Args:
        avatar: the stage-1 network (encoder + generator + RGB channels + neural renderer).
        vqgan: the stage-2 VQGAN on the avatar's textures (in_channels = avatar.texture_channels).
        denoiser: the latent denoiser (2 * code_dim + 1 -> code_dim channels).
        discriminator: the stage-1 discriminator (image size = the input's), for the fine-tuning's
            adversarial term; None when that term's weight is 0.
        num_train_timesteps, beta_schedule, beta_start, beta_end, prediction_type, ddim_timesteps,
            latent_scale, quantize_latents, erode_known_mask, final_latent_paste: the diffusion as
            the denoiser was trained (DINAR: 1000, "scaled_linear", 3e-4, 2e-2, "epsilon",
            "leading", 1.0, False, True, False; see `LatentInpaintingSystem`).
        sampler, sampling_steps, eta: "ddim", 200, 1.0 (DINAR's inference); eta is DDIM's only.
        known_paste: "soft" (DINAR's test phase: the known mask eroded and blurred 3x3, so its rim
            blends) or "hard" (every known texel exactly T^j); as `LatentInpaintingSystem`.
        rgb_erode: erosion of the person mask before the RGB scatter (DINAR: 5; the stage-1 run's).
        background: background of renders in [-1, 1] (1.0 white, DINAR).
        finetune_steps: None: DINAR's 64 (128 with the back visible, the first 64 then tune the
            global scale / shift, `finetune_schedule`); 0 turns the fine-tuning off.
        finetune: keyword settings of `finetune_rgb` (DINAR's defaults when absent), e.g.
            {"perceptual_weight": 0.0}; allowed keys: `FINETUNE_KEYS`.
    """

    def __init__(self, avatar: DinarAvatarNet, vqgan: VQGAN, denoiser: DiffusionUNet,
                 discriminator: StyleGAN2Discriminator | None = None, num_train_timesteps: int = 1000,
                 beta_schedule: str = "scaled_linear", beta_start: float = 3e-4, beta_end: float = 2e-2,
                 prediction_type: str = "epsilon", ddim_timesteps: str = "leading", latent_scale: float = 1.0,
                 quantize_latents: bool = False, erode_known_mask: bool = True, final_latent_paste: bool = False,
                 sampler: str = "ddim", sampling_steps: int = 200, eta: float = 1.0, known_paste: str = "soft",
                 rgb_erode: int = 5,
                 background: float = 1.0, finetune_steps: int | None = None, finetune: dict | None = None):
        super().__init__()
        if not isinstance(avatar, DinarAvatarNet) or avatar.generator is None or not avatar.use_rgb_channels:
            raise ValueError("avatar must be a DinarAvatarNet with encoder, generator and RGB channels (DINAR's 16 + 5)")
        if not isinstance(vqgan, VQGAN) or vqgan.in_channels != avatar.texture_channels:
            raise ValueError(f"vqgan must be a VQGAN on {avatar.texture_channels}-channel textures, got "
                             f"{type(vqgan).__name__} with in_channels={getattr(vqgan, 'in_channels', None)}")
        if vqgan.out_channels < avatar.texture_channels:
            raise ValueError(f"vqgan.out_channels={vqgan.out_channels} < {avatar.texture_channels} texture channels")
        if denoiser.in_channels != 2 * vqgan.code_dim + 1 or denoiser.out_channels != vqgan.code_dim:
            raise ValueError(f"denoiser must map {2 * vqgan.code_dim + 1} -> {vqgan.code_dim} channels, got "
                             f"{denoiser.in_channels} -> {denoiser.out_channels}")
        size = avatar.generator.texture_size
        if size % vqgan.downsampling:
            raise ValueError(f"texture side {size} must be a multiple of the VQGAN's downsampling {vqgan.downsampling}")
        canonical_sampler(sampler)
        if known_paste not in KNOWN_PASTES:
            raise ValueError(f"known_paste must be one of {KNOWN_PASTES}, got {known_paste!r}")
        if not 1 <= sampling_steps <= num_train_timesteps:
            raise ValueError(f"sampling_steps must be in [1, {num_train_timesteps}], got {sampling_steps}")
        if rgb_erode < 0 or (rgb_erode and rgb_erode % 2 == 0):
            raise ValueError(f"rgb_erode must be 0 or odd, got {rgb_erode}")
        if finetune_steps is not None and finetune_steps < 0:
            raise ValueError(f"finetune_steps must be None or >= 0, got {finetune_steps}")
        unknown = set(finetune or {}) - set(FINETUNE_KEYS)
        if unknown:
            raise ValueError(f"unknown finetune settings {sorted(unknown)}; allowed: {FINETUNE_KEYS}")
        self.finetune_settings = dict(finetune or {})
        adversarial = self.finetune_settings.get("adversarial_weight", 0.01)
        if adversarial > 0 and finetune_steps != 0 and discriminator is None:
            raise ValueError(f"the fine-tuning's adversarial_weight={adversarial} needs the stage-1 discriminator; "
                             "pass it, or set finetune: {adversarial_weight: 0}")
        self.avatar, self.vqgan, self.denoiser, self.discriminator = avatar, vqgan, denoiser, discriminator
        self.diffusion = GaussianDiffusion(num_train_timesteps, beta_schedule, beta_start, beta_end, prediction_type,
                                           ddim_timesteps)
        self.latent_scale, self.quantize_latents = latent_scale, quantize_latents
        self.erode_known_mask, self.final_latent_paste = erode_known_mask, final_latent_paste
        self.sampler, self.sampling_steps, self.eta, self.known_paste = sampler, sampling_steps, eta, known_paste
        self.rgb_erode, self.background, self.finetune_steps = rgb_erode, background, finetune_steps
        self.texture_size = size

    @property
    def needs_perceptual(self) -> bool:
        """Whether `forward` needs a perceptual network (fine-tuning on, perceptual weight > 0)."""
        return needs_perceptual(self.finetune_steps, self.finetune_settings)

    # --- the stages ---------------------------------------------------------------------------
    @torch.no_grad()
    def single_view_texture(self, image: torch.Tensor, person_mask: torch.Tensor, uv: torch.Tensor,
                            occlusion: torch.Tensor | None = None, generator: torch.Generator | None = None,
                            clock: StageClock | None = None) -> torch.Tensor:
        """T^j (B, C, T, T): generated channels of the image at the encoder's size (person on black,
        in [-1, 1]) + the RGB channels scattered from it (pixels of `occlusion` excluded)."""
        clock = clock or StageClock(progress=False)
        encoder = self.avatar.encoder
        with clock.stage("encode"):
            noise = None
            if encoder.noise_channel:
                device = image.device if generator is None else generator.device
                noise = torch.randn(image.shape[0], 1, *image.shape[-2:], generator=generator, device=device).to(image)
            generated = self.avatar.generator(encoder(image, person_mask, noise), noise_mode="const")
        with clock.stage("rgb"):
            rgb = rgb_texture_channels(image, uv, person_mask, self.texture_size, erode=self.rgb_erode, exclude=occlusion)
        return torch.cat([generated, rgb.to(generated.dtype)], dim=1)

    @torch.no_grad()
    def inpaint(self, single_view: torch.Tensor, generator: torch.Generator | None = None,
                clock: StageClock | None = None, atlas: torch.Tensor | None = None) -> torch.Tensor:
        """The complete texture (B, C, T, T): T^j where its known-or-filled mask is set, the
        diffusion's sample decoded elsewhere (eq. 6; `known_paste`). `atlas`: optional (1 or B, 1,
        T, T) UV atlas of the soft paste (None: every texel)."""
        clock = clock or StageClock(progress=False)
        known = (single_view[:, -2:-1] > 0.5).to(single_view.dtype)
        with clock.stage("vq_encode"):
            # the layout LatentInpaintingSystem trains with: channels zeroed off B_fill, its masks last
            vq_input = partial_texture_layout(single_view[:, :-2], single_view[:, -2:-1], single_view[:, -1:])
            z_known = self.vqgan.encode(vq_input, quantize=self.quantize_latents) * self.latent_scale
            resized = F.interpolate(known, size=z_known.shape[-2:], mode="nearest")
        sampler = canonical_sampler(self.sampler)
        eta = self.eta if sampler == "ddim" else 0.0
        with clock.stage("diffusion", total=self.sampling_steps) as bar:
            was_training = self.denoiser.training
            self.denoiser.eval()
            try:
                z = self.diffusion.sample(_Counted(self.denoiser, lambda: bar.update(1)), z_known.shape,
                                          cond=torch.cat([z_known, resized], dim=1), sampler=sampler,
                                          num_steps=self.sampling_steps, eta=eta, known=z_known, known_mask=resized,
                                          erode=self.erode_known_mask, generator=generator, device=z_known.device,
                                          dtype=z_known.dtype, final_paste=self.final_latent_paste)
            finally:
                self.denoiser.train(was_training)
        with clock.stage("decode"):
            decoded = self.vqgan.decode(z / self.latent_scale, quantize=True)[:, :single_view.shape[1]]
        with clock.stage("paste"):
            decoded = decoded.to(single_view.dtype)
            if self.known_paste == "hard":
                return torch.where(known > 0.5, single_view, decoded)
            weight = soft_paste_mask(known, atlas).to(single_view.dtype)
            return weight * single_view + (1 - weight) * decoded

    def finetune(self, texture: torch.Tensor, image: torch.Tensor, person_mask: torch.Tensor, uv: torch.Tensor,
                 cosines: torch.Tensor, known: torch.Tensor, back_visible: bool = False,
                 perceptual: PerceptualDistance | None = None, generator: torch.Generator | None = None,
                 clock: StageClock | None = None, atlas: torch.Tensor | None = None):
        """`finetune_rgb` of one avatar (1, C, T, T) on its input view with this module's settings."""
        clock = clock or StageClock(progress=False)
        steps, rescale = finetune_schedule(back_visible)
        if self.finetune_steps is not None:
            steps, rescale = self.finetune_steps, min(rescale, self.finetune_steps)
        with clock.stage("finetune", total=steps) as bar:
            return finetune_rgb(texture, self.avatar.renderer, image, person_mask, uv, cosines,
                                discriminator=self.discriminator, perceptual=perceptual, steps=steps,
                                rescale_steps=rescale, known_mask=known, background=self.background,
                                generator=generator, progress=lambda done, total: bar.update(1),
                                atlas_mask=atlas, **self.finetune_settings)

    def forward(self, image: torch.Tensor, person_mask: torch.Tensor, uv: torch.Tensor, cosines: torch.Tensor,
                occlusion: torch.Tensor | None = None, back_visible: bool | None = None,
                perceptual: PerceptualDistance | None = None, generator: torch.Generator | None = None,
                progress: bool = False, prefix: str = "", atlas: torch.Tensor | None = None,
                face_mask: torch.Tensor | None = None) -> OneImageResult:
        """Avatars of B input views, one after the other (see the module docstring).

        Args:
            image: (B, 3, S, S) the person on black in [-1, 1] at the encoder's size; person_mask
                (B, 1, S, S); uv (B, S, S, 2) the fitted body's UV render (`render_uv`).
            cosines: (B, 1, T, T) texel view cosines of the input view (`texel_view_cosines`).
            occlusion: optional (B, 1, S, S) pixels the occlusion detector keeps out.
            back_visible: the inputs show the back (DINAR's 128-step fine-tuning); None: decided per
                input from its view (`zoo.inference.dinar_finetune.back_visible`: the face texels'
                mean view cosine <= 0), which needs `face_mask`.
            perceptual: the fine-tuning's perceptual network (LPIPS(vgg) in DINAR); required when
                `needs_perceptual`.
            generator: the random source of every stage (encoder noise, sampler, crops).
            progress: a progress bar per stage; prefix: text before each stage's name.
            atlas: optional (1 or B, 1, T, T) the UV atlas (the soft paste and the fine-tuning's
                feathering treat off-atlas texels as known; None: every texel is on the atlas).
            face_mask: (T, T) or (1 or B, 1, T, T) the face region of the body's UV layout, for
                `back_visible=None`.
        """
        B = image.shape[0]
        if cosines.shape != (B, 1, self.texture_size, self.texture_size):
            raise ValueError(f"cosines must be ({B}, 1, {self.texture_size}, {self.texture_size}), got "
                             f"{tuple(cosines.shape)}")
        if self.needs_perceptual and perceptual is None:
            raise ValueError("the fine-tuning's perceptual_weight > 0 needs a perceptual network (DINAR: LPIPS(vgg), "
                             "zoo.metrics.lpips.load_lpips_vgg); or set finetune: {perceptual_weight: 0}")
        clock = StageClock(progress, prefix)
        backs: list[bool] = []
        if self.finetune_steps != 0:
            if back_visible is not None:
                backs = [bool(back_visible)] * B
            elif face_mask is None:
                raise ValueError("the fine-tuning schedule needs back_visible, or face_mask (the body's UV face "
                                 "region) to decide it from each input view")
            else:
                backs = shows_back(cosines, face_mask).tolist()
                log.info("%sback visible (face texels' mean view cosine <= 0): %s", prefix, backs)
        single, inpainted, final, losses = [], [], [], []
        for i in range(B):
            item = slice(i, i + 1)
            tj = self.single_view_texture(image[item], person_mask[item], uv[item],
                                          None if occlusion is None else occlusion[item], generator, clock)
            atlas_i = None if atlas is None else atlas[item] if atlas.shape[0] == B else atlas[:1]
            full = self.inpaint(tj, generator, clock, atlas_i)
            known = tj[:, -2:-1]
            out = full
            if self.finetune_steps != 0:
                tuned = self.finetune(full, image[item], person_mask[item], uv[item], cosines[item], known,
                                      backs[i], perceptual, generator, clock, atlas_i)
                out = tuned.texture
                losses.append(tuned.losses)
            single.append(tj)
            inpainted.append(full)
            final.append(out)
        return OneImageResult(torch.cat(single), torch.cat(inpainted), torch.cat(final),
                              (torch.cat(single)[:, -2:-1] > 0.5).to(image.dtype), dict(clock.seconds), losses, backs)


__all__ = ["DinarOneImageAvatar", "FINETUNE_KEYS", "OneImageResult", "STAGES", "StageClock", "needs_perceptual",
           "view_inputs"]
