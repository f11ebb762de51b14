"""Training steps of the systems on the accelerator (`gpu` marker: CUDA, or the CPU with
ZOO_TEST_DEVICE=cpu): results match the CPU's fp32 path, and bf16 autocast (mixed precision; the
CPU path is fp32) stays finite and close to it."""
from __future__ import annotations

import contextlib

import pytest
import pytorch_lightning as pl
import torch

from tests.systems.test_inpainting_system import tiny_system as tiny_inpainting
from tests.systems.test_inpainting_system import tiny_vqgan
from tests.systems.test_refinetex_system import random_batch, tiny_system
from tests.systems.test_vqgan_system import RandomTextures
from tests.systems.test_vqgan_system import tiny_system as tiny_vqgan_system
from zoo.modules.dinar import DinarAvatarNet
from zoo.modules.neural_renderer import NeuralRenderer
from zoo.modules.stylegan2 import StyleEncoder, StyleGAN2Discriminator, TextureGenerator
from zoo.systems.neural_avatar import NeuralAvatarSystem

pytestmark = pytest.mark.gpu
NO_REID = {"reid_weight": 0.0, "style_weight": 0.0}  # no ReID network in these tests


@contextlib.contextmanager
def exact_fp32():
    """No TF32 on CUDA, so that device and CPU fp32 agree to fp32 rounding."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def trainer(device: str, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


def refinetex_loss(system, batch, device: str, autocast: bool = False):
    system = system.to(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        loss, _ = system.compute_losses(batch, 0)
    system.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in system.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    return loss.detach().float().cpu()


def test_refinetex_step_matches_cpu_and_runs_in_bf16(device):
    batch = random_batch(batch=2, seed=3)
    cpu = refinetex_loss(tiny_system(None, **NO_REID), batch, "cpu")
    with exact_fp32():
        on_device = refinetex_loss(tiny_system(None, **NO_REID), batch, device)
    torch.testing.assert_close(on_device, cpu, rtol=1e-4, atol=1e-5)
    mixed = refinetex_loss(tiny_system(None, **NO_REID), batch, device, autocast=True)
    assert torch.isfinite(mixed) and abs(float(mixed) - float(cpu)) < 0.05 * abs(float(cpu))


def test_diffusion_denoiser_bf16_matches_fp32(device):
    system = tiny_inpainting(tiny_vqgan()).to(device).eval()
    torch.manual_seed(0)
    for p in system.denoiser.parameters():  # the zero-initialised output layer would hide differences
        p.data.normal_(0, 0.05)
    x = torch.randn(2, system.denoiser.in_channels, 8, 8, device=device)
    t = torch.tensor([10, 40], device=device)
    with torch.no_grad(), exact_fp32():
        full = system.denoiser(x, t)
        with torch.autocast(device, dtype=torch.bfloat16):
            mixed = system.denoiser(x, t).float()
    assert torch.isfinite(mixed).all()
    assert (mixed - full).norm() < 0.05 * full.norm()


def test_inpainting_and_vqgan_systems_train_on_device(device):
    inpainting = tiny_inpainting(tiny_vqgan())
    trainer(device, fast_dev_run=2).fit(inpainting, datamodule=RandomTextures(count=4))
    assert int(inpainting.ema.num_updates) == 2
    vqgan = tiny_vqgan_system()
    fit = trainer(device, fast_dev_run=4)
    fit.fit(vqgan, datamodule=RandomTextures(count=4))
    assert int(vqgan.generator_steps) == 2
    assert all(torch.isfinite(v) for v in fit.callback_metrics.values())


def test_dinar_stage1_trains_on_device(device):
    torch.manual_seed(0)
    small = {"channel_multiplier": 1, "base_channels": 4, "max_channels": 8}
    network = DinarAvatarNet(
        encoder=StyleEncoder(image_size=32, style_dim=8, **small),
        generator=TextureGenerator(texture_size=16, out_channels=4, style_dim=8, **small),
        renderer=NeuralRenderer(texture_channels=9, base_channels=4, n_downsampling=2, n_blocks=1, uv_features=2,
                                mask_features=2, features=4),
        use_rgb_channels=True)
    discriminator = StyleGAN2Discriminator(image_size=32, **small)
    system = NeuralAvatarSystem(network, discriminator, perceptual="none", texture_size=16, crop_size=16,
                                face_crop_size=8, r1_interval=2, image_log_every_n_steps=0)
    g = torch.Generator().manual_seed(0)
    item = {}
    for p in ("source_", "target_"):
        item[p + "image"] = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
        item[p + "mask"] = torch.zeros(2, 1, 32, 32).index_fill_(3, torch.arange(8, 24), 1.0)
        item[p + "uv"] = torch.rand(2, 32, 32, 2, generator=g) * 1.8 - 0.9
    before = [p.detach().clone() for p in system.network.parameters()]
    fit = trainer(device, max_steps=4, limit_val_batches=0, num_sanity_val_steps=0)
    fit.fit(system, train_dataloaders=torch.utils.data.DataLoader([item, item], batch_size=None))
    assert int(system.disc_steps) == 2
    assert all(torch.isfinite(p).all() for p in system.parameters())
    assert sum(not torch.equal(a, b.cpu()) for a, b in zip(before, system.network.parameters())) > 0
