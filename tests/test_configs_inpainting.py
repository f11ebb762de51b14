"""configs/inpainting: DINAR's sizes where the paper gives them, and each diffusion config matches
the VQGAN config that produces its first stage (built on the meta device: nothing is allocated)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from zoo.cli import ZooCLI
from zoo.metrics.lpips import MetricUnavailable
from zoo.modules.vqgan import count_parameters
from zoo.pretrained import REGISTRY

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "inpainting"
PAIRS = [("vqgan_dinar.yaml", "diffusion_dinar.yaml", "vqgan-dinar-avatar-rgb"),
         ("vqgan_small.yaml", "diffusion_small.yaml", "vqgan-synthetic-rgb-small")]


def build(name: str, tmp_path, monkeypatch, *extra: str) -> ZooCLI:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo_home"))
    with torch.device("meta"):
        return ZooCLI(args=["--config", str(CONFIGS / name), "--trainer.logger=false", *extra], run=False)


# implementation notes section 4 (DINAR's VQGAN and denoiser), the numbers the DINAR configs must build
NOTES_VQGAN = {"base_channels": 64, "channel_multipliers": [1, 2, 4], "num_res_blocks": 2, "attention_resolutions": [],
               "mid_attention": True, "latent_channels": 6, "num_codes": 8192, "code_dim": 6, "beta": 0.25,
               "norm_groups": 16, "activation": "leaky_relu", "output_heads": True}
NOTES_UNET = {"in_channels": 13, "out_channels": 6, "base_channels": 256, "channel_multipliers": [1, 2, 3, 4],
              "num_res_blocks": 2, "attention_resolutions": [32, 16, 8], "resolution": 64, "num_heads": 8,
              "dropout": 0.5, "resblock_updown": True, "norm_groups": 8, "preproc_input": True}
NO_LPIPS = "--model.init_args.perceptual_weight=0.0"


def test_dinar_vqgan_has_the_paper_sizes_except_rgb_channels(tmp_path, monkeypatch):
    vqgan = build("vqgan_dinar.yaml", tmp_path, monkeypatch, NO_LPIPS).model.vqgan
    args = vqgan.config["init_args"]
    assert {key: list(args[key]) if isinstance(args[key], tuple) else args[key] for key in NOTES_VQGAN} == NOTES_VQGAN
    assert (args["in_channels"], args["out_channels"]) == (5, 5)  # RGB + known + gap masks (DINAR: 21)
    assert vqgan.encode(torch.empty(1, 5, 256, 256, device="meta"), quantize=False).shape == (1, 6, 64, 64)


def test_dinar_vqgan_keeps_lpips_and_fails_at_start_without_its_weights(tmp_path, monkeypatch):
    """DINAR's perceptual loss (LPIPS(vgg), weight 1.0) is part of the paper config: without the
    VGG16 file in the torch hub cache the config stops before training, naming the file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises((MetricUnavailable, ValueError), match=r"vgg16-397923af\.pth"):  # the CLI may wrap it
        build("vqgan_dinar.yaml", tmp_path, monkeypatch)
    hp = build("vqgan_dinar.yaml", tmp_path, monkeypatch, NO_LPIPS).model.hparams
    assert (hp.perceptual_weights, hp.perceptual_net) == ("hub-cache", "vgg")


def test_the_small_vqgan_says_lpips_is_off(tmp_path, monkeypatch):
    path = CONFIGS / "vqgan_small.yaml"
    assert yaml.safe_load(path.read_text())["model"]["init_args"]["perceptual_weight"] == 0.0
    assert build("vqgan_small.yaml", tmp_path, monkeypatch).model.frozen("lpips") is None


