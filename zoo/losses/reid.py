"""Losses read through a frozen ReID network: ReID perceptual (RefineTex eq. 2) and part style (eq. 3).

The ReID network is any module with `features(image) -> [layer1, ..., layer4]` taking [-1, 1]
images (`zoo.modules.reid`). It must be frozen (eval mode, no trainable parameters): the functions
raise otherwise, the module wrappers freeze it on construction. The real image is a fixed target:
its features are computed without gradient; the render receives the gradient.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.losses._common import FrozenReIDLoss, check_same_shape
from zoo.utils.frozen import check_frozen, check_image


def reid_perceptual_loss(reid: nn.Module, render: torch.Tensor, image: torch.Tensor,
                         layer_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Sum over layers 1-4 of w_j * MSE between the L2-normalised flattened ReID features.

    Each feature map (B, C, H, W) is flattened per sample to (B, C*H*W) and divided by its L2 norm;
    the MSE averages over B * C*H*W, and the layers are summed (as Texformer's ReID loss).

    Args:
        reid: frozen ReID network (`features` interface).
        render: (B, 3, H, W) rendered image in [-1, 1] (composited over a background).
        image: (B, 3, H, W) real image in [-1, 1], the target.
        layer_weights: one weight per layer (all 1 in the reference).
    """
    check_frozen(reid, "reid_perceptual_loss")
    check_image(render, "render")
    check_same_shape(render, image, "render", "image")
    fr = reid.features(render)
    with torch.no_grad():
        ft = reid.features(image)
    if len(layer_weights) != len(fr):
        raise ValueError(f"layer_weights has {len(layer_weights)} entries for {len(fr)} feature layers")
    loss = render.new_zeros(())
    for w, a, b in zip(layer_weights, fr, ft):
        loss = loss + w * F.mse_loss(F.normalize(a.flatten(1), dim=1), F.normalize(b.flatten(1), dim=1))
    return loss


