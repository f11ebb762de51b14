"""Exponential moving average of weights: the zoo's one EMA path.

`ExponentialMovingAverage` holds only the shadow weights and an update counter, as buffers, so
it is checkpointed and moved between devices with whatever module owns it: a system that wants
an EMA registers one as a sub-module, updates it after each optimiser step and evaluates inside
`swap_into` (see `zoo.systems.latent_inpainting`). Plain torch, no Lightning.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class ExponentialMovingAverage(nn.Module):
    """shadow <- decay * shadow + (1 - decay) * weight, for every floating-point parameter.

    Args:
        model: the module whose parameters are averaged (read once to size the shadow; the same
            module, or one with the same parameter names, is passed to `update` / `swap_into`).
        decay: EMA decay (0.9999 in latent diffusion).
        warmup: use min(decay, (1 + n) / (10 + n)) after n updates, so early weights are not
            averaged with the random initialisation for thousands of steps (latent diffusion).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay, self.warmup = decay, warmup
        self._names: dict[str, str] = {}
        for name, param in model.named_parameters():
            if not param.is_floating_point():
                continue
            key = name.replace(".", "__")
            if key in self._names.values():
                raise ValueError(f"parameter names {name!r} and another map to the same EMA key {key!r}")
            self._names[name] = key
            self.register_buffer(key, param.detach().clone())
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        """Decay the next `update` uses."""
        if not self.warmup:
            return self.decay
        n = int(self.num_updates) + 1
        return min(self.decay, (1 + n) / (10 + n))

    def _pairs(self, model: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        params = dict(model.named_parameters())
        missing = set(self._names) - set(params)
        if missing:
            raise KeyError(f"model lacks averaged parameters {sorted(missing)[:5]}")
        for name, key in self._names.items():
            yield getattr(self, key), params[name]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards the current weights of `model`."""
        weight = 1.0 - self.current_decay()
        for shadow, param in self._pairs(model):
            shadow.lerp_(param.detach().to(shadow), weight)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite `model`'s weights with the averages (permanently)."""
        for shadow, param in self._pairs(model):
            param.copy_(shadow)

    @contextmanager
    def swap_into(self, model: nn.Module) -> Iterator[nn.Module]:
        """Evaluate `model` with averaged weights inside the block; its own weights come back after."""
        backup = [param.detach().clone() for _, param in self._pairs(model)]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for (_, param), saved in zip(self._pairs(model), backup):
                    param.copy_(saved)
