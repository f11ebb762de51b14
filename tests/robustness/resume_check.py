"""Exact-resume check shared by the per-system tests.

Run A trains uninterrupted for `max_steps`, saving a checkpoint after every step (what a run
killed at any step leaves behind is one of those files). Run B is a fresh process-state run that
resumes from A's checkpoint of step `stop_at` and trains to `max_steps`. The final weights,
optimiser states and callback states (EMA) of A and B must agree to `atol`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from zoo.callbacks import CheckpointGuard
from zoo.callbacks.rng import RNGState


def _trainer(folder: Path, max_steps: int, extra: Callable[[], list], save_every_step: bool) -> pl.Trainer:
    callbacks = [*extra(), RNGState(), CheckpointGuard()]
    if save_every_step:
        callbacks.append(ModelCheckpoint(dirpath=str(folder), filename="{step}", every_n_train_steps=1,
                                         save_top_k=-1, save_last=True))
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                      enable_checkpointing=save_every_step, callbacks=callbacks, deterministic=True)


def flat_state(trainer: pl.Trainer) -> dict[str, torch.Tensor]:
    """Every tensor of the run's checkpoint: weights, optimiser moments, callback (EMA) states."""
    checkpoint = trainer._checkpoint_connector.dump_checkpoint()
    out: dict[str, torch.Tensor] = {}

    def walk(prefix, value):
        if torch.is_tensor(value):
            out[prefix] = value.detach().float().cpu()
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}/{i}", v)

    for key in ("state_dict", "optimizer_states", "callbacks"):
        walk(key, checkpoint.get(key, {}))
    return out


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:5]
    worst, where = 0.0, ""
    for key in a:
        diff = float((a[key] - b[key]).abs().max()) if a[key].numel() else 0.0
        if diff > worst:
            worst, where = diff, key
    return worst, where


def checkpoint_after_batch(folder: Path, batches: int) -> Path:
    """The checkpoint saved after `batches` training batches (manual optimisation with several
    optimisers counts several global steps per batch, so files are ordered, not named, by batch)."""
    files = sorted(folder.glob("step=*.ckpt"), key=lambda p: int(p.stem.split("=")[1]))
    return files[batches - 1]


def resume_difference(make_system: Callable[[], pl.LightningModule], make_data: Callable[[], pl.LightningDataModule],
                      folder: Path, max_steps: int, stop_at: int, callbacks: Callable[[], list] = list,
                      seed: int = 0) -> tuple[float, str]:
    """(largest absolute difference, where) between run A and run B of the module doc; `stop_at`
    counts training batches, `max_steps` Lightning's global steps."""
    pl.seed_everything(seed)
    a = _trainer(folder / "a", max_steps, callbacks, save_every_step=True)
    a.fit(make_system(), datamodule=make_data())
    final_a = flat_state(a)
    pl.seed_everything(seed + 1)  # B must not depend on the process state it starts from
    torch.rand(7)
    b = _trainer(folder / "b", max_steps, callbacks, save_every_step=True)
    b.fit(make_system(), datamodule=make_data(), ckpt_path=checkpoint_after_batch(folder / "a", stop_at))
    return max_difference(final_a, flat_state(b))