def _labels_at(labels: torch.Tensor, size: tuple[int, int], name: str, batch: int) -> torch.Tensor:
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dim() != 3 or labels.shape[0] != batch:
        raise ValueError(f"{name} must be (B, H, W) or (B, 1, H, W) with B={batch}, got {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise ValueError(f"{name} must hold integer part labels, got dtype {labels.dtype}")
    if tuple(labels.shape[-2:]) != size:
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return labels


def part_style_loss_from_features(render_features: torch.Tensor, render_parts: torch.Tensor,
                                  image_features: torch.Tensor, image_parts: torch.Tensor,
                                  num_parts: int = 7, min_coverage: float = 0.004) -> torch.Tensor:
    """Per-part Gram-matrix style loss on (un-normalised) feature maps, summed over parts.

    For part p in 1..num_parts (0 is background) and sample b: the labels are resized to the
    feature resolution (nearest); the part's area A = number of its feature pixels; the part counts
    only if A >= min_coverage * h * w in both the real image and the render; the Gram matrix is
    G = (F * M_p)(F * M_p)^T / A, (C, C). The loss of part p is the mean over B, C, C of
    (valid_b * (G_render - G_image))^2 (samples where the part does not count contribute 0 but stay
    in the mean, as in Texformer); the parts are summed.

    Args:
        render_features, image_features: (B, C, h, w) layer-1 features of render and real image.
        render_parts: (B, H, W) int labels of the render (from the mesh's part texture).
        image_parts: (B, H, W) int labels of the real image (from a 2D human parser).
        num_parts: number of body parts, labels 1..num_parts (7 in Texformer).
        min_coverage: minimum fraction of the image a part must cover in both (0.4% in Texformer).
    """
    if render_features.dim() != 4:
        raise ValueError(f"render_features must be (B, C, h, w), got {tuple(render_features.shape)}")
    check_same_shape(render_features, image_features, "render_features", "image_features")
    batch, channels, h, w = render_features.shape
    mr = _labels_at(render_parts, (h, w), "render_parts", batch)
    mi = _labels_at(image_parts, (h, w), "image_parts", batch)
    fr = render_features.flatten(2)
    fi = image_features.flatten(2)
    loss = render_features.new_zeros(())
    for part in range(1, num_parts + 1):
        pr = (mr == part).flatten(1).to(fr.dtype)  # (B, h*w)
        pi = (mi == part).flatten(1).to(fi.dtype)
        area_r, area_i = pr.sum(1), pi.sum(1)
        valid = (area_r >= min_coverage * h * w) & (area_i >= min_coverage * h * w)
        if not bool(valid.any()):
            continue
        gr = fr * pr[:, None]
        gi = fi * pi[:, None]
        gram_r = torch.bmm(gr, gr.transpose(1, 2)) / area_r.clamp(min=1.0)[:, None, None]
        gram_i = torch.bmm(gi, gi.transpose(1, 2)) / area_i.clamp(min=1.0)[:, None, None]
        diff = (gram_r - gram_i) * valid.to(fr.dtype)[:, None, None]
        loss = loss + diff.square().mean()
    return loss


def part_style_loss(reid: nn.Module, render: torch.Tensor, render_parts: torch.Tensor, image: torch.Tensor,
                    image_parts: torch.Tensor, num_parts: int = 7, min_coverage: float = 0.004) -> torch.Tensor:
    """`part_style_loss_from_features` on the ReID layer-1 features of render and real image.

    The masks select regions of the layer-1 feature map (the network sees the whole image, as in
    Texformer), not of the input image. Images: (B, 3, H, W) in [-1, 1]; parts: (B, H, W) labels.
    """
    check_frozen(reid, "part_style_loss")
    check_image(render, "render")
    check_same_shape(render, image, "render", "image")
    fr = reid.features(render)[0]
    with torch.no_grad():
        fi = reid.features(image)[0]
    return part_style_loss_from_features(fr, render_parts, fi, image_parts, num_parts, min_coverage)


class ReIDPerceptualLoss(FrozenReIDLoss):
    """`weight * reid_perceptual_loss`; weight 5000 is RefineTex's lambda_1 (eq. 5).

    Args:
        reid: ReID network (frozen here: eval mode, requires_grad False, kept in eval by `train()`).
        weight: loss weight.
        layer_weights: per-layer weights of layers 1-4.
    """

    def __init__(self, reid: nn.Module, weight: float = 5000.0,
                 layer_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)):
        super().__init__(reid)
        self.weight, self.layer_weights = float(weight), tuple(float(w) for w in layer_weights)

    def forward(self, render: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.weight * reid_perceptual_loss(self.reid, render, image, self.layer_weights)


class PartStyleLoss(FrozenReIDLoss):
    """`weight * part_style_loss`; weight 0.4 is RefineTex's lambda_2 (eq. 5).

    Args:
        reid: ReID network (frozen here).
        weight: loss weight.
        num_parts: body parts, labels 1..num_parts (7).
        min_coverage: minimum part coverage in both images (0.004).
    """

    def __init__(self, reid: nn.Module, weight: float = 0.4, num_parts: int = 7, min_coverage: float = 0.004):
        super().__init__(reid)
        if not isinstance(num_parts, int) or num_parts < 1:
            raise ValueError(f"num_parts must be a positive int, got {num_parts!r}")
        if not 0.0 <= min_coverage < 1.0:
            raise ValueError(f"min_coverage must be in [0, 1), got {min_coverage!r}")
        self.weight, self.num_parts, self.min_coverage = float(weight), num_parts, float(min_coverage)

    def forward(self, render: torch.Tensor, render_parts: torch.Tensor, image: torch.Tensor,
                image_parts: torch.Tensor) -> torch.Tensor:
        return self.weight * part_style_loss(self.reid, render, render_parts, image, image_parts,
                                             self.num_parts, self.min_coverage)
