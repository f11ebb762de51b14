"""RefineTex's training objective (paper eq. 5 and 8) composed from the zoo's losses.

    L = L_base(SV) + nv * L_base(NV) + 0.1 L_cyc + 1e-3 L_url [+ texture_l1 * |T - T_gt|]
    L_base = 5000 L_reid + 0.4 L_style (per view) ; 0.01 L_face (once per texture, see below)

- L_reid / L_style read a frozen ReID network passed to `forward` (required when their weight is > 0).
- L_face compares the face/hand UV region of the texture with a reference texture: the batch's
  `reference_texture` when present, else another identity's ground-truth texture (the batch's
  `texture` rolled by one sample; with a batch of one that is the sample's own texture). The
  paper uses random synthetic human textures. It depends on the texture only, so it enters once
  per texture instead of once per view (which would double lambda_3). Its face/hand mask comes
  from the body's UV atlas (`set_uv_masks`).
- L_cyc: render the texture into the novel view, run the whole network on that render with the
  novel view's parts; the L2 norm of the difference to the first texture over the atlas texels
  (eq. 7 as written), batch mean, both sides keep gradients ("mean": per-texel mean of squares).
- L_url: UncertaintyHead(input image) -> sigma (paper section 3.3: the confidence network sees the
  image alone, never the render, so sigma cannot track the current error), Laplacian NLL of the
  SV render summed over the person's pixels (eq. 6 sums; one term, on the input image), batch mean.
- Backgrounds: the renders that L_reid, L_style and L_cyc see are composited over the batch's
  `background` (Texformer's protocol: a random frame from the data module, shared by both views of
  a pair), never over the real image, whose pixels outside the body silhouette would leak the real
  person into the render.
- Deep supervision (with a refiner): the backbone's own fused texture gets the base losses (and
  the texture L1) too, weighted by `deep_supervision_weight * s(step)`, s = 1 -> 0 over
  `deep_supervision_steps` optimiser steps: "linear", "cosine", "step" (1 then 0) or "constant".

A term is switched off by a weight of 0 in the config, never by a missing input: a term whose
weight is > 0 and whose input (ReID network, face mask, reference or ground-truth texture) is
missing raises an error naming it.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zoo.losses.reconstruction import cycle_consistency_loss, uncertainty_reconstruction_loss
from zoo.losses.reid import part_style_loss_from_features
from zoo.losses.structure import face_structure_loss
from zoo.render import composite, render_over_image, sample_texture

SCHEDULES = ("linear", "cosine", "step", "constant")
VIEW_KEYS = ("image", "parts", "uv", "mask")
WEIGHTS = ("reid", "style", "face", "novel_view", "cycle", "url", "texture_l1", "deep_supervision")


def deep_supervision_scale(step: int, schedule: str, steps: int) -> float:
    """Factor of the deep-supervision weight at optimiser step `step` (1 at step 0, 0 from `steps` on)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"deep_supervision_schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return 1.0
    if steps <= 0 or step >= steps:
        return 0.0
    t = step / steps
    return {"linear": 1.0 - t, "cosine": 0.5 * (1.0 + math.cos(math.pi * t)), "step": 1.0}[schedule]


