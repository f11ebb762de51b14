"""Tiny runs shared by the robustness tests: the quick-start system on the "tiny" synthetic people."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from zoo.datamodules import SyntheticPeopleDataModule
from zoo.modules.texture_unet import TextureUNet
from zoo.systems.texture_completion import TextureCompletionSystem


def tiny_system(base_channels: int = 4) -> TextureCompletionSystem:
    return TextureCompletionSystem(TextureUNet(base_channels=base_channels, depth=2), use_position_code=False,
                                   log_images_every_n_steps=0)


def tiny_data(data_dir, batch_size: int = 4) -> SyntheticPeopleDataModule:
    return SyntheticPeopleDataModule("tiny", data_dir=str(data_dir), batch_size=batch_size, progress=False)


def tiny_trainer(folder: Path, callbacks=(), max_epochs: int = 2, **kwargs) -> pl.Trainer:
    checkpoint = ModelCheckpoint(dirpath=str(folder / "checkpoints"), save_last=True, every_n_epochs=1)
    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, callbacks=[*callbacks, checkpoint],
                      default_root_dir=str(folder), **kwargs)


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
