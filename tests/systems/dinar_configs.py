"""DINAR stage-1 configs shrunk to test sizes, shared by the CLI tests of tests/systems."""
from __future__ import annotations

from pathlib import Path

# StyleGAN2 widths of the tiny encoder, generator and discriminator
SG2 = {"channel_multiplier": 1, "base_channels": 4, "max_channels": 8}


def shrink_dinar_config(config: dict, data_dir: Path | str) -> dict:
    """Set a `NeuralAvatarSystem` config (configs/dinar/avatar_*.yaml, parsed) to test sizes in place:
    32 px people, 16 px textures, 4-channel widths, no perceptual term, no export, the tiny synthetic
    preset in `data_dir` with batches of 2. Returns `config`; callers add their own options."""
    model = config["model"]["init_args"]
    net = model["network"]["init_args"]
    net["encoder"]["init_args"] = {"image_size": 32, "style_dim": 8, **SG2}
    net["generator"]["init_args"] = {"texture_size": 16, "out_channels": 4, "style_dim": 8, **SG2}
    net["renderer"]["init_args"] = {"texture_channels": 9, "base_channels": 4, "n_downsampling": 2, "n_blocks": 1,
                                    "uv_features": 2, "mask_features": 2, "features": 4}
    model["discriminator"]["init_args"] = {"image_size": 32, **SG2}
    model.update(perceptual="none", texture_size=16, crop_size=16, face_crop_size=8, r1_interval=2, export_path=None)
    config["data"]["init_args"].update(preset="tiny", data_dir=str(data_dir), progress=False, batch_size=2,
                                       overrides={"image_size": [32, 32], "texture_size": 16})
    return config
