"""StyleGAN2's adversarial losses as DINAR trains with them: non-saturating logistic GAN loss and
the lazy R1 penalty on real images (Mescheder et al. 2018; Karras et al. 2020, section B).

Logits are the discriminator's raw outputs (any shape (B, ...)); no weight network is held.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nonsaturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """softplus(-D(G(z))) averaged: the generator wants its renders judged real."""
    return F.softplus(-fake_logits).mean()


def logistic_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """softplus(-D(real)) + softplus(D(fake)), each averaged (DINAR's `d_logistic_loss`)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E_batch ||d sum(D(x)) / d x||^2 over each real image x (unweighted R1).

    `real_images` must require grad and `real_logits` must be computed from it; the graph is kept
    (create_graph) so the penalty trains the discriminator.
    """
    if not real_images.requires_grad:
        raise ValueError("real_images must require grad (call .requires_grad_() before the discriminator)")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


class LazyR1(nn.Module):
    """R1 applied every `interval` discriminator steps, scaled up by `interval` to keep its strength:
    `weight / 2 * interval * r1_penalty` (DINAR's `R1Regularization`: weight 0.1, every 16).

    Args:
        weight: gamma of R1 (DINAR: 0.1).
        interval: steps between two penalties (DINAR / StyleGAN2: 16); 0 disables R1.
    """

    def __init__(self, weight: float = 0.1, interval: int = 16):
        super().__init__()
        if weight < 0 or interval < 0:
            raise ValueError(f"weight={weight} and interval={interval} must be >= 0")
        self.weight, self.interval = float(weight), int(interval)

    def due(self, step: int) -> bool:
        """True on the discriminator steps that take the penalty (0, interval, 2 interval, ...)."""
        return self.interval > 0 and self.weight > 0 and step % self.interval == 0

    def forward(self, real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
        return self.weight / 2 * self.interval * r1_penalty(real_logits, real_images)
