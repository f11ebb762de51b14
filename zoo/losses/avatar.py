"""DINAR's reconstruction losses on a rendered avatar (paper section 3.2, eq. 3 and section 4):
L2 x 2.2, perceptual x 1.0 on a random crop centred on the body, Dice x 1.0 on the mask, and
0.1 x (L2 over the face pixels + perceptual on a crop around the face) ("we calculate L2 and LPIPS
for the entire image and additionally with a weight of 0.1 for the area with a face").

Loss mask (DINAR's `get_lossmask`): pixels where the body mesh is drawn but the real person mask
says background are ignored (an imperfect body fit is not the renderer's fault); everything else
counts. Images are in [-1, 1].

The perceptual distance is a frozen network passed in (`PerceptualDistance`): LPIPS(VGG) as in the
paper when its weights are on disk, or a stand-in the caller names (e.g. the zoo's ReID features).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.losses._common import check_4d, check_same_shape
from zoo.losses.reconstruction import dice_loss
from zoo.losses.reid import reid_perceptual_loss
from zoo.utils.frozen import freeze

PERCEPTUAL_KINDS = ("lpips", "reid")


def dinar_loss_mask(uv_mask: torch.Tensor, person_mask: torch.Tensor, intersection: bool = False) -> torch.Tensor:
    """(B, 1, H, W): 1 - clamp(body - person, 0, 1), or body * person when `intersection`."""
    body, person = uv_mask[:, :1].float(), person_mask[:, :1].float()
    if intersection:
        return body * person
    return 1.0 - (body - person).clamp(0.0, 1.0)


def avatar_item_scores(render: torch.Tensor, mask_pred: torch.Tensor, target: torch.Tensor, person_mask: torch.Tensor,
                       uv_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-item (B,) validation scores of a render (B, 3, H, W) in [-1, 1] against its target: "psnr" (dB, images
    mapped to [0, 1]), "l2" (squared error under `dinar_loss_mask`, mean over elements) and "dice" (1 - soft Dice
    of the first channel of `mask_pred` against `person_mask`, smoothing 1)."""
    mse = F.mse_loss((render + 1) / 2, (target + 1) / 2, reduction="none").flatten(1).mean(1)
    loss_mask = dinar_loss_mask(uv_mask, person_mask)
    rendered, real = mask_pred[:, :1].flatten(1), person_mask.flatten(1)
    return {"psnr": 10 * torch.log10(1.0 / mse.clamp(min=1e-10)),
            "l2": ((render - target) * loss_mask).pow(2).flatten(1).mean(1),
            "dice": 1 - (2 * (rendered * real).sum(1) + 1) / (rendered.sum(1) + real.sum(1) + 1)}