def resize(x: torch.Tensor, size, mode: str = "bilinear") -> torch.Tensor:
    """x (B, C, h, w) resized to `size` (antialiased bilinear, or nearest); unchanged if already that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    kw = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
    return F.interpolate(x, size=tuple(size), mode=mode, **kw)


def check_batch(batch: dict, novel: bool) -> None:
    keys = list(VIEW_KEYS) + ([f"novel_{k}" for k in VIEW_KEYS] if novel else [])
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(f"RefineTex batch lacks {missing}; it has {sorted(batch)}")


def batch_view(batch: dict, prefix: str = "") -> dict:
    """image, parts, uv, mask, render_parts (mesh part labels; default the image parts) and
    background (the view's own `<prefix>background`, else the pair's `background`, else None)."""
    parts = batch[f"{prefix}parts"]
    return {"image": batch[f"{prefix}image"], "parts": parts, "uv": batch[f"{prefix}uv"],
            "mask": batch[f"{prefix}mask"], "render_parts": batch.get(f"{prefix}render_parts", parts),
            "background": batch.get(f"{prefix}background", batch.get("background"))}


def render_over_background(texture: torch.Tensor, view: dict, who: str) -> torch.Tensor:
    """The texture rendered into `view` over the protocol's background (never the real image)."""
    if view["background"] is None:
        raise ValueError(f"RefineTex {who} composites the render over the batch's 'background' (Texformer's "
                         "protocol: a random frame from the data module), but the batch has none: give the "
                         "data module backgrounds (Market-1501 / DeepFashion: backgrounds_dir)")
    return composite(sample_texture(texture, view["uv"], view["mask"]), view["mask"], view["background"])


