"""Tiny randomly initialised DINAR networks (stage 1 + stage 2) for the pipeline tests."""
from __future__ import annotations

from pathlib import Path

import torch

from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.dinar import DinarAvatarNet
from zoo.modules.neural_renderer import NeuralRenderer
from zoo.modules.stylegan2 import StyleEncoder, StyleGAN2Discriminator, TextureGenerator
from zoo.modules.vqgan import VQGAN

SG2 = dict(base_channels=4, channel_multiplier=1, max_channels=8)
GENERATED = 4
CHANNELS = GENERATED + 5


def tiny_networks(image_size: int = 32, texture_size: int = 16, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    avatar = DinarAvatarNet(
        renderer=NeuralRenderer(texture_channels=CHANNELS, uv_features=2, mask_features=2, base_channels=4,
                                n_downsampling=2, n_blocks=1, features=4),
        encoder=StyleEncoder(image_size=image_size, style_dim=8, **SG2),
        generator=TextureGenerator(texture_size=texture_size, out_channels=GENERATED, style_dim=8, **SG2))
    vqgan = VQGAN(in_channels=CHANNELS, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, norm_groups=4,
                  resolution=texture_size, latent_channels=3, num_codes=16, code_dim=3)
    denoiser = DiffusionUNet(in_channels=7, out_channels=3, base_channels=8, channel_multipliers=(1,), num_res_blocks=1,
                             attention_resolutions=(), resolution=texture_size // 2, num_heads=1, dropout=0.0,
                             norm_groups=4)
    discriminator = StyleGAN2Discriminator(image_size=image_size, **SG2)
    return {"avatar": avatar, "vqgan": vqgan, "denoiser": denoiser, "discriminator": discriminator}


def save_tiny_networks(folder: Path, **kwargs) -> dict[str, str]:
    """Each network saved with `save_pretrained` under folder/<name>; returns the folders."""
    return {name: str(net.save_pretrained(folder / name)) for name, net in tiny_networks(**kwargs).items()}
