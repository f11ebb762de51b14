"""LatentInpaintingSystem (a few CPU steps, frozen VQGAN, EMA, inpaint) and the EMA helpers."""
from __future__ import annotations

import pytest
import torch

from tests.systems.test_vqgan_system import RandomTextures, quiet_trainer
from zoo.modules.diffusion_unet import DiffusionUNet
from zoo.modules.vqgan import VQGAN
from zoo.render import soft_paste_mask
from zoo.systems.latent_inpainting import LatentInpaintingSystem
from zoo.utils.ema import ExponentialMovingAverage


def tiny_vqgan() -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(in_channels=5, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, resolution=16,
                 latent_channels=4, num_codes=16, code_dim=3, norm_groups=4)  # RGB + known + gap masks


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


def randomised_system() -> LatentInpaintingSystem:
    system = tiny_system(tiny_vqgan()).eval()
    with torch.no_grad():  # give the zero-initialised denoiser a non-trivial output
        for p in system.denoiser.parameters():
            if not p.any():
                p.normal_(0, 0.05)
        system.vqgan.quantizer.embedding.weight.normal_()  # spread codes: decoding tells latents apart
    return system


def stacked(items: list[dict]) -> dict:
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


def paste_inputs():
    batch = stacked(RandomTextures(count=2).items)
    partial, known = batch["partial"], batch["known_mask"]
    gap = torch.zeros_like(known)
    gap[..., 8] = 1  # gap-filled texels next to the known half are pasted as well
    return partial + gap * 0.25, known, gap


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++"])
def test_inpaint_hard_paste_keeps_known_texels_and_is_deterministic(sampler):
    system = randomised_system()
    system.hparams.known_paste = "hard"
    partial, known, gap = paste_inputs()
    out = system.inpaint(partial, known, gap, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0))
    again = system.inpaint(partial, known, gap, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == partial.shape and torch.isfinite(out).all()
    region = ((known + gap) > 0.5).expand_as(out)
    assert torch.equal(out[region], partial[region]), "DINAR eq. 6: known and gap-filled texels pasted back exactly"
    assert not torch.equal(out[~region], partial[~region])
    assert torch.equal(out, again)


def test_inpaint_soft_paste_is_dinars_default():
    """DINAR's test phase pastes with the eroded, box-blurred known mask: texels deep inside the known
    region are the input, unknown texels the decoded sample, the rim of the known region a blend."""
    system = randomised_system()
    assert system.hparams.known_paste == "soft"
    partial, known, gap = paste_inputs()
    atlas = torch.ones_like(known)
    atlas[..., 0, :] = 0
    decoded = []
    decode = system.decode
    system.decode = lambda z: decoded.append(decode(z)) or decoded[-1]
    soft = system.inpaint(partial, known, gap, atlas=atlas, sampler="ddim", steps=4,
                          generator=torch.Generator().manual_seed(0))
    sample = decoded[-1][:, :partial.shape[1]]
    # brute-force weight: (known | off-atlas), 3x3 min with the image edge ignored, 3x3 mean with mirrored
    # edges (OpenCV's erode / blur defaults), minus off-atlas
    closed = torch.maximum(torch.maximum(known, gap), 1 - atlas)
    H, W = closed.shape[-2:]
    mirror = lambda k, n: -k if k < 0 else 2 * (n - 1) - k if k >= n else k  # noqa: E731
    eroded = torch.zeros_like(closed)
    w = torch.zeros_like(closed)
    for i in range(H):
        for j in range(W):
            eroded[..., i, j] = closed[..., max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].amin((-1, -2))
    for i in range(H):
        for j in range(W):
            w[..., i, j] = sum(eroded[..., mirror(i + a, H), mirror(j + b, W)] for a in (-1, 0, 1) for b in (-1, 0, 1)) / 9
    w = (w - (1 - atlas)).clamp(0, 1)
    torch.testing.assert_close(soft, (1 - w) * sample + w * partial)
    rim = ((w > 1e-6) & (w < 1 - 1e-6)).expand_as(soft)
    assert rim.any() and (w > 1 - 1e-6).any() and not torch.allclose(soft[rim], partial[rim])
    with pytest.raises(ValueError, match="known_paste"):
        tiny_system(tiny_vqgan(), known_paste="blur")


def test_inpainting_follows_its_condition():
    """The defect of issue 7: samples that ignore the condition. Another identity's condition (the batch
    rolled by one) must change the unseen texels, and leave the pasted known texels alone."""
    system = randomised_system()
    batch = stacked(RandomTextures(count=3).items)
    partial, known = batch["partial"], batch["known_mask"]
    _, vqgan_input, filled = system.vqgan_inputs(batch)
    _, cond, _ = system._condition(vqgan_input, filled)
    kw = dict(sampler="ddim", steps=4, generator=None, use_ema=False)  # the EMA holds the zero init
    true = system.inpaint(partial, known, **{**kw, "generator": torch.Generator().manual_seed(0)})
    same = system.inpaint(partial, known, cond_override=cond, **{**kw, "generator": torch.Generator().manual_seed(0)})
    other = system.inpaint(partial, known, cond_override=cond.roll(1, 0),
                           **{**kw, "generator": torch.Generator().manual_seed(0)})
    unseen = (known < 0.5).expand_as(true)
    pasted = (soft_paste_mask(known) == 1).expand_as(true)  # the soft paste's rim blends in the sample
    assert torch.equal(true, same)
    assert (true[unseen] - other[unseen]).abs().mean() > 1e-3
    assert pasted.any() and torch.equal(true[pasted], other[pasted])


def test_condition_layout_and_denoiser_check():
    system = tiny_system(tiny_vqgan())
    texture, partial, known = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), torch.zeros(2, 1, 16, 16)
    known[..., :7] = 1
    gap = torch.zeros_like(known)
    gap[..., 7] = 1
    atlas = torch.ones_like(known)
    complete, vqgan_input, filled = system.vqgan_inputs(
        {"texture": texture, "partial": partial, "known_mask": known, "gap_mask": gap, "texture_mask": atlas})
    torch.testing.assert_close(filled, known + gap)
    torch.testing.assert_close(vqgan_input, torch.cat([partial * filled, filled, gap], 1))
    torch.testing.assert_close(complete, torch.cat([texture, atlas, torch.zeros_like(atlas)], 1))
    z, cond, resized = system._condition(vqgan_input, filled)
    assert z.shape == (2, 3, 8, 8) and cond.shape == (2, 4, 8, 8) and resized.shape == (2, 1, 8, 8)
    torch.testing.assert_close(cond[:, :3], z)
    # nearest resize (DINAR): latent cell j takes texel 2j, so cells 0..3 are known (texels 0, 2, 4, 6)
    assert resized[..., :4].eq(1).all() and resized[..., 4:].eq(0).all()
    torch.testing.assert_close(z, system.vqgan.encode(vqgan_input, quantize=False))  # pre-quantisation
    with pytest.raises(ValueError, match="7 -> 3"):
        LatentInpaintingSystem(tiny_unet(in_channels=6), tiny_vqgan())
    with pytest.raises(ValueError, match="VQGAN input"):
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
