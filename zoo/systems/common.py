"""Helpers shared by the zoo's LightningModules: frozen networks kept out of checkpoints, image
logging, step-decayed learning rates and seeded evaluation noise. (Metric tables: `zoo.metrics.tables`;
mesh export: `zoo.render.export`.)"""
from __future__ import annotations

from typing import Iterable, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import nn

from zoo.utils.images import grid, log_picture, to_uint8
from zoo.utils.runs import run_dir


class FrozenNetworks:
    """Mixin for LightningModules that hold frozen feature networks (ReID, LPIPS, a first-stage
    VQGAN) outside their state dict: they are loaded from the pretrained cache, never trained, so
    checkpoints stay free of them. They live in a plain dict (`nn.Module` registers only modules,
    parameters and tensors, so a dict attribute stays out of `state_dict()` and `parameters()`),
    are kept in eval mode with no gradient, and `frozen(name)` moves one to the system's device
    when it is fetched (so `.to(device)` of the system needs no override)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frozen_networks: dict[str, nn.Module] = {}

    def attach_frozen(self, name: str, module: nn.Module) -> nn.Module:
        module.eval().requires_grad_(False)
        self.frozen_networks[name] = module
        return module

    def frozen(self, name: str) -> nn.Module | None:
        module = self.frozen_networks.get(name)
        if module is None:
            return None
        tensor = next(iter(module.parameters()), next(iter(module.buffers()), None))
        if tensor is not None and tensor.device != self.device:
            module.to(self.device)
        return module


def image_grid(columns: Sequence[torch.Tensor], max_items: int = 4) -> torch.Tensor:
    """(H, W, 3) uint8 picture: one row per sample (at most `max_items`), one column per tensor of
    `columns`, each (B, 3 or 1, h, w) in [-1, 1]; sizes may differ between columns."""
    n = min(max_items, min(c.shape[0] for c in columns))
    return grid([[to_uint8(c[i]) for c in columns] for i in range(n)])


def log_image_grid(module: pl.LightningModule, key: str, columns: Sequence[torch.Tensor],
                   caption: str | None = None) -> None:
    """Send `image_grid(columns)` to the trainer's loggers (see `zoo.utils.images.log_picture`)."""
    trainer = module._trainer
    if trainer is None or not trainer.is_global_zero or not trainer.loggers:
        return
    takes_images = any(hasattr(logger, "log_image") for logger in trainer.loggers)
    fallback = None if takes_images else run_dir(trainer)  # loggers without images: PNG files
    log_picture(trainer.loggers, key, image_grid(columns), module.global_step, fallback, caption=caption)


def logger_writes_this_step(module: pl.LightningModule) -> bool:
    """Whether Lightning hands this training step's logged values to the loggers.

    Lightning writes after the optimiser step s when (s + 1) % trainer.log_every_n_steps == 0 (and on
    every step of a fast_dev_run); in between, values given to `self.log` are only kept until the
    next step replaces them. Every `self.log` call costs about a millisecond of bookkeeping, so a
    system with many loss terms logs its breakdown on these steps only. True without a trainer.
    """
    trainer = module._trainer  # the attribute, not the property, which raises without a trainer
    if trainer is None or trainer.fast_dev_run:
        return True
    every = trainer.log_every_n_steps
    return every > 0 and ((module.global_step + 1) % every == 0 or trainer.should_stop)


def require_prediction_writer(module: pl.LightningModule, what: str, writer: str) -> None:
    """Fail at predict start when no callback writes the predictions (`predict_step` returns `what`)."""
    if not any(isinstance(c, BasePredictionWriter) for c in module.trainer.callbacks):
        raise ValueError(f"{type(module).__name__}.predict returns {what} only; add a writer to the trainer, e.g. "
                         f"trainer.callbacks: [{{class_path: {writer}}}] in the config")


def check_step_decay(milestones: Sequence[int], factor: float) -> None:
    """Validate a step decay of the learning rate (`step_decay`), naming the bad value."""
    if any(int(m) != m or m <= 0 for m in milestones) or not 0 < factor <= 1:
        raise ValueError(f"lr_decay_milestones must be positive integers and lr_decay_factor in (0, 1], got "
                         f"{list(milestones)!r} and {factor!r}")


def step_decay(global_step: int, milestones: Sequence[int], factor: float) -> float:
    """The learning-rate multiplier at `global_step`: `factor` to the number of `milestones` passed
    (reached or exceeded); a function of the step alone, so a resumed run follows the same schedule."""
    return factor ** sum(global_step >= m for m in milestones)


def set_learning_rates(optimizers: Iterable, rates: Iterable[float]) -> None:
    """Set every parameter group of each optimiser (plain, or wrapped in a `LightningOptimizer`) to its rate."""
    for optimizer, lr in zip(optimizers, rates):
        for group in getattr(optimizer, "optimizer", optimizer).param_groups:  # LightningOptimizer wraps it
            group["lr"] = lr


def item_noise(batch: dict, image: torch.Tensor, batch_idx: int, id_keys: Sequence[str]) -> torch.Tensor:
    """(B, 1, H, W) N(0, 1) noise, one draw per item of `image` (B, C, H, W) from a generator seeded by the
    item's ids (the tensors of `batch` under `id_keys`), so the values are the same in every run and on any
    number of processes; without ids, the item's position in this process's share (`batch_idx`) seeds it."""
    ids = [batch[k] for k in id_keys if torch.is_tensor(batch.get(k))]
    noise = []
    for i in range(image.shape[0]):
        seed = batch_idx * image.shape[0] + i if not ids else sum(int(v[i]) * 1_000_003**k for k, v in enumerate(ids))
        g = torch.Generator().manual_seed(seed % 2**63)
        noise.append(torch.randn(1, *image.shape[-2:], generator=g))
    return torch.stack(noise).to(image)
