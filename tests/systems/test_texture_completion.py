"""The quick-start baseline system: losses, gradients to every parameter, predict."""
from __future__ import annotations

import pytest
import torch

from zoo.datamodules import SyntheticPeopleDataModule
from zoo.modules.texture_unet import TextureUNet
from zoo.render import dilate_texture
from zoo.systems.texture_completion import TextureCompletionSystem, render_in_view


@pytest.fixture(scope="module")
def batch(tiny_data_dir):
    dm = SyntheticPeopleDataModule("tiny", data_dir=str(tiny_data_dir), batch_size=3, progress=False)
    dm.setup()
    return next(iter(dm.train_dataloader()))


def test_training_step_reaches_every_parameter(batch):
    system = TextureCompletionSystem(TextureUNet(base_channels=8, depth=2, paste_known=False), use_position_code=False)
    texture = system(batch["partial"], batch["known_mask"])
    losses = system._losses(batch, texture)
    assert set(losses) == {"texture_l1", "same_view_l1", "novel_view_l1", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    for name, p in system.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_render_of_the_ground_truth_reproduces_the_real_image(batch):
    texture = dilate_texture(batch["texture"], batch["texture_mask"])  # as the generator renders it
    render = render_in_view(texture, batch["novel_uv"], batch["novel_mask"], batch["novel_image"])
    assert (render - batch["novel_image"]).abs().mean() < 0.02


def test_predict_step_and_argument_checks(batch):
    system = TextureCompletionSystem(TextureUNet(base_channels=8, depth=2), use_position_code=False)
    out = system.predict_step(batch, 0)
    assert out["texture"].shape == batch["texture"].shape
    with pytest.raises(ValueError, match="extra_channels == 3"):
        TextureCompletionSystem(TextureUNet(base_channels=8, depth=2), use_position_code=True)
    with pytest.raises(ValueError, match="lr must be positive"):
        TextureCompletionSystem(TextureUNet(base_channels=8, depth=2), lr=0.0, use_position_code=False)
