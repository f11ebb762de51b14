"""DINAR's RGB fine-tuning at inference (paper section 3.4; DINAR's `finetune/avatar_tune.py` and
`configs/finetune_avatar.yaml`): a few optimisation steps of the texture's RGB channels against
the input image, through the frozen neural renderer, to bring back the image's high frequencies.

Public API (signatures kept stable; other code builds on them):

    finetune_schedule(back_visible: bool) -> (steps, rescale_steps)
        (64, 0), or (128, 64) when the back is visible (DINAR's `--finetune_back`).
    back_visible(cosines, face_mask) -> (B,) bool
        whether each input view shows the person's back, from its texel view cosines.
    finetune_gradient_mask(cosines, threshold=0.6, sharpness=20.0, blur=5) -> (B, 1, T, T)
        the per-texel gradient weight from the view cosines (`zoo.render.texel_view_cosines`).
    finetune_rgb(texture, renderer, image, person_mask, uv, cosines, *, discriminator=None,
                 perceptual=None, steps=64, rescale_steps=0, known_mask=None, generator=None,
                 progress=None, ...DINAR's settings as keywords) -> FinetuneResult
        the fine-tuned texture (only channels -5:-2 differ from `texture`) and what was used;
        works under torch.no_grad / inference_mode (it enables gradients itself).

What is optimised (as DINAR):
- the RGB channels (-5:-2) of the known texels (channel -2 > 0.5, the texels the input view gave
  a colour). Their gradient is multiplied by `finetune_gradient_mask`: zero where the surface
  turns away from the camera (view cosine < 0.6), a soft ramp above it, blurred 5x5 so the
  parts' outlines are not pulled. A texel whose mask is 0 is never changed.
- for the first `rescale_steps` steps instead, one global per-channel scale and shift of the RGB
  channels (all texels; the renders are compared with the input view, so the colours the diffusion
  gave are brought to the photo's exposure). Afterwards the unseen texels keep
  `rgb * scale + shift`; the known ones are optimised.
The generated channels, both masks and the renderer are never changed. Losses: L2 (1.0) +
perceptual (1.0, LPIPS(vgg) in DINAR, on random `crop_size` crops centred on the body) on the
pixels where the body is drawn and the person is (DINAR's `intersection` loss mask),
non-saturating adversarial 0.01 against a copy of the stage-1 discriminator trained alongside on
the real / rendered input (Adam lr 4e-4, lazy R1 0.1 every 16 steps); Adam lr 2e-3, betas (0, 0.99),
a batch of 4 copies of the input (each with its own perceptual crop); the body's UV render eroded
3x3 (DINAR's finetuning does this).

Output (DINAR's `mix_with_source`): the tuned RGB is feathered into the rest with a `feather` x
`feather` box blur of the known mask (the atlas' outside counts as known for the blur, so atlas
borders are not faded): rgb = u + w * known * (tuned - u), u = rgb * scale + shift. DINAR adds an
SMPL-X eyes-and-hands map to w; the zoo's bodies have no such asset, so it is not applied.

The perceptual network is passed in (`zoo.losses.PerceptualDistance`); the zoo never downloads:
a weight > 0 with no network raises (the pipeline loads LPIPS(vgg) with
`zoo.metrics.lpips.load_lpips_vgg`, which fails naming the missing file).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zoo.losses.adversarial import LazyR1, logistic_discriminator_loss, nonsaturating_generator_loss
from zoo.losses.avatar import AvatarReconstructionLoss, PerceptualDistance, dinar_loss_mask
from zoo.render.shading import composite

RGB = slice(-5, -2)  # the RGB channels of a DINAR texture (`zoo.render.neural_texture`)
KNOWN = -2  # the known-or-filled mask channel


def finetune_schedule(back_visible: bool) -> tuple[int, int]:
    """(steps, rescale_steps): DINAR's 64 steps of RGB tuning, or, when the back is visible
    (`finetune_texture.py --finetune_back`), 64 steps of the global scale / shift then 64 of RGB."""
    return (128, 64) if back_visible else (64, 0)


def back_visible(cosines: torch.Tensor, face_mask: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the input view shows the back. DINAR chooses its 128-step schedule by hand
    (`--finetune_back`); here the view decides: the mean view cosine (`texel_view_cosines`) of the
    face texels is <= 0, i.e. the face turns away from the camera (the front / back rule of
    scripts/dinar_eval.py).

    Args:
        cosines: (B, 1, T, T) texel view cosines of the input views.
        face_mask: (T, T), (1, T, T) or (1 or B, 1, T, T) the face region of the body's UV layout
            (`zoo.body` `uv_region_mask("face", T)`).
    """
    if cosines.dim() != 4 or cosines.shape[1] != 1:
        raise ValueError(f"cosines must be (B, 1, T, T), got {tuple(cosines.shape)}")
    face = face_mask.to(cosines.dtype)
    face = face.reshape(1, 1, *face.shape[-2:]) if face.dim() < 4 else face
    if face.shape[-2:] != cosines.shape[-2:] or face.shape[1] != 1 or face.shape[0] not in (1, cosines.shape[0]):
        raise ValueError(f"face_mask {tuple(face_mask.shape)} does not fit cosines {tuple(cosines.shape)}")
    area = face.sum(dim=(1, 2, 3))
    if (area <= 0).any():
        raise ValueError("face_mask has no face texel: it cannot tell front from back")
    return (cosines * face).sum(dim=(1, 2, 3)) / area <= 0