def test_dinar_diffusion_has_the_paper_sizes(tmp_path, monkeypatch):
    cli = build("diffusion_dinar.yaml", tmp_path, monkeypatch)
    system, data = cli.model, cli.datamodule
    args = system.denoiser.config["init_args"]
    assert {key: list(args[key]) if isinstance(args[key], tuple) else args[key] for key in NOTES_UNET} == NOTES_UNET
    assert 350e6 < count_parameters(system.denoiser) < 430e6  # "about 390 M parameters"
    hp = system.hparams
    assert (hp.lr, hp.num_train_timesteps, hp.beta_schedule, hp.beta_start, hp.beta_end, hp.prediction_type) == (
        1e-6, 1000, "scaled_linear", 3e-4, 2e-2, "epsilon")
    assert data.batch_size == 128 and data.settings.texture_size == 256
    assert cli.trainer.max_steps == 50000
    assert (hp.mask_channels, hp.ddim_timesteps, hp.final_latent_paste, hp.erode_known_mask, hp.known_paste) == (
        True, "leading", False, True, "soft")  # DINAR's test phase pastes with an eroded, blurred mask
    assert data.fill_gaps


@pytest.mark.parametrize("vqgan_config, diffusion_config, name", PAIRS)
def test_diffusion_config_uses_the_exported_vqgan(vqgan_config, diffusion_config, name, tmp_path, monkeypatch):
    vq_cli = build(vqgan_config, tmp_path, monkeypatch, NO_LPIPS)
    export = Path(vq_cli.model.hparams.export_path).expanduser()
    assert export == tmp_path / "zoo_home" / name  # resolved under $ZOO_HOME, never the working directory
    diffusion = build(diffusion_config, tmp_path, monkeypatch).model
    assert diffusion.hparams.vqgan == name
    vqgan = vq_cli.model.vqgan
    assert diffusion.denoiser.in_channels == 2 * vqgan.code_dim + 1
    assert diffusion.denoiser.out_channels == vqgan.code_dim
    side = vq_cli.datamodule.settings.texture_size // vqgan.downsampling
    assert diffusion.denoiser.config["init_args"]["resolution"] == side
    assert side % diffusion.denoiser.downsampling == 0


def test_small_vqgan_is_the_registry_entry(tmp_path, monkeypatch):
    entry = REGISTRY["vqgan-synthetic-rgb-small"]
    assert "configs/inpainting/vqgan_small.yaml" in entry.how_to_get
    vqgan = build("vqgan_small.yaml", tmp_path, monkeypatch).model.vqgan
    assert f"{type(vqgan).__module__}.{type(vqgan).__name__}" == entry.class_path
    assert vqgan.encode(torch.empty(2, 5, 64, 64, device="meta"), quantize=False).shape == (2, 6, 16, 16)


def test_dinar_texture_diffusion_prediction_type_is_named(tmp_path, monkeypatch):
    """DINAR's denoiser predicts epsilon: the paper-sized 21-channel config, the one-image config and
    the defaults keep it; v-prediction is the CPU config's named departure (its header gives the reason)."""
    import inspect

    from zoo.diffusion import GaussianDiffusion
    from zoo.systems.latent_inpainting import LatentInpaintingSystem

    dinar = CONFIGS.parent / "dinar"
    for name, expected in (("diffusion_dinar.yaml", "epsilon"), ("diffusion_cpu.yaml", "v_prediction")):
        monkeypatch.chdir(tmp_path)
        with torch.device("meta"):
            cli = ZooCLI(args=["--config", str(dinar / name), "--trainer.logger=false"], run=False)
        assert cli.model.hparams.prediction_type == cli.model.diffusion.prediction_type == expected, name
    assert "v-prediction instead of DINAR's epsilon" in (dinar / "diffusion_cpu.yaml").read_text()
    one_image = yaml.safe_load((dinar / "one_image_avatar.yaml").read_text())["model"]["init_args"]["pipeline"]
    assert one_image["prediction_type"] == "epsilon"
    for cls in (GaussianDiffusion, LatentInpaintingSystem):
        assert inspect.signature(cls).parameters["prediction_type"].default == "epsilon"