class RefineTexLoss(nn.Module):
    """The weighted sum above; `forward` returns (total, unweighted terms, renders).

    Args:
        reid_weight, style_weight, face_weight: lambda_1..3 of L_base (5000, 0.4, 0.01; eq. 5).
        novel_view_weight: weight of L_base(NV) (1, eq. 8; 0 = the single-view training of Table 1).
        cycle_weight, url_weight: lambda_4 = 0.1, lambda_5 = 1e-3 (eq. 8).
        texture_l1_weight: L1 to the ground-truth texture on atlas texels (synthetic data only; 0
            in the paper configs).
        deep_supervision_weight: initial weight of the backbone's own texture losses (1, our choice).
        deep_supervision_schedule: "linear" (default), "cosine", "step" or "constant".
        deep_supervision_steps: optimiser steps until it reaches 0 (2250, our choice: the first
            quarter of Market-1501 training, 200 epochs of ~45 steps with one pair per identity).
        num_parts, style_min_coverage: part-style loss settings (7 parts, 0.4%).
        face_average: "image" (Texformer) or "mask" averaging of the face loss.
        url_min_sigma: lower clamp of sigma in L_url.
        url_reduction: "sum" (eq. 6: summed over the person's pixels and channels, then averaged
            over the batch; lambda_5 = 1e-3 is scaled for it) or "mean" over those elements.
        cycle_reduction: "norm" (eq. 7 read literally: the L2 norm of each texture difference over
            the atlas texels, averaged over the batch) or "mean" (per-texel mean of squares).
    """

    def __init__(self, reid_weight: float = 5000.0, style_weight: float = 0.4, face_weight: float = 0.01,
                 novel_view_weight: float = 1.0, cycle_weight: float = 0.1, url_weight: float = 1e-3,
                 texture_l1_weight: float = 0.0, deep_supervision_weight: float = 1.0,
                 deep_supervision_schedule: str = "linear", deep_supervision_steps: int = 2250,
                 num_parts: int = 7, style_min_coverage: float = 0.004, face_average: str = "image",
                 url_min_sigma: float = 1e-3, url_reduction: str = "sum", cycle_reduction: str = "norm") -> None:
        super().__init__()
        values = (reid_weight, style_weight, face_weight, novel_view_weight, cycle_weight, url_weight,
                  texture_l1_weight, deep_supervision_weight)
        bad = {f"{k}_weight": v for k, v in zip(WEIGHTS, values)
               if isinstance(v, bool) or not (isinstance(v, (int, float)) and v >= 0)}
        if bad:
            raise ValueError(f"loss weights must be floats >= 0, got {bad}")
        if deep_supervision_schedule not in SCHEDULES:
            raise ValueError(f"deep_supervision_schedule must be one of {SCHEDULES}, got {deep_supervision_schedule!r}")
        if url_reduction not in ("sum", "mean"):
            raise ValueError(f"url_reduction must be 'sum' or 'mean', got {url_reduction!r}")
        if cycle_reduction not in ("norm", "mean"):
            raise ValueError(f"cycle_reduction must be 'norm' or 'mean', got {cycle_reduction!r}")
        if face_average not in ("image", "mask"):
            raise ValueError(f"face_average must be 'image' or 'mask', got {face_average!r}")
        self.weights = {k: float(v) for k, v in zip(WEIGHTS, values)}
        self.schedule, self.schedule_steps = deep_supervision_schedule, int(deep_supervision_steps)
        self.num_parts, self.style_min_coverage, self.face_average = num_parts, style_min_coverage, face_average
        self.url_min_sigma, self.url_reduction, self.cycle_reduction = url_min_sigma, url_reduction, cycle_reduction
        # From the body's UV atlas (set_uv_masks): face/hand mask (Huv, Wuv), atlas mask (1, 1, Huv, Wuv).
        self.register_buffer("face_mask", None, persistent=False)
        self.register_buffer("atlas_mask", None, persistent=False)

    @property
    def uses_reid(self) -> bool:
        return self.weights["reid"] > 0 or self.weights["style"] > 0

    @property
    def uses_novel_view(self) -> bool:
        return self.weights["novel_view"] > 0 or self.weights["cycle"] > 0

    def set_uv_masks(self, uv_maps: dict | None, size) -> None:
        """Install the face/hand and atlas masks of a body's `uv_maps()` at texture size (Huv, Wuv) (on
        the CPU: move the loss with `.to(device)` afterwards, as the system does). None (data without
        uv_maps) keeps the masks installed before; the face loss then needs one installed already."""
        if uv_maps is None:
            if self.weights["face"] > 0 and self.face_mask is None:
                raise ValueError("the face loss (face_weight > 0) needs the data's uv_maps()['face_hands_mask']; "
                                 "this data gives no uv_maps(): set face_weight: 0.0 to train without it")
            return
        if self.weights["face"] > 0 and "face_hands_mask" not in uv_maps:
            raise ValueError(f"face_weight={self.weights['face']} needs uv_maps()['face_hands_mask'] from the data; "
                             f"it gives {sorted(uv_maps)} (set face_weight: 0.0 to train without the face loss)")
        if "face_hands_mask" in uv_maps:
            self.face_mask = resize(uv_maps["face_hands_mask"].float()[None, None], size, "nearest")[0, 0]
        if "texture_mask" in uv_maps:
            mask = uv_maps["texture_mask"].float()
            self.atlas_mask = resize(mask.reshape(1, 1, *mask.shape[-2:]), size, "nearest")

    def _view_terms(self, reid: nn.Module, render: torch.Tensor, view: dict, target_features) -> dict[str, torch.Tensor]:
        """Unweighted ReID perceptual and part-style losses of one render (features computed once)."""
        terms = {}
        if not self.uses_reid:
            return terms
        fr = reid.features(render)
        if self.weights["reid"] > 0:
            terms["reid"] = sum(F.mse_loss(F.normalize(a.flatten(1), dim=1), F.normalize(b.flatten(1), dim=1))
                                for a, b in zip(fr, target_features))
        if self.weights["style"] > 0:
            terms["style"] = part_style_loss_from_features(fr[0], view["render_parts"], target_features[0], view["parts"],
                                                           self.num_parts, self.style_min_coverage)
        return terms

    def _texture_terms(self, texture: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """View-independent terms of one texture: face structure and L1 to the ground truth."""
        terms = {}
        if self.weights["face"] > 0:
            reference = batch.get("reference_texture")
            if reference is None and "texture" in batch:
                reference = batch["texture"].roll(1, dims=0)
            if reference is None or self.face_mask is None:
                raise ValueError("face_weight > 0 needs a reference texture (batch 'reference_texture' or 'texture') "
                                 "and the body's face mask (set_uv_masks); set face_weight: 0.0 to train without it")
            reference = resize(reference.to(texture), texture.shape[-2:])
            terms["face"] = face_structure_loss(texture, reference.detach(), self.face_mask, average=self.face_average)
        if self.weights["texture_l1"] > 0:
            if "texture" not in batch:
                raise ValueError("texture_l1_weight > 0 needs the ground-truth 'texture' in the batch")
            target = batch["texture"]
            pred = resize(texture, target.shape[-2:])
            weight = batch.get("texture_mask", torch.ones_like(target[:, :1])).expand_as(target)
            terms["texture_l1"] = ((pred - target).abs() * weight).sum() / weight.sum().clamp(min=1.0)
        return terms

    def forward(self, network: Callable, batch: dict, step: int = 0, reid: nn.Module | None = None,
                uncertainty: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
        """Total loss, its unweighted terms (prefixed sv/, nv/, deep/) and the detached renders.

        network(image, parts) -> RefineTexOutput (called again on the NV render for L_cyc);
        step: optimiser step (deep-supervision schedule); reid: frozen ReID network;
        uncertainty: the UncertaintyHead of L_url."""
        w = self.weights
        if self.uses_reid and reid is None:
            raise ValueError("reid_weight / style_weight > 0 need a ReID network; set both to 0.0 to train without")
        if w["url"] > 0 and uncertainty is None:
            raise ValueError("url_weight > 0 needs an uncertainty head; set url_weight: 0.0 to train without L_url")
        check_batch(batch, novel=self.uses_novel_view)
        views = {"sv": batch_view(batch)}
        if self.uses_novel_view:
            views["nv"] = batch_view(batch, "novel_")
        out = network(views["sv"]["image"], views["sv"]["parts"])
        targets = {}
        if self.uses_reid:
            with torch.no_grad():
                targets = {name: reid.features(v["image"]) for name, v in views.items()}
        view_weight = {"sv": 1.0, "nv": w["novel_view"]}
        textures = [("", out.texture, 1.0)]
        scale = deep_supervision_scale(step, self.schedule, self.schedule_steps)
        if out.backbone_texture is not out.texture and w["deep_supervision"] * scale > 0:
            textures.append(("deep/", out.backbone_texture, w["deep_supervision"] * scale))
        total, logs, renders = out.texture.new_zeros(()), {"deep_supervision_scale": out.texture.new_tensor(scale)}, {}
        needs_background = self.uses_reid or w["cycle"] > 0
        for prefix, texture, tw in textures:
            for name, view in views.items():
                if needs_background:
                    render = render_over_background(texture, view, "ReID / style / cycle losses")
                else:  # only L_url reads it, on the person's pixels
                    render = render_over_image(texture, view["uv"], view["mask"], view["image"])
                renders[prefix + name] = render
                if view_weight[name] == 0:
                    continue
                for term, value in self._view_terms(reid, render, view, targets.get(name)).items():
                    logs[f"{prefix}{name}/{term}"] = value
                    total = total + tw * view_weight[name] * w[term] * value
            for term, value in self._texture_terms(texture, batch).items():
                logs[prefix + term] = value
                total = total + tw * w[term] * value
        if w["url"] > 0:
            sv = views["sv"]
            sigma = uncertainty(sv["image"])
            logs["url"] = uncertainty_reconstruction_loss(sv["image"], renders["sv"], sigma, sv["mask"],
                                                          self.url_min_sigma, self.url_reduction)
            if self.url_reduction == "sum":
                logs["url"] = logs["url"] / sv["image"].shape[0]
            logs["sigma_mean"] = sigma.detach().mean()
            total = total + w["url"] * logs["url"]
        if w["cycle"] > 0:
            again = network(renders["nv"], views["nv"]["parts"]).texture
            if self.cycle_reduction == "mean":
                logs["cycle"] = cycle_consistency_loss(out.texture, again, self.atlas_mask)
            else:
                per_sample = [cycle_consistency_loss(out.texture[i:i + 1], again[i:i + 1], self.atlas_mask, "sum")
                              for i in range(again.shape[0])]
                logs["cycle"] = torch.stack(per_sample).clamp(min=1e-12).sqrt().mean()
            total = total + w["cycle"] * logs["cycle"]
        renders = {k: v.detach() for k, v in renders.items()} | {"texture": out.texture.detach()}
        return total, logs, renders
