"""DINAR stage 1 through the command line: a tiny fit, then predict writing each avatar's files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.systems.dinar_configs import shrink_dinar_config
from zoo.cli import main
from zoo.metrics.lpips import MetricUnavailable, lpips_status
from zoo.systems.neural_avatar import build_perceptual, uv_body_mask

ROOT = Path(__file__).resolve().parents[2]
CPU_CONFIG = str(ROOT / "configs" / "dinar" / "avatar_cpu.yaml")


def tiny_config(data_dir, out_dir) -> str:
    """configs/dinar/avatar_cpu.yaml at test sizes (32 px people, 16 px textures, 4-channel widths)."""
    config = shrink_dinar_config(yaml.safe_load(Path(CPU_CONFIG).read_text()), data_dir)
    config["model"]["init_args"].update(lr_decay_milestones=[2], lr_decay_factor=0.5)
    config["data"]["init_args"]["overrides"].update(shading=0.8, clothing_offset=0.02)
    checkpoint, writer = config["trainer"]["callbacks"]
    checkpoint["init_args"]["dirpath"] = str(out_dir / "ckpt")
    writer["init_args"].update(output_dir=str(out_dir / "avatars"), render_size=32, turntable_frames=3, walk_frames=2,
                               rgb_channels=[4, 5, 6])
    config["trainer"].update(enable_progress_bar=False, logger=False, default_root_dir=str(out_dir), max_steps=4,
                             limit_val_batches=1, val_check_interval=2, limit_predict_batches=1)
    path = out_dir / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, zoo_home):
    root = tmp_path_factory.mktemp("dinar_fit")
    config = tiny_config(zoo_home / "data", root)
    main(["fit", "--config", config])
    ckpts = list((root / "ckpt").glob("*.ckpt"))
    assert ckpts, "the fit wrote a checkpoint"
    return config, root, ckpts[0]


def test_fit_trains_every_network_parameter(fitted):
    _, _, ckpt = fitted
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    keys = state["state_dict"]
    assert any(k.startswith("network.encoder.") for k in keys) and any(k.startswith("discriminator.") for k in keys)
    # Lightning counts each optimiser step: max_steps=4 is 2 batches of one G and one D step
    assert int(keys["disc_steps"]) == 2
    assert not any("reconstruction" in k for k in keys), "frozen loss networks stay out of checkpoints"
    # lr_decay_milestones=[2], factor 0.5: the second batch (global step 2) and after run at half the rates
    lrs = [opt["param_groups"][0]["lr"] for opt in state["optimizer_states"]]
    assert lrs == pytest.approx([0.5e-2, 0.5 * 2e-3])


def test_learning_rate_schedule_is_a_function_of_the_global_step():
    from zoo.modules.stylegan2 import StyleGAN2Discriminator
    from zoo.systems.neural_avatar import NeuralAvatarSystem

    disc = StyleGAN2Discriminator(image_size=32, channel_multiplier=1, base_channels=4, max_channels=8)
    system = NeuralAvatarSystem(torch.nn.Linear(1, 1), disc, perceptual="none", lr=1e-2, disc_lr=2e-3,
                                lr_decay_milestones=[6000, 9000], lr_decay_factor=0.2)
    expected = {0: (1e-2, 2e-3), 5999: (1e-2, 2e-3), 6000: (2e-3, 4e-4), 8999: (2e-3, 4e-4), 9000: (4e-4, 8e-5)}
    for step, rates in expected.items():
        assert system.learning_rates(step) == pytest.approx(rates), step
    assert NeuralAvatarSystem(torch.nn.Linear(1, 1), disc, perceptual="none").learning_rates(10**6) == (2e-3, 2e-3)
    for bad in ({"lr_decay_milestones": [0]}, {"lr_decay_milestones": [1.5]}, {"lr_decay_factor": 0.0},
                {"lr_decay_factor": 1.5}):
        with pytest.raises(ValueError, match="lr_decay"):
            NeuralAvatarSystem(torch.nn.Linear(1, 1), disc, perceptual="none", **bad)


def test_predict_writes_each_avatar(fitted):
    config, root, ckpt = fitted
    out = root / "avatars"
    main(["predict", "--config", config, f"--ckpt_path={ckpt}"])
    people = sorted(out.glob("person_*"))
    assert people
    for person in people:
        texture = load_file(person / "neural_texture.safetensors")["texture"]
        assert texture.shape == (9, 16, 16) and torch.isfinite(texture).all()
        for name in ("rgb_channels.png", "turntable.gif", "walk.gif", "turntable/frame_002.png", "walk/frame_001.png"):
            assert (person / name).is_file(), name
    first = {p.name: load_file(p / "neural_texture.safetensors")["texture"] for p in people}
    # another global RNG state (as on another process): the encoder noise must not come from it
    main(["predict", "--config", config, f"--ckpt_path={ckpt}", "--seed_everything=1234"])
    for person in people:
        again = load_file(person / "neural_texture.safetensors")["texture"]
        assert torch.equal(again, first[person.name]), "a prediction is the same in every run"


def test_uv_body_mask():
    uv = torch.tensor([[[[0.5, -0.5], [-2.0, -2.0]]]])
    assert uv_body_mask(uv).flatten().tolist() == [1.0, 0.0]


def test_paper_perceptual_fails_at_start_naming_the_file():
    if lpips_status(net="vgg") == "ok":
        pytest.skip("LPIPS(vgg) weights are on disk here")
    with pytest.raises(MetricUnavailable, match="vgg16-397923af.pth"):
        build_perceptual("lpips_vgg", None, None)
    with pytest.raises(ValueError, match="reid"):
        build_perceptual("lpips_vgg", "reid", None)


def test_paper_config_fails_at_start_before_any_data(tmp_path, monkeypatch):
    """configs/dinar/avatar_dinar.yaml needs LPIPS(vgg): without its weights the fit stops before
    generating a single image, with a message naming the file."""
    if lpips_status(net="vgg") == "ok":
        pytest.skip("LPIPS(vgg) weights are on disk here")
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "never-created"
    with pytest.raises(MetricUnavailable, match="vgg16-397923af.pth"):
        main(["fit", "--config", str(ROOT / "configs" / "dinar" / "avatar_dinar.yaml"), "--trainer.logger=false",
              f"--data.init_args.data_dir={data}", "--trainer.accelerator=cpu"])
    assert not data.exists()


def test_avatar_writer_body_must_be_a_module_config(tmp_path):
    from zoo.callbacks.avatar_writer import AvatarWriter

    with pytest.raises(ValueError, match="class_path"):
        AvatarWriter(str(tmp_path), body={"phenotypes": "all"})
    with pytest.raises(ValueError, match="multiple of 8"):
        AvatarWriter(str(tmp_path), render_size=30)


def test_paper_learning_rate_is_the_default_and_the_cpu_departure_is_named():
    """DINAR trains with Adam 2e-3 (paper section 4): the system's default and the paper-size config.
    The CPU config's faster generator-side rate is an explicit `lr`, its discriminator keeps 2e-3."""
    import inspect

    from zoo.systems.neural_avatar import NeuralAvatarSystem

    defaults = inspect.signature(NeuralAvatarSystem.__init__).parameters
    assert defaults["lr"].default == 2e-3 and defaults["disc_lr"].default is None
    paper = yaml.safe_load((ROOT / "configs" / "dinar" / "avatar_dinar.yaml").read_text())["model"]["init_args"]
    assert paper.get("lr", 2e-3) == 2e-3 and paper.get("disc_lr") in (None, 2e-3)
    cpu = yaml.safe_load(Path(CPU_CONFIG).read_text())["model"]["init_args"]
    assert cpu["lr"] == 1e-2 and cpu["disc_lr"] == 2e-3
