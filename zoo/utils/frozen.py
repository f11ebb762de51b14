"""Frozen feature networks (ReID, LPIPS) used as measuring devices by losses and metrics, and the
image-tensor check they share. Bottom layer: torch only."""
from __future__ import annotations

import torch
from torch import nn


def check_image(image: torch.Tensor, name: str = "image") -> None:
    """Raise unless `image` is a floating (B, 3, H, W) tensor."""
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{name} must be (B, 3, H, W), got {shape}")
    if not image.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor in [-1, 1], got dtype {image.dtype}")


def freeze(network: nn.Module) -> nn.Module:
    """Put a feature network in eval mode with no trainable parameters (in place) and return it."""
    network.eval()
    network.requires_grad_(False)
    return network


def check_frozen(network: nn.Module, who: str) -> None:
    """Raise unless `network` has `features(image)`, is in eval mode and has no trainable parameter.

    A ReID network used by a loss or metric must be a fixed measuring device: in train mode its
    BatchNorm statistics would drift with the rendered images and dropout would make the loss noisy.
    """
    if not hasattr(network, "features"):
        raise TypeError(f"{who}: the ReID network must have a features(image) method, got {type(network).__name__}")
    if network.training:
        raise ValueError(f"{who}: the ReID network is in train mode; call zoo.utils.frozen.freeze(network) first")
    trainable = [n for n, p in network.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(
            f"{who}: the ReID network has trainable parameters ({trainable[0]}, ... {len(trainable)} in all); "
            "call zoo.utils.frozen.freeze(network) first"
        )
