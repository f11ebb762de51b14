"""Exact resume for every system: stopped after any step and resumed from that step's checkpoint,
a run ends with the weights, optimiser and EMA states of the uninterrupted run (CPU, 1e-6).

Each system trains on the "tiny" synthetic people (3 batches an epoch with batch size 4): the stops
are the end of the first epoch and the middle of the second (the data position and partner draws
restored mid-epoch), and for the quick start also the middle of the first epoch.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from tests.robustness.helpers import tiny_data, tiny_system
from tests.robustness.resume_check import resume_difference
from zoo.datamodules import SyntheticPeopleDataModule

MAX_STEPS = 7


def _textures(data_dir, **kwargs) -> SyntheticPeopleDataModule:
    return SyntheticPeopleDataModule("tiny", data_dir=str(data_dir), batch_size=4, progress=False, **kwargs)


def _reid():
    from zoo.modules.reid import SmallReID
    from zoo.systems.reid import ReIDSystem

    network = SmallReID(num_classes=6, widths=(4, 4, 8, 8), embedding_dim=8, input_size=(32, 16))
    return ReIDSystem(network=network, triplet_weight=1.0)


def _vqgan_module():
    from zoo.modules.vqgan import VQGAN

    return VQGAN(in_channels=5, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, resolution=32,
                 latent_channels=4, num_codes=16, code_dim=3, norm_groups=4)


def _vqgan():
    from zoo.modules.discriminator import PatchDiscriminator
    from zoo.systems.vqgan import VQGANSystem

    disc = PatchDiscriminator(in_channels=5, base_channels=8, n_layers=2, norm="group", norm_groups=4)
    return VQGANSystem(_vqgan_module(), disc, lr=1e-3, disc_start=0, dead_code_restart_every=2, perceptual_weight=0.0)


def _inpainting():
    from zoo.modules.diffusion_unet import DiffusionUNet
    from zoo.systems.latent_inpainting import LatentInpaintingSystem

    torch.manual_seed(3)
    vqgan = _vqgan_module()
    unet = DiffusionUNet(in_channels=7, out_channels=3, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1,
                         attention_resolutions=[8], resolution=16, num_heads=2, dropout=0.1, norm_groups=4)
    return LatentInpaintingSystem(unet, vqgan, num_train_timesteps=50, lr=1e-3, val_steps=3, ema_decay=0.9)


_REID: list[str] = []


def _refinetex():
    from zoo.losses.refinetex import RefineTexLoss
    from zoo.modules.refiners import DeformableRefiner
    from zoo.modules.refinetex import RefineTexNet
    from zoo.modules.reid import SmallReID
    from zoo.modules.texformer import TexformerBackbone
    from zoo.modules.uncertainty import UncertaintyHead
    from zoo.systems.refinetex import RefineTexSystem

    if not _REID or not Path(_REID[0]).is_dir():  # the frozen ReID of the losses, saved once per process
        torch.manual_seed(0)
        folder = Path(tempfile.mkdtemp()) / "tiny-reid"
        SmallReID(num_classes=6, widths=(4, 4, 8, 8), embedding_dim=8, input_size=(32, 16)).save_pretrained(folder)
        _REID[:] = [str(folder)]
    torch.manual_seed(0)
    network = RefineTexNet(TexformerBackbone(feat_dim=8, num_heads=2, uv_size=(16, 16)),
                           refiner=DeformableRefiner(hidden_channels=8, feature_channels=8))
    loss = RefineTexLoss(texture_l1_weight=1.0, deep_supervision_steps=10)
    return RefineTexSystem(network, uncertainty=UncertaintyHead(width=8), loss=loss, reid=_REID[0])


AVATAR_DATA = {"image_size": [32, 32], "texture_size": 16, "shading": 0.8, "clothing_offset": 0.02}  # as the stage-1 test


def _avatars(data_dir):
    from zoo.datamodules.avatars import SyntheticAvatarDataModule

    return SyntheticAvatarDataModule("tiny", overrides=AVATAR_DATA, data_dir=str(data_dir), batch_size=4, erode=3,
                                     progress=False)


def _neural_avatar():
    from zoo.modules.dinar import DinarAvatarNet
    from zoo.modules.neural_renderer import NeuralRenderer
    from zoo.modules.stylegan2 import StyleEncoder, StyleGAN2Discriminator, TextureGenerator
    from zoo.systems.neural_avatar import NeuralAvatarSystem

    sg2 = {"channel_multiplier": 1, "base_channels": 4, "max_channels": 8}
    network = DinarAvatarNet(
        NeuralRenderer(texture_channels=9, base_channels=4, n_downsampling=2, n_blocks=1, uv_features=2,
                       mask_features=2, features=4),
        encoder=StyleEncoder(image_size=32, style_dim=8, **sg2),
        generator=TextureGenerator(texture_size=16, out_channels=4, style_dim=8, **sg2))
    return NeuralAvatarSystem(network, StyleGAN2Discriminator(image_size=32, **sg2), perceptual="none", texture_size=16,
                              crop_size=16, face_crop_size=8, erode=3, r1_interval=2, image_log_every_n_steps=0)


SYSTEMS = {  # name: (system, data, global steps per batch)
    "quickstart": (tiny_system, lambda d: tiny_data(d), 1),
    "reid": (_reid, lambda d: _textures(d, pairs="none"), 1),
    "vqgan": (_vqgan, lambda d: _textures(d, pairs="none"), 2),  # generator and discriminator steps
    "latent_inpainting": (_inpainting, lambda d: _textures(d, pairs="none"), 1),
    "refinetex": (_refinetex, lambda d: _textures(d), 1),
    "neural_avatar": (_neural_avatar, _avatars, 2),  # generator and discriminator steps (R1 every 2nd D step)
}


CASES = [("quickstart", 1), ("quickstart", 3), ("quickstart", 5)] + [
    (name, stop) for name in sorted(SYSTEMS) if name != "quickstart" for stop in (3, 5)]  # epoch end, mid epoch 2


@pytest.mark.parametrize("name,stop_at", CASES)
def test_resume_is_exact(name, stop_at, tiny_data_dir, tmp_path):
    make_system, make_data, steps_per_batch = SYSTEMS[name]
    diff, where = resume_difference(make_system, lambda: make_data(tiny_data_dir), tmp_path,
                                    MAX_STEPS * steps_per_batch, stop_at)
    assert diff <= 1e-6, f"{name} resumed after step {stop_at} differs by {diff:.3g} at {where}"
