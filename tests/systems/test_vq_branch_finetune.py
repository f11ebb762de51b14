"""DINAR's end-to-end fine-tuning through the VQGAN branch (`NeuralAvatarSystem` with `vqgan`,
`zoo.systems.vq_branch`): configs/dinar/avatar_vqgan_finetune_cpu.yaml at test sizes through the
command line, from a tiny stage-1 checkpoint and a saved tiny VQGAN."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.systems.dinar_configs import shrink_dinar_config
from zoo.callbacks.checkpoints import CheckpointError
from zoo.cli import main
from zoo.modules.dinar import DinarAvatarNet
from zoo.modules.neural_renderer import NeuralRenderer
from zoo.modules.vqgan import VQGAN
from zoo.pretrained import load_pretrained
from zoo.systems.neural_avatar import NeuralAvatarSystem
from zoo.systems.vq_branch import vq_roundtrip

ROOT = Path(__file__).resolve().parents[2]
STAGE1 = ROOT / "configs" / "dinar" / "avatar_cpu.yaml"
FINETUNE = ROOT / "configs" / "dinar" / "avatar_vqgan_finetune_cpu.yaml"
PAPER = ROOT / "configs" / "dinar" / "avatar_vqgan_finetune_dinar.yaml"


def tiny_vqgan() -> VQGAN:
    """9 channels (4 generated + RGB + known + gap masks) at 16 px -> 3 x 8 x 8 latents."""
    torch.manual_seed(0)
    return VQGAN(in_channels=9, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, resolution=16,
                 latent_channels=4, num_codes=16, code_dim=3, norm_groups=4)


def tiny_config(source: Path, data_dir: Path, out_dir: Path, max_steps: int, **model) -> str:
    """A DINAR avatar config at test sizes (32 px people, 16 px textures, 4-channel widths), no perceptual."""
    config = shrink_dinar_config(yaml.safe_load(source.read_text()), data_dir)
    config["model"]["init_args"].update(lr_decay_milestones=[], **model)
    config["trainer"].update(enable_progress_bar=False, logger=False, default_root_dir=str(out_dir), max_steps=max_steps,
                             limit_val_batches=1, val_check_interval=2,
                             callbacks=[{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                                         "init_args": {"dirpath": str(out_dir / "ckpt"), "save_last": True}}])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def assets(tmp_path_factory, zoo_home):
    """A 2-batch stage-1 checkpoint of configs/dinar/avatar_cpu.yaml (tiny) and a saved tiny VQGAN."""
    root = tmp_path_factory.mktemp("vq_finetune")
    main(["fit", "--config", tiny_config(STAGE1, zoo_home / "data", root / "stage1", 4)])
    vqgan = tiny_vqgan().save_pretrained(root / "vqgan")
    return {"root": root, "data": zoo_home / "data", "stage1": root / "stage1" / "ckpt" / "last.ckpt", "vqgan": vqgan}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def changed(before: dict, after: dict, prefix: str) -> bool:
    keys = [k for k in before if k.startswith(prefix) and before[k].is_floating_point()]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_renderer_only_fine_tune_trains_the_renderer_and_resumes(assets):
    out = assets["root"] / "renderer"
    config = tiny_config(FINETUNE, assets["data"], out, 4, vqgan=str(assets["vqgan"]), init_from=str(assets["stage1"]),
                         trainable="renderer")
    vq_before = {k: v.clone() for k, v in load_pretrained(str(assets["vqgan"])).state_dict().items()}
    main(["fit", "--config", config])
    before, after = weights(assets["stage1"]), weights(out / "ckpt" / "last.ckpt")
    assert set(after) == set(before), "the frozen VQGAN stays out of the checkpoint"
    assert changed(before, after, "network.renderer.") and changed(before, after, "discriminator.")
    for part in ("network.encoder.", "network.generator."):
        assert not changed(before, after, part), part
    vq_after = load_pretrained(str(assets["vqgan"])).state_dict()
    assert all(torch.equal(vq_before[k], vq_after[k]) for k in vq_before)
    # a resumed fit continues from its own checkpoint (not from init_from again) to the new max_steps
    resumed = torch.load(out / "ckpt" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 4
    main(["fit", "--config", config, "--trainer.max_steps=6", f"--ckpt_path={out / 'ckpt' / 'last.ckpt'}"])
    final = torch.load(out / "ckpt" / "last.ckpt", weights_only=True)
    # the R1 counter went on from the stage-1 checkpoint's 2 D steps: 2 + 2 + 1 (init_from reapplied would give 3)
    assert int(resumed["state_dict"]["disc_steps"]) == 4
    assert final["global_step"] == 6 and int(final["state_dict"]["disc_steps"]) == 5


def test_end_to_end_fine_tune_renders_the_decoded_texture(assets, monkeypatch):
    """Every render of the fit (training and validation) is of the VQGAN's decoding of the texture the
    network made, checked against an independent float64 encode / nearest-code / decode; the
    encoder, generator and renderer all train, the VQGAN does not."""
    made, rendered, frozen = [], [], []
    make_texture, render = DinarAvatarNet.make_texture, NeuralRenderer.forward

    def record_texture(self, *args, **kwargs):
        made.append(make_texture(self, *args, **kwargs))
        return made[-1]

    def record_render(self, texture, *args, **kwargs):
        rendered.append(texture)
        return render(self, texture, *args, **kwargs)

    original_setup = NeuralAvatarSystem.setup

    def record_setup(self, stage):
        original_setup(self, stage)
        frozen.append(self.frozen("vqgan"))

    monkeypatch.setattr(DinarAvatarNet, "make_texture", record_texture)
    monkeypatch.setattr(NeuralRenderer, "forward", record_render)
    monkeypatch.setattr(NeuralAvatarSystem, "setup", record_setup)
    out = assets["root"] / "all"
    main(["fit", "--config", tiny_config(FINETUNE, assets["data"], out, 4, vqgan=str(assets["vqgan"]),
                                         init_from=str(assets["stage1"]))])
    before, after = weights(assets["stage1"]), weights(out / "ckpt" / "last.ckpt")
    for part in ("network.encoder.", "network.generator.", "network.renderer.", "discriminator."):
        assert changed(before, after, part), part
    vqgan = frozen[-1]
    assert not vqgan.training and not any(p.requires_grad for p in vqgan.parameters())
    saved = load_pretrained(str(assets["vqgan"])).state_dict()
    assert all(torch.equal(saved[k], v) for k, v in vqgan.state_dict().items())
    assert len(made) == len(rendered) >= 3  # 2 training batches + validation
    v64 = load_pretrained(str(assets["vqgan"])).double().eval()
    with torch.no_grad():
        for texture, seen in zip(made, rendered):
            t = texture.detach().double()
            gap = (t[:, -1:] > 0.5).double()
            known = torch.maximum((t[:, -2:-1] > 0.5).double(), gap)
            x = torch.cat([t[:, :-2] * known, known, gap], 1)
            z = v64.quant_conv(v64.encoder(x))
            flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
            codes = v64.quantizer.embedding.weight[torch.cdist(flat, v64.quantizer.embedding.weight).argmin(1)]
            zq = codes.reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
            expected = v64.decoder(v64.post_quant_conv(zq))[:, :t.shape[1]]
            assert torch.allclose(seen.detach().double(), expected, atol=1e-4)
            assert not torch.allclose(seen.detach().double(), t, atol=1e-2), "the render is not of the direct texture"


def test_gradient_reaches_the_texture_through_the_frozen_vqgan():
    vqgan = tiny_vqgan().eval().requires_grad_(False)
    texture = torch.randn(2, 9, 16, 16)
    texture[:, -2:] = (torch.rand(2, 2, 16, 16) > 0.5).float()
    texture.requires_grad_(True)
    vq_roundtrip(vqgan, texture).square().sum().backward()
    assert texture.grad[:, :-2].abs().sum() > 0  # straight-through: the colours get a gradient
    with pytest.raises(ValueError, match=r"\(2, 8, 16, 16\)"):
        vq_roundtrip(vqgan, texture[:, 1:])


def test_branch_options_are_validated(assets):
    disc = torch.nn.Linear(1, 1)
    for bad, match in (({"vqgan": "x", "trainable": "decoder"}, "'decoder'"),
                       ({"vqgan": "x", "vq_branch_probability": 1.5}, "1.5"),
                       ({"init_from": "stage1.ckpt"}, "give vqgan")):
        with pytest.raises(ValueError, match=match):
            NeuralAvatarSystem(torch.nn.Linear(1, 1), disc, perceptual="none", **bad)
    # a VQGAN that does not take the avatar's texture fails at setup, naming both sizes
    system = NeuralAvatarSystem(torch.nn.Linear(1, 1), disc, perceptual="none", vqgan=VQGAN(
        in_channels=7, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, num_codes=4, code_dim=3,
        latent_channels=4, norm_groups=4))
    system.network.texture_channels = 9
    with pytest.raises(ValueError, match="7 -> 7 channels but the avatar texture has 9"):
        system.setup("validate")


def test_finetune_configs_fail_at_start_naming_a_missing_asset(assets, tmp_path, monkeypatch):
    """The VQGAN and the stage-1 checkpoint are checked before any data is prepared."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "never-created"
    common = ["--trainer.logger=false", f"--data.init_args.data_dir={data}", "--trainer.accelerator=cpu",
              "--model.init_args.perceptual=none"]
    with pytest.raises(FileNotFoundError, match="vqgan-dinar-neural-cpu"):
        main(["fit", "--config", str(FINETUNE), *common])
    with pytest.raises(FileNotFoundError, match="vqgan-dinar-neural"):
        main(["fit", "--config", str(PAPER), *common])
    with pytest.raises(CheckpointError, match="dinar_avatar_cpu_stage1.ckpt"):
        main(["fit", "--config", str(FINETUNE), *common, f"--model.init_args.vqgan={assets['vqgan']}"])
    assert not data.exists()


def test_paper_finetune_config_has_the_paper_settings():
    """Paper section 4: 20k fine-tuning iterations (G + D optimiser steps: 40000), end to end, every batch
    through the VQGAN branch, stage 1's networks, losses, rate and batch."""
    paper, stage1 = (yaml.safe_load(p.read_text()) for p in (PAPER, ROOT / "configs" / "dinar" / "avatar_dinar.yaml"))
    init = paper["model"]["init_args"]
    assert paper["trainer"]["max_steps"] == 40000
    assert (init["trainable"], init["vq_branch_probability"], init["vqgan"]) == ("all", 1.0, "vqgan-dinar-neural")
    skip = {"vqgan", "trainable", "vq_branch_probability", "init_from", "export_path"}
    assert {k: v for k, v in init.items() if k not in skip} == {k: v for k, v in stage1["model"]["init_args"].items()
                                                                if k != "export_path"}
    assert paper["data"] == stage1["data"]
