"""Input checks and masked reductions shared by the losses."""
from __future__ import annotations

import torch
from torch import nn

from zoo.utils.frozen import check_frozen, freeze

REDUCTIONS = ("mean", "sum")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def check_4d(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be (B, C, H, W), got {shape}")


def expand_mask(mask: torch.Tensor, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """A (B|1, 1|C, H, W), (B, H, W) or (H, W) mask as a float tensor broadcast to `like`'s shape."""
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[:, None]
    if mask.dim() != 4 or mask.shape[-2:] != like.shape[-2:] or mask.shape[0] not in (1, like.shape[0]) \
            or mask.shape[1] not in (1, like.shape[1]):
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not broadcast to {tuple(like.shape)}")
    return mask.to(like.dtype).expand_as(like)


def reduce(values: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Sum, or mean over the (masked) elements; an empty mask gives 0 (still differentiable)."""
    if mask is None:
        return values.sum() if reduction == "sum" else values.mean()
    total = (values * mask).sum()
    if reduction == "sum":
        return total
    return total / mask.sum().clamp(min=1.0)


class FrozenReIDLoss(nn.Module):
    """Base of the losses that hold a ReID network: freezes it and keeps it in eval mode.

    The network is registered as a submodule (so it follows `.to(device)`), its parameters get
    `requires_grad=False`, and `train()` on the loss (or on a LightningModule holding it) never puts
    it back in train mode. Gradients still flow through it to the rendered image.
    """

    def __init__(self, reid: nn.Module):
        super().__init__()
        self.reid = freeze(reid)
        check_frozen(self.reid, type(self).__name__)

    def train(self, mode: bool = True):
        super().train(mode)
        self.reid.eval()
        return self
