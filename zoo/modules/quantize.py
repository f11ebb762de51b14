"""Vector quantiser of the VQGAN (van den Oord et al. 2017, "Neural Discrete Representation Learning").

Nearest-neighbour codebook lookup with straight-through gradients, the codebook and commitment
losses, batch code statistics (perplexity, usage) and dead-code restart. `zoo.modules.vqgan.VQGAN`
quantises its latents with it; a module saved before the split (class_path
`zoo.modules.vqgan.VectorQuantizer`) still loads (`zoo.pretrained.config.MOVED_CLASSES`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.pretrained import PretrainedMixin


@dataclass
class QuantizerOutput:
    """`z_q`: quantised latents with straight-through gradients to `z`; `indices`: (B, h, w) codes;
    `codebook_loss` = |sg(z) - e|^2, `commitment_loss` = |z - sg(e)|^2 (unweighted);
    `loss` = codebook_loss + beta * commitment_loss; `perplexity`, `usage`: batch code statistics."""

    z_q: torch.Tensor
    indices: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


class VectorQuantizer(PretrainedMixin, nn.Module):
    """Nearest-neighbour vector quantiser (van den Oord et al. 2017) with dead-code restart.

    Codes used in training forwards are counted in `usage_counts` (not saved: restart bookkeeping
    only); `restart_dead_codes` replaces rarely used codes by encoder outputs, the usual cure for
    codebook collapse with large codebooks such as DINAR's 8192 entries.

    Args:
        num_codes: codebook size (8192 in DINAR).
        code_dim: code vector length = channels of the quantised latent (6 in DINAR).
        beta: commitment weight (0.25, van den Oord et al. and DINAR).
    """

    def __init__(self, num_codes: int = 8192, code_dim: int = 6, beta: float = 0.25):
        super().__init__()
        if num_codes < 2 or code_dim < 1 or beta < 0:
            raise ValueError(f"need num_codes >= 2, code_dim >= 1, beta >= 0; got {num_codes}, {code_dim}, {beta}")
        self.num_codes, self.code_dim, self.beta = num_codes, code_dim, beta
        self.embedding = nn.Embedding(num_codes, code_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / num_codes, 1.0 / num_codes)
        self.register_buffer("usage_counts", torch.zeros(num_codes), persistent=False)

    def nearest_codes(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean) for each position of z (B, D, h, w)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.code_dim)
        codes = self.embedding.weight
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(1)[None]
        return dist.argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])

    def codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, D, h, w) for integer indices (B, h, w)."""
        if indices.ndim != 3 or indices.is_floating_point():
            raise ValueError(f"indices must be an integer (B, h, w) tensor, got {indices.dtype} {tuple(indices.shape)}")
        return self.embedding(indices).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        if z.ndim != 4 or z.shape[1] != self.code_dim:
            raise ValueError(f"z must be (B, {self.code_dim}, h, w), got {tuple(z.shape)}")
        indices = self.nearest_codes(z.detach())
        e = self.codes(indices)
        codebook_loss = F.mse_loss(e, z.detach())
        commitment_loss = F.mse_loss(z, e.detach())
        z_q = z + (e - z).detach()
        flat = indices.flatten()  # scatter_add, unlike bincount, also runs on the meta device
        ones = torch.ones_like(flat, dtype=torch.float)
        counts = torch.zeros(self.num_codes, device=z.device).scatter_add_(0, flat, ones)
        if self.training:
            self.usage_counts += counts
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum())
        usage = (counts > 0).float().mean()
        return QuantizerOutput(z_q, indices, codebook_loss, commitment_loss,
                               codebook_loss + self.beta * commitment_loss, perplexity, usage)

    @torch.no_grad()
    def restart_dead_codes(self, candidates: torch.Tensor, min_count: float = 1.0,
                           generator: torch.Generator | None = None) -> int:
        """Re-initialise codes used fewer than `min_count` times since the last restart.

        Args:
            candidates: encoder outputs to draw new codes from, (B, D, h, w) or (N, D).
            min_count: codes with `usage_counts < min_count` are dead.
            generator: makes the draw reproducible.
        Returns the number of restarted codes; usage counts start again from zero.
        """
        if candidates.ndim == 4:
            candidates = candidates.permute(0, 2, 3, 1).reshape(-1, candidates.shape[1])
        if candidates.ndim != 2 or candidates.shape[1] != self.code_dim or candidates.shape[0] == 0:
            raise ValueError(f"candidates must be (N, {self.code_dim}) or (B, {self.code_dim}, h, w), "
                             f"got {tuple(candidates.shape)}")
        dead = torch.nonzero(self.usage_counts < min_count).flatten()
        if len(dead):
            device = generator.device if generator is not None else candidates.device
            pick = torch.randint(candidates.shape[0], (len(dead),), generator=generator, device=device)
            self.embedding.weight[dead] = candidates[pick.to(candidates.device)].to(self.embedding.weight)
        self.usage_counts.zero_()
        return int(len(dead))