def masked_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE of the masked images, averaged over every element (DINAR's `L2Loss`)."""
    check_same_shape(pred, target, "pred", "target")
    m = mask.to(pred.dtype)
    return ((pred - target) * m).pow(2).mean()


def crop_corners(centres: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """(B, 2) integer top-left (row, col) of `size` crops centred at `centres` (B, 2) (row, col),
    shifted to stay inside the image."""
    half = size // 2
    rows = (centres[:, 0].round().long() - half).clamp(0, height - size)
    cols = (centres[:, 1].round().long() - half).clamp(0, width - size)
    return torch.stack([rows, cols], dim=1)


def random_mask_centres(mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 2) (row, col) of one uniformly drawn pixel where mask > 0.5, per sample (the image
    centre when the mask is empty). On a body mask this is the projection of a random visible
    surface point (DINAR draws a random projected mesh vertex)."""
    b, _, h, w = mask.shape
    flat = (mask[:, 0] > 0.5).flatten(1).float()
    empty = flat.sum(1) == 0
    flat[empty] = 1.0
    index = torch.multinomial(flat, 1, generator=generator)[:, 0]
    return torch.stack([index // w, index % w], dim=1).float()


def mask_centroids(mask: torch.Tensor) -> torch.Tensor:
    """(B, 2) (row, col) centroid of mask > 0.5 (the image centre when empty)."""
    b, _, h, w = mask.shape
    m = (mask[:, 0] > 0.5).float()
    rows = torch.arange(h, dtype=m.dtype, device=m.device)[None, :, None]
    cols = torch.arange(w, dtype=m.dtype, device=m.device)[None, None, :]
    total = m.sum((1, 2))
    centre = torch.stack([(m * rows).sum((1, 2)), (m * cols).sum((1, 2))], 1) / total.clamp(min=1)[:, None]
    fallback = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=m.dtype, device=m.device)
    return torch.where((total > 0)[:, None], centre, fallback)


def crop(images: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, size, size) crops of images (B, C, H, W) at per-sample top-left `corners` (B, 2)."""
    return torch.stack([img[:, int(r): int(r) + size, int(c): int(c) + size] for img, (r, c) in zip(images, corners)])


class PerceptualDistance(nn.Module):
    """A frozen perceptual network as one distance: mean over the batch of d(pred, target).

    Args:
        network: LPIPS module (called as `network(a, b)`, (B, 1, 1, 1)) or a ReID network with
            `features(image)` (distance = the zoo's ReID perceptual loss).
        kind: "lpips" or "reid", which of the two `network` is.
    """

    def __init__(self, network: nn.Module, kind: str):
        super().__init__()
        if kind not in PERCEPTUAL_KINDS:
            raise ValueError(f"kind must be one of {PERCEPTUAL_KINDS}, got {kind!r}")
        self.network, self.kind = freeze(network), kind

    def train(self, mode: bool = True):
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "lpips":
            return self.network(pred, target).mean()
        return reid_perceptual_loss(self.network, pred, target)


class AvatarReconstructionLoss(nn.Module):
    """Weighted sum of DINAR's reconstruction terms for a batch of renders (see module docstring).

    Args:
        perceptual: the frozen perceptual distance, or None to leave the term out (weight ignored).
        l2: weight of the L2 term (DINAR: 2.2).
        perceptual_weight: weight of the perceptual term (1.0).
        dice: weight of the Dice mask term (1.0).
        face: weight of the face-region L2 + perceptual terms (0.1).
        crop_size: side of the random perceptual crop (256 at 512 px in DINAR); capped by the image.
        face_crop_size: side of the perceptual crop around the face centroid (our choice; the paper
            does not give one); capped by the image.
        intersection: loss mask body * person instead of 1 - (body - person) (DINAR's finetuning).
    """

    def __init__(self, perceptual: PerceptualDistance | None = None, l2: float = 2.2, perceptual_weight: float = 1.0,
                 dice: float = 1.0, face: float = 0.1, crop_size: int = 256, face_crop_size: int = 128,
                 intersection: bool = False):
        super().__init__()
        if min(l2, perceptual_weight, dice, face) < 0 or crop_size < 1 or face_crop_size < 1:
            raise ValueError(f"weights must be >= 0 and crop sizes >= 1, got l2={l2}, perceptual={perceptual_weight}, "
                             f"dice={dice}, face={face}, crop_size={crop_size}, face_crop_size={face_crop_size}")
        self.perceptual = perceptual
        self.weights = {"l2": l2, "perceptual": perceptual_weight, "dice": dice, "face": face}
        self.crop_size, self.face_crop_size, self.intersection = crop_size, face_crop_size, intersection

    def _perceptual(self, pred, target, centres, size):
        h, w = pred.shape[-2:]
        size = min(size, h, w)
        corners = crop_corners(centres, size, h, w)
        return self.perceptual(crop(pred, corners, size), crop(target, corners, size))

    def forward(self, render: torch.Tensor, mask_pred: torch.Tensor, target: torch.Tensor, person_mask: torch.Tensor,
                uv_mask: torch.Tensor, face_mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Terms (unweighted) and "total" (weighted).

        Args:
            render: (B, 3, H, W) composited render in [-1, 1]; target the real (B, 3, H, W) image.
            mask_pred: (B, 1, H, W) predicted person mask; person_mask the real one.
            uv_mask: (B, 1, H, W) rasterised body; face_mask optional (B, 1, H, W) face pixels.
            generator: random source of the crop centres.
        """
        for name, t in (("render", render), ("target", target), ("mask_pred", mask_pred), ("person_mask", person_mask),
                        ("uv_mask", uv_mask)):
            check_4d(t, name)
        check_same_shape(render, target, "render", "target")
        loss_mask = dinar_loss_mask(uv_mask, person_mask, self.intersection)
        pred, real = render * loss_mask, target * loss_mask
        terms = {"l2": masked_l2(render, target, loss_mask), "dice": dice_loss(mask_pred[:, :1], person_mask[:, :1])}
        if self.perceptual is not None:
            body = ((uv_mask[:, :1] + person_mask[:, :1]) > 0.5).float()
            terms["perceptual"] = self._perceptual(pred, real, random_mask_centres(body, generator), self.crop_size)
        total = sum(self.weights[k] * v for k, v in terms.items())
        if face_mask is not None and self.weights["face"] > 0:
            face = face_mask[:, :1].to(render.dtype)
            present = (face.flatten(1).sum(1) > 0).to(render.dtype)
            face_l2 = (((render - target) * face * loss_mask).pow(2).flatten(1).sum(1)
                       / (3 * face.flatten(1).sum(1)).clamp(min=1.0) * present).sum() / present.sum().clamp(min=1.0)
            terms["face_l2"] = face_l2
            face_total = face_l2
            if self.perceptual is not None and bool(present.any()):
                keep = present > 0
                terms["face_perceptual"] = self._perceptual(pred[keep], real[keep], mask_centroids(face[keep]),
                                                            self.face_crop_size)
                face_total = face_total + terms["face_perceptual"]
            total = total + self.weights["face"] * face_total
        terms["total"] = total
        return terms