def box_blur(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a `size` x `size` window, image borders reflected without repeating the edge
    (OpenCV's default BORDER_REFLECT_101). An even window reaches one texel further right / down
    (kornia's `box_blur`, which DINAR uses for its 10 x 10 feathering)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if size == 1:
        return x
    front = (size - 1) // 2
    rear = size - 1 - front
    padded = F.pad(x, (front, rear, front, rear), mode="reflect")
    return F.avg_pool2d(padded, size, stride=1)


def finetune_gradient_mask(cosines: torch.Tensor, threshold: float = 0.6, sharpness: float = 20.0,
                           blur: int = 5) -> torch.Tensor:
    """Per-texel weight of the RGB gradient from the view cosines (B, 1, T, T).

    c * max(1 - exp((threshold - c) * sharpness), 0), then a `blur` x `blur` box blur: 0 where the
    surface is seen at a grazing angle or from behind (c <= threshold) and more than blur // 2
    texels from any texel above it; rising to about c on frontal texels (DINAR: 0.6, 20, 5x5).
    """
    if cosines.dim() != 4 or cosines.shape[1] != 1:
        raise ValueError(f"cosines must be (B, 1, T, T), got {tuple(cosines.shape)}")
    if not -1.0 <= threshold < 1.0 or sharpness <= 0 or blur < 1:
        raise ValueError(f"need -1 <= threshold < 1, sharpness > 0, blur >= 1; got {threshold}, {sharpness}, {blur}")
    c = cosines.float()
    soft = c * (1.0 - torch.exp((threshold - c) * sharpness)).clamp(min=0.0)
    return box_blur(soft, blur)


def feather_weights(known: torch.Tensor, size: int = 10, atlas: torch.Tensor | None = None) -> torch.Tensor:
    """DINAR's blend weight of the tuned RGB: the known mask box-blurred (`size`, 0 = no blur), the
    texels outside `atlas` counted as known during the blur and as 0 after."""
    if size == 0:
        return known
    outside = None if atlas is None else 1.0 - atlas.to(known.dtype).expand_as(known)
    w = known if outside is None else (known + outside).clamp(0, 1)
    w = box_blur(w, size)
    return w if outside is None else (w - outside).clamp(0, 1)


@dataclass
class FinetuneResult:
    """texture: (1, C, T, T), only channels -5:-2 differ from the input; gradient_mask (1, 1, T, T);
    scale / shift (1, 3, 1, 1) of the unseen texels; losses: one dict of floats per step."""

    texture: torch.Tensor
    gradient_mask: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    losses: list[dict[str, float]] = field(default_factory=list)


def _check(texture, image, person_mask, uv, cosines):
    if texture.dim() != 4 or texture.shape[0] != 1 or texture.shape[1] < 5:
        raise ValueError(f"texture must be (1, C >= 5, T, T) with RGB at -5:-2, got {tuple(texture.shape)}")
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
    B, _, H, W = image.shape
    if person_mask.shape != (B, 1, H, W):
        raise ValueError(f"person_mask must be ({B}, 1, {H}, {W}), got {tuple(person_mask.shape)}")
    if uv.shape != (B, H, W, 2):
        raise ValueError(f"uv must be ({B}, {H}, {W}, 2), got {tuple(uv.shape)}")
    if cosines.shape != (1, 1, *texture.shape[-2:]):
        raise ValueError(f"cosines must be (1, 1, {texture.shape[-2]}, {texture.shape[-1]}), got {tuple(cosines.shape)}")


def _eroded_uv(uv: torch.Tensor, erode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The body mask of a UV render eroded `erode` x `erode` (0 = not), and the UV with the removed
    pixels marked background (-2, as `render_uv`)."""
    mask = (uv.abs() <= 1.0).all(dim=-1)[:, None].to(uv.dtype)
    if erode > 1:
        mask = -F.max_pool2d(-mask, erode, stride=1, padding=erode // 2)
    uv = torch.where(mask.permute(0, 2, 3, 1) > 0.5, uv, torch.full_like(uv, -2.0))
    return uv, mask


def finetune_rgb(texture: torch.Tensor, renderer: nn.Module, image: torch.Tensor, person_mask: torch.Tensor,
                 uv: torch.Tensor, cosines: torch.Tensor, *, discriminator: nn.Module | None = None,
                 perceptual: PerceptualDistance | None = None, steps: int = 64, rescale_steps: int = 0,
                 l2_weight: float = 1.0, perceptual_weight: float = 1.0, adversarial_weight: float = 0.01,
                 r1_weight: float = 0.1, r1_interval: int = 16, lr: float = 2e-3, disc_lr: float = 4e-4,
                 betas: tuple[float, float] = (0.0, 0.99), batch_size: int = 4, crop_size: int = 256,
                 cosine_threshold: float = 0.6, mask_sharpness: float = 20.0, mask_blur: int = 5,
                 uv_erode: int = 3, feather: int = 10, atlas_mask: torch.Tensor | None = None,
                 background: float = 1.0, known_mask: torch.Tensor | None = None,
                 generator: torch.Generator | None = None,
                 progress: Callable[[int, int], None] | None = None) -> FinetuneResult:
    """Fine-tune the RGB channels of one avatar's texture on its input view(s) (module docstring).

    Args:
        texture: (1, C, T, T) the avatar's neural texture (after inpainting and paste), RGB at
            -5:-2 and the known mask at -2.
        renderer: the frozen neural renderer, `renderer(texture, uv, uv_mask, background)` ->
            {"rgb", "mask"} (`zoo.modules.neural_renderer.NeuralRenderer`); run in eval mode, its
            weights untouched (its train / eval mode is restored after).
        image: (B, 3, H, W) the input view(s) in [-1, 1]; person_mask (B, 1, H, W); uv
            (B, H, W, 2) the fitted body's UV render of each view (`zoo.render.render_uv`).
        cosines: (1, 1, T, T) per-texel view cosines of the input view (`texel_view_cosines`).
        discriminator: the stage-1 discriminator (image size H); a copy is trained here, the
            argument is left untouched. Needed when adversarial_weight > 0.
        perceptual: frozen perceptual distance (LPIPS(vgg) in DINAR); needed when
            perceptual_weight > 0.
        steps: optimisation steps in all (64; 128 with the back visible, `finetune_schedule`).
        rescale_steps: first steps that tune the global scale / shift only (0; 64 with the back).
        l2_weight, perceptual_weight, adversarial_weight: 1.0, 1.0, 0.01 (DINAR's finetune config).
        r1_weight, r1_interval: lazy R1 on the discriminator, 0.1 every 16 of its steps.
        lr, disc_lr, betas: Adam for the texture (2e-3) and the discriminator (4e-4), (0, 0.99).
        batch_size: copies of the input views per step (4, DINAR's finetune batch).
        crop_size: perceptual crop side (256 of 512 px), capped by the image.
        cosine_threshold, mask_sharpness, mask_blur: `finetune_gradient_mask` (0.6, 20, 5).
        uv_erode: erosion of the body's UV render before rendering (3, DINAR; 0 = none).
        feather: box size of the output feathering (10, DINAR; 0 = hard known mask).
        atlas_mask: optional (1, 1, T, T) texels of the UV atlas (for the feathering).
        background: constant background of renders and the real image in [-1, 1] (1.0 white).
        known_mask: (1, 1, T, T) the texels the input view gave a colour (> 0.5); None: the
            texture's channel -2 (right for a single-view texture; after inpainting pass the
            view's mask, as the decoded mask channels cover the unseen texels too).
        generator: random source of the perceptual crops.
        progress: called as progress(step, steps) after each step.
    """
    _check(texture, image, person_mask, uv, cosines)
    if known_mask is not None and known_mask.shape != (1, 1, *texture.shape[-2:]):
        raise ValueError(f"known_mask must be (1, 1, {texture.shape[-2]}, {texture.shape[-1]}), got "
                         f"{tuple(known_mask.shape)}")
    if steps < 0 or not 0 <= rescale_steps <= steps or batch_size < 1 or r1_interval < 0:
        raise ValueError(f"need 0 <= rescale_steps <= steps, batch_size >= 1, r1_interval >= 0; got rescale_steps="
                         f"{rescale_steps}, steps={steps}, batch_size={batch_size}, r1_interval={r1_interval}")
    if min(l2_weight, perceptual_weight, adversarial_weight, r1_weight, lr, disc_lr) < 0:
        raise ValueError("loss weights and learning rates must be >= 0")
    if perceptual_weight > 0 and perceptual is None:
        raise ValueError(f"perceptual_weight={perceptual_weight} needs a perceptual network (LPIPS(vgg) in DINAR: "
                         "zoo.metrics.lpips.load_lpips_vgg); set perceptual_weight=0 to tune without it")
    if adversarial_weight > 0 and discriminator is None:
        raise ValueError(f"adversarial_weight={adversarial_weight} needs the stage-1 discriminator; set "
                         "adversarial_weight=0 to tune without it")
    with torch.inference_mode(False), torch.enable_grad():  # callable from predict / no_grad code
        # clones: tensors made under inference mode cannot take part in autograd
        texture, image, person_mask, uv, cosines = (t.detach().clone() for t in (texture, image, person_mask, uv, cosines))
        known_mask = None if known_mask is None else known_mask.detach().clone()
        return _finetune(texture, renderer, image, person_mask, uv, cosines, discriminator, perceptual, steps,
                         rescale_steps, l2_weight, perceptual_weight, adversarial_weight, r1_weight, r1_interval, lr,
                         disc_lr, betas, batch_size, crop_size, cosine_threshold, mask_sharpness, mask_blur, uv_erode,
                         feather, atlas_mask, background, known_mask, generator, progress)


def _finetune(texture, renderer, image, person_mask, uv, cosines, discriminator, perceptual, steps, rescale_steps,
              l2_weight, perceptual_weight, adversarial_weight, r1_weight, r1_interval, lr, disc_lr, betas, batch_size,
              crop_size, cosine_threshold, mask_sharpness, mask_blur, uv_erode, feather, atlas_mask, background,
              known_mask, generator, progress) -> FinetuneResult:
    dtype = texture.dtype
    rgb0 = texture[:, RGB]
    known = ((texture[:, KNOWN:KNOWN + 1] if known_mask is None else known_mask) > 0.5).to(dtype)
    grad_mask = finetune_gradient_mask(cosines, cosine_threshold, mask_sharpness, mask_blur).to(dtype)
    tuned = nn.Parameter(rgb0.clone())
    scale = nn.Parameter(torch.ones(1, 3, 1, 1, dtype=dtype, device=texture.device))
    shift = nn.Parameter(torch.zeros(1, 3, 1, 1, dtype=dtype, device=texture.device))
    opt_rgb = torch.optim.Adam([tuned], lr=lr, betas=tuple(betas))
    opt_affine = torch.optim.Adam([scale, shift], lr=lr, betas=tuple(betas))

    repeat = math.ceil(batch_size / image.shape[0])
    image, person_mask, uv = (t.repeat_interleave(repeat, 0)[:batch_size] for t in (image, person_mask, uv))
    uv, uv_mask = _eroded_uv(uv, uv_erode)
    real = composite(image, person_mask, background)
    loss_mask = dinar_loss_mask(uv_mask, person_mask, intersection=True)
    reconstruction = AvatarReconstructionLoss(perceptual if perceptual_weight > 0 else None, l2=l2_weight,
                                              perceptual_weight=perceptual_weight, dice=0.0, face=0.0,
                                              crop_size=crop_size, intersection=True)
    use_gan = adversarial_weight > 0
    disc = copy.deepcopy(discriminator).train() if use_gan else None
    opt_d = torch.optim.Adam(disc.parameters(), lr=disc_lr, betas=tuple(betas)) if use_gan else None
    r1 = LazyR1(r1_weight, r1_interval)
    was_training = renderer.training
    renderer.eval()

    def current(rescaling: bool) -> torch.Tensor:
        u = rgb0 * scale + shift
        rgb = u if rescaling else tuned * known + u * (1 - known)
        return torch.cat([texture[:, :RGB.start], rgb, texture[:, RGB.stop:]], dim=1)

    history = []
    try:
        for step in range(steps):
            rescaling = step < rescale_steps
            params = [scale, shift] if rescaling else [tuned]
            out = renderer(current(rescaling).expand(image.shape[0], -1, -1, -1), uv, uv_mask, background)
            terms = reconstruction(out["rgb"], out["mask"][:, :1], real, person_mask, uv_mask, None, generator)
            loss = terms.pop("total")
            terms.pop("dice")
            if use_gan:
                disc.requires_grad_(False)
                terms["g_adv"] = nonsaturating_generator_loss(disc(out["rgb"] * loss_mask))
                loss = loss + adversarial_weight * terms["g_adv"]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for p, g in zip(params, grads):
                p.grad = torch.zeros_like(p) if g is None else g
            if not rescaling:
                tuned.grad = tuned.grad * grad_mask
            (opt_affine if rescaling else opt_rgb).step()
            if use_gan:
                disc.requires_grad_(True)
                fake = (out["rgb"].detach() * loss_mask)
                real_in = (real * loss_mask).detach().requires_grad_(r1.due(step))
                logits_real = disc(real_in)
                terms["d_loss"] = logistic_discriminator_loss(logits_real, disc(fake))
                d_loss = terms["d_loss"]
                if r1.due(step):
                    terms["r1"] = r1(logits_real, real_in)
                    d_loss = d_loss + terms["r1"]
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            terms["loss"] = loss
            history.append({k: float(v.detach()) for k, v in terms.items()})
            if progress is not None:
                progress(step + 1, steps)
    finally:
        renderer.train(was_training)
    with torch.no_grad():
        u = rgb0 * scale + shift
        w = feather_weights(known, feather, atlas_mask)
        rgb = u + w * known * (tuned - u)
        final = torch.cat([texture[:, :RGB.start], rgb, texture[:, RGB.stop:]], dim=1)
    return FinetuneResult(final.detach(), grad_mask.detach(), scale.detach().clone(), shift.detach().clone(), history)


__all__ = ["FinetuneResult", "box_blur", "feather_weights", "finetune_gradient_mask", "finetune_rgb",
           "finetune_schedule"]
