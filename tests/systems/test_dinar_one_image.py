"""configs/dinar/one_image_avatar.yaml end to end through the command line, on tiny randomly
initialised networks saved with save_pretrained and a tiny DINAR input folder (tiny SMPL-X)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.datamodules.dinar_fixtures import write_dinar_folder, write_tiny_smplx
from tests.inference.tiny_dinar import CHANNELS, GENERATED, save_tiny_networks
from zoo.cli import main
from zoo.inference.dinar_pipeline import STAGES

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "dinar" / "one_image_avatar.yaml"
S, T = 32, 16


def tiny_config(root: Path) -> str:
    model = write_tiny_smplx(root / "smplx_model")
    write_dinar_folder(root / "data", model, frames=1)
    nets = save_tiny_networks(root / "nets", image_size=S, texture_size=T)
    config = yaml.safe_load(CONFIG.read_text())
    args = config["model"]["init_args"]
    args.update(network=nets["avatar"], discriminator=nets["discriminator"], vqgan=nets["vqgan"],
                denoiser=nets["denoiser"], progress=False)
    args["pipeline"].update(sampling_steps=3, finetune_steps=2, rgb_erode=3)
    args["pipeline"]["finetune"].update(perceptual_weight=0.0, crop_size=16)  # LPIPS(vgg) is not on disk in tests
    config["data"]["init_args"].update(data_dir=str(root / "data"), body=model, image_size=S, texture_size=T, erode=3)
    writer = config["trainer"]["callbacks"][0]["init_args"]
    writer.update(output_dir=str(root / "out"), body={"class_path": "zoo.body.smpl_body.SMPLXBody", "init_args": model},
                  render_size=S, turntable_frames=3, walk_frames=2, rgb_channels=[GENERATED, GENERATED + 1, GENERATED + 2],
                  progress=False)
    config["trainer"].update(accelerator="cpu", enable_progress_bar=False, default_root_dir=str(root))
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_one_image_config_runs_end_to_end(tmp_path, caplog):
    config = tiny_config(tmp_path)
    with caplog.at_level(logging.INFO):
        main(["predict", "--config", config])
    people = sorted((tmp_path / "out").glob("frame_*"))
    assert len(people) == 1
    person = people[0]
    texture = load_file(person / "neural_texture.safetensors")["texture"]
    assert texture.shape == (CHANNELS, T, T) and torch.isfinite(texture).all()
    for name in ("rgb_channels.png", "turntable.gif", "walk.gif", "turntable/frame_002.png", "walk/frame_001.png"):
        assert (person / name).is_file(), name
    logged = [r.getMessage() for r in caplog.records]
    for stage in (*STAGES, "animation (turntable", "animation (walk"):
        assert any(f": {stage}" in m and m.endswith(" s") for m in logged), stage
    # back_visible: null in the config: the fine-tuning schedule is decided from the input view
    assert any("back visible (face texels' mean view cosine <= 0)" in m for m in logged)


def test_missing_stage2_network_is_named_before_any_data(tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    config["model"]["init_args"]["pipeline"]["finetune"]["perceptual_weight"] = 0.0
    config["model"]["init_args"]["vqgan"] = str(tmp_path / "no-such-vqgan")
    config["data"]["init_args"]["data_dir"] = str(tmp_path / "never-read")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(FileNotFoundError, match="no-such-vqgan"):
        main(["predict", "--config", str(path), "--trainer.accelerator=cpu"])


def _system(**kw):
    from tests.inference.tiny_dinar import tiny_networks
    from zoo.systems.dinar_one_image import DinarOneImageSystem

    nets = tiny_networks(S, T)
    return DinarOneImageSystem(nets["avatar"], nets["vqgan"], nets["denoiser"], nets["discriminator"], **kw), nets


def test_a_stage1_checkpoint_fills_network_and_discriminator():
    system, _ = _system(pipeline={"finetune": {"perceptual_weight": 0.0}})
    _, other = _system()
    trained = {**{f"network.{k}": v + 1 for k, v in other["avatar"].state_dict().items() if v.is_floating_point()},
               **{f"discriminator.{k}": v + 1 for k, v in other["discriminator"].state_dict().items()}}
    state = {**{k: v.clone() for k, v in system.state_dict().items()}, **trained,
             "disc_steps": torch.tensor(7)}  # NeuralAvatarSystem's counter
    checkpoint = {"state_dict": state}
    system.on_load_checkpoint(checkpoint)
    system.load_state_dict(checkpoint["state_dict"], strict=True)
    for key, value in trained.items():
        assert torch.equal(system.state_dict()[key], value), key
    assert not any(k.startswith(("vqgan", "denoiser", "pipeline")) for k in system.state_dict())


def test_fine_tuning_perceptual_needs_lpips_vgg_named():
    from zoo.metrics.lpips import MetricUnavailable, lpips_status

    if lpips_status(net="vgg") == "ok":
        pytest.skip("LPIPS(vgg) weights are on disk here")
    system, _ = _system()
    with pytest.raises(MetricUnavailable, match="vgg16-397923af.pth"):
        system.check_predict_assets()
    _system(pipeline={"finetune": {"perceptual_weight": 0.0}})[0].check_predict_assets()
    _system(pipeline={"finetune_steps": 0})[0].check_predict_assets()
    with pytest.raises(ValueError, match="unknown pipeline.finetune settings"):
        _system(pipeline={"finetune": {"perceptual": 1.0}})
