"""LatentInpaintingSystem (a few CPU steps, frozen VQGAN, EMA, inpaint) and the EMA helpers."""
from __future__ import annotations

import pytest
import torch

from tests.systems.test_vqgan_system import RandomTextures, quiet_trainer
from zoo.utils.ema import ExponentialMovingAverage
from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.vqgan import VQGAN
from zoo.systems.latent_inpainting import LatentInpaintingSystem


def tiny_vqgan() -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(in_channels=3, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, resolution=16,
                 latent_channels=4, num_codes=16, code_dim=3, norm_groups=4)


def tiny_unet(in_channels: int = 7) -> DiffusionUNet:
    torch.manual_seed(1)
    return DiffusionUNet(in_channels=in_channels, out_channels=3, base_channels=8, channel_multipliers=[1, 2],
                         num_res_blocks=1, attention_resolutions=[4], resolution=8, num_heads=2, dropout=0.0,
                         norm_groups=4)


def tiny_system(vqgan, **kwargs) -> LatentInpaintingSystem:
    defaults = dict(num_train_timesteps=50, lr=1e-3, val_steps=3, ema_decay=0.9)
    return LatentInpaintingSystem(tiny_unet(), vqgan, **{**defaults, **kwargs})


def test_fit_with_vqgan_loaded_by_name_and_checkpoint_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo_home"))
    vqgan = tiny_vqgan()
    vqgan.save_pretrained(tmp_path / "zoo_home" / "tiny-vqgan")
    system = tiny_system("tiny-vqgan")
    before = [p.detach().clone() for p in system.denoiser.parameters()]
    trainer = quiet_trainer(fast_dev_run=2)
    trainer.fit(system, datamodule=RandomTextures(count=4))

    assert isinstance(system.vqgan, VQGAN) and not system.vqgan.training
    assert all(not p.requires_grad for p in system.vqgan.parameters())
    for (name, a), b in zip(vqgan.state_dict().items(), system.vqgan.state_dict().values()):
        assert torch.equal(a, b), f"frozen VQGAN changed: {name}"
    assert sum(not torch.equal(a, b) for a, b in zip(before, system.denoiser.parameters())) > 0
    assert int(system.ema.num_updates) == 2
    for key in ("train/diffusion_loss", "val/diffusion_loss", "val/l1_unknown"):
        assert key in trainer.callback_metrics and torch.isfinite(trainer.callback_metrics[key]), key

    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert not any(k.startswith("vqgan") for k in state), "the frozen VQGAN must stay out of the checkpoint"
    assert any(k.startswith("ema.") for k in state) and any(k.startswith("denoiser.") for k in state)
    restored = LatentInpaintingSystem.load_from_checkpoint(ckpt, denoiser=tiny_unet(), vqgan="tiny-vqgan")
    for (name, a), b in zip(system.denoiser.state_dict().items(), restored.denoiser.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(restored.ema.num_updates, system.ema.num_updates)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++"])
def test_inpaint_keeps_known_texels_and_is_deterministic(sampler):
    system = tiny_system(tiny_vqgan()).eval()
    with torch.no_grad():  # give the zero-initialised denoiser a non-trivial output
        for p in system.denoiser.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    batch = RandomTextures(count=2).items
    partial = torch.stack([b["partial"] for b in batch])
    known = torch.stack([b["known_mask"] for b in batch])
    out = system.inpaint(partial, known, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0))
    again = system.inpaint(partial, known, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == partial.shape and torch.isfinite(out).all()
    region = (known > 0.5).expand_as(out)
    assert torch.equal(out[region], partial[region]), "DINAR eq. 6: known texels are pasted back exactly"
    assert not torch.equal(out[~region], partial[~region])
    assert torch.equal(out, again)


def test_condition_layout_and_denoiser_check():
    system = tiny_system(tiny_vqgan())
    partial, known = torch.rand(2, 3, 16, 16), torch.zeros(2, 1, 16, 16)
    known[..., :8] = 1
    z, cond, fully_known = system._condition(partial, known)
    assert z.shape == (2, 3, 8, 8) and cond.shape == (2, 4, 8, 8) and fully_known.shape == (2, 1, 8, 8)
    torch.testing.assert_close(cond[:, :3], z)
    assert fully_known[..., :4].all() and not fully_known[..., 4:].any()
    with pytest.raises(ValueError, match="7 -> 3"):
        LatentInpaintingSystem(tiny_unet(in_channels=6), tiny_vqgan())
    with pytest.raises(ValueError, match="partial"):
        system._condition(torch.rand(2, 4, 16, 16), known)


def test_ema_update_warmup_swap_and_state():
    net = torch.nn.Linear(2, 1)
    ema = ExponentialMovingAverage(net, decay=0.5, warmup=False)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.weight, start + 0.5)  # 0.5 * old + 0.5 * new
    with ema.swap_into(net):
        torch.testing.assert_close(net.weight, start + 0.5)
    torch.testing.assert_close(net.weight, start + 1.0)
    warm = ExponentialMovingAverage(net, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(2 / 11)
    copy = ExponentialMovingAverage(torch.nn.Linear(2, 1), decay=0.5)
    copy.load_state_dict(ema.state_dict())
    torch.testing.assert_close(copy.weight, ema.weight)
    assert int(copy.num_updates) == 1
