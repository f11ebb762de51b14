"""Exponential moving average of weights: a helper module and a Lightning callback around it.

`ExponentialMovingAverage` holds only the shadow weights and an update counter, as buffers, so
it is checkpointed and moved between devices with whatever module owns it (a system registers
it as a sub-module). `EMACallback` gives the same to any LightningModule from YAML.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytorch_lightning as pl
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


class EMACallback(pl.Callback):
    """Keep an EMA of a LightningModule (or one of its attributes) and validate / test with it.

    The EMA state is stored in the checkpoint's callback state.

    Args:
        decay: EMA decay.
        warmup: LDM-style decay warm-up (see `ExponentialMovingAverage`).
        attribute: name of the sub-module to average (e.g. "denoiser"); None averages the whole module.
        evaluate_with_ema: swap the averages in for validation and test epochs.
    """

    def __init__(self, decay: float = 0.9999, warmup: bool = True, attribute: str | None = None,
                 evaluate_with_ema: bool = True):
        super().__init__()
        self.decay, self.warmup, self.attribute, self.evaluate_with_ema = decay, warmup, attribute, evaluate_with_ema
        self.ema: ExponentialMovingAverage | None = None
        self._pending_state: dict | None = None
        self._swap = None

    def _target(self, pl_module: pl.LightningModule) -> nn.Module:
        if self.attribute is None:
            return pl_module
        target = getattr(pl_module, self.attribute, None)
        if not isinstance(target, nn.Module):
            raise AttributeError(f"{type(pl_module).__name__} has no sub-module {self.attribute!r} to average")
        return target

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.ema is None:
            self.ema = ExponentialMovingAverage(self._target(pl_module), self.decay, self.warmup)
        if self._pending_state is not None:
            self.ema.load_state_dict(self._pending_state)
            self._pending_state = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ema.to(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ema.update(self._target(pl_module))

    def _swap_in(self, pl_module: pl.LightningModule) -> None:
        if self.evaluate_with_ema and self.ema is not None and self._swap is None:
            self.ema.to(pl_module.device)
            self._swap = self.ema.swap_into(self._target(pl_module))
            self._swap.__enter__()

    def _swap_out(self) -> None:
        if self._swap is not None:
            self._swap.__exit__(None, None, None)
            self._swap = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._swap_out()

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._swap_out()

    def state_dict(self) -> dict:
        return {} if self.ema is None else {k: v.detach().cpu() for k, v in self.ema.state_dict().items()}

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        if self.ema is None:
            self._pending_state = state_dict
        else:
            self.ema.load_state_dict(state_dict)
