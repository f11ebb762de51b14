"""VQGANSystem: a few CPU steps with both optimisers, dead-code restart, export, image grids."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from zoo.metrics.lpips import MetricUnavailable
from zoo.modules.discriminator import PatchDiscriminator
from zoo.modules.vqgan import VQGAN
from zoo.systems.common import log_image_grid
from zoo.systems.vqgan import VQGANSystem
from zoo.utils.images import preview


class RandomTextures(pl.LightningDataModule):
    """Random tensors with the zoo's texture batch keys (texture, texture_mask, partial, known_mask)."""

    def __init__(self, channels: int = 3, size: int = 16, count: int = 6, batch_size: int = 2):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        texture = torch.rand(count, channels, size, size, generator=g) * 2 - 1
        texture_mask = (torch.rand(count, 1, size, size, generator=g) > 0.1).float()
        known = torch.zeros(count, 1, size, size)
        known[..., : size // 2] = 1.0
        known = known * texture_mask
        self.items = [dict(texture=texture[i], texture_mask=texture_mask[i], partial=texture[i] * known[i],
                           known_mask=known[i]) for i in range(count)]
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.items, batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self):
        return DataLoader(self.items, batch_size=self.batch_size, shuffle=False)


def tiny_system(**kwargs) -> VQGANSystem:
    torch.manual_seed(0)
    vqgan = VQGAN(in_channels=5, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, resolution=16,
                  latent_channels=4, num_codes=16, code_dim=3, norm_groups=4)  # RGB + known + gap masks
    disc = PatchDiscriminator(in_channels=5, base_channels=8, n_layers=2, norm="group", norm_groups=4)
    return VQGANSystem(vqgan, disc, **{"lr": 1e-3, "disc_start": 0, "perceptual_weight": 0.0, **kwargs})


def quiet_trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kwargs)


def test_both_optimisers_step_codes_restart_and_export(tmp_path):
    system = tiny_system(dead_code_restart_every=2, export_path=str(tmp_path / "export"))
    before_g = [p.detach().clone() for p in system.vqgan.parameters()]
    before_d = [p.detach().clone() for p in system.discriminator.parameters()]
    # with manual optimisation Lightning counts every optimiser step: 4 steps = 2 batches x (G, D)
    trainer = quiet_trainer(fast_dev_run=4)
    trainer.fit(system, datamodule=RandomTextures(count=4))  # 2 batches, then validation

    assert int(system.generator_steps) == 2
    opt_g, opt_d = (o.optimizer if hasattr(o, "optimizer") else o for o in trainer.optimizers)
    assert opt_g.state and all(int(s["step"]) == 2 for s in opt_g.state.values())
    assert opt_d.state and all(int(s["step"]) == 2 for s in opt_d.state.values())
    # every discriminator weight moves (the head's bias may not: with all logits inside (-1, 1) its
    # hinge-loss gradient is -1/2 + 1/2 = 0)
    assert all(not torch.equal(a, b) for a, b in zip(before_d, system.discriminator.parameters()) if b.ndim > 1)
    assert sum(not torch.equal(a, b) for a, b in zip(before_g, system.vqgan.parameters())) > 0.9 * len(before_g)

    metrics = trainer.callback_metrics
    for key in ("train/rec_loss", "train/g_adv_loss", "train/adv_weight", "train/disc_loss",
                "train/codebook_usage", "train/perplexity", "train/dead_codes_restarted", "val/rec_loss"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert 0 < metrics["train/codebook_usage"] <= 1

    exported = VQGAN.from_pretrained(tmp_path / "export")
    for (name, a), b in zip(system.vqgan.state_dict().items(), exported.state_dict().values()):
        assert torch.equal(a, b), name


def test_adversarial_terms_wait_for_disc_start():
    system = tiny_system(disc_start=100, adaptive_weight=False, adversarial_loss="non_saturating",
                         reconstruction_loss="l2")
    before_d = [p.detach().clone() for p in system.discriminator.parameters()]
    trainer = quiet_trainer(fast_dev_run=1)
    trainer.fit(system, datamodule=RandomTextures())
    assert all(torch.equal(a, b) for a, b in zip(before_d, system.discriminator.parameters()))
    assert "train/disc_loss" not in trainer.callback_metrics


def test_perceptual_loss_is_off_only_by_its_weight_and_loaded_from_a_local_file(tmp_path, monkeypatch):
    assert tiny_system().frozen("lpips") is None  # perceptual_weight 0.0: off, as the config says
    with pytest.raises(ValueError, match=r"perceptual_weight=1.0 needs LPIPS weights.*vgg16-397923af.pth"):
        tiny_system(perceptual_weight=1.0)  # no silent fallback to a model without LPIPS
    with pytest.raises(FileNotFoundError, match="perceptual_weights"):
        tiny_system(perceptual_weight=1.0, perceptual_weights=str(tmp_path / "missing.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty hub cache
    with pytest.raises(MetricUnavailable, match="vgg16-397923af.pth"):
        tiny_system(perceptual_weight=1.0, perceptual_weights="hub-cache", perceptual_net="vgg")
    import lpips

    torch.manual_seed(0)
    path = tmp_path / "lpips_squeeze.pth"
    net = lpips.LPIPS(net="squeeze", pretrained=False, pnet_rand=True, verbose=False)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith("lin"):
                param.abs_()  # LPIPS's linear heads are non-negative, so distances are too
    torch.save(net.state_dict(), path)
    system = tiny_system(perceptual_weight=1.0, perceptual_weights=str(path), perceptual_net="squeeze")
    assert system.frozen("lpips") is not None
    assert all(k.startswith(("vqgan.", "discriminator.", "generator_steps")) for k in system.state_dict())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    terms = system._nll(x, x.flip(-1), None)
    assert terms["perceptual_loss"] > 0 and torch.isfinite(terms["nll"])


def test_preview_channels_and_image_logging():
    texture = torch.cat([torch.full((3, 2, 4, 6), -1.0), torch.ones(3, 3, 4, 6)], dim=1)  # 5 channels
    assert torch.equal(preview(texture, [4, 3, 0]), texture[:, [4, 3, 0]])
    assert preview(texture).shape == (3, 3, 4, 6) and preview(texture[:, :2]).shape == (3, 1, 4, 6)
    seen = {}
    logger = SimpleNamespace(log_image=lambda key, images, step: seen.update(key=key, images=images, step=step))
    module = SimpleNamespace(_trainer=SimpleNamespace(is_global_zero=True, loggers=[logger]), global_step=7)
    log_image_grid(module, "val/x", [preview(texture, [4, 3, 2]), preview(texture, [0])])
    picture = seen["images"][0]
    assert seen["key"] == "val/x" and seen["step"] == 7 and picture.dtype == np.uint8 and picture.ndim == 3
    assert (picture == 255).any() and (picture == 0).any()  # a white column, a black column


def test_channel_mismatch_is_an_error():
    vqgan = VQGAN(in_channels=3, base_channels=8, channel_multipliers=[1], num_res_blocks=1, num_codes=4,
                  code_dim=2, latent_channels=2, norm_groups=4, output_heads=False)
    with pytest.raises(ValueError, match="in_channels"):
        VQGANSystem(vqgan, PatchDiscriminator(in_channels=21, base_channels=8, n_layers=1), perceptual_weight=0.0)
    with pytest.raises(ValueError, match="mask_channels"):
        VQGANSystem(vqgan, PatchDiscriminator(in_channels=3, base_channels=8, n_layers=1), mask_channels=False,
                    perceptual_weight=0.0)
    system = VQGANSystem(vqgan, PatchDiscriminator(in_channels=3, base_channels=8, n_layers=1), perceptual_weight=0.0)
    with pytest.raises(ValueError, match="mask_channels"):  # 3-channel textures + 2 masks != 3 inputs
        system._texture(RandomTextures().items[0] | {"texture": torch.zeros(1, 3, 16, 16)})


def test_trains_on_complete_and_partial_textures_with_their_masks():
    """DINAR's VQGAN encodes the pipeline's partial textures with their known / gap masks as channels:
    every batch holds the complete textures (known mask = atlas) and the partial ones."""
    system = tiny_system()
    items = RandomTextures(count=2).items
    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    batch["gap_mask"] = torch.zeros_like(batch["known_mask"])
    batch["gap_mask"][..., 8] = batch["texture_mask"][..., 8]  # the column next to the known half
    x, mask = system._texture(batch)
    assert x.shape == (4, 5, 16, 16) and mask.shape == (4, 1, 16, 16)
    torch.testing.assert_close(x[:2, :3], batch["texture"])
    torch.testing.assert_close(x[:2, 3:4], batch["texture_mask"])
    assert not x[:2, 4].any()
    known = torch.maximum(batch["known_mask"], batch["gap_mask"])
    torch.testing.assert_close(x[2:, 3:4], known)
    torch.testing.assert_close(x[2:, 4:5], batch["gap_mask"])
    torch.testing.assert_close(x[2:, :3], batch["partial"] * known)
    complete_only = tiny_system(train_on="complete")._texture(batch)[0]
    torch.testing.assert_close(complete_only, x[:2])


def test_reconstruction_channel_weights_match_a_float64_weighted_mean():
    system = tiny_system(reconstruction_loss="l2", reconstruction_channel_weights=[1.0, 3.0, 0.0, 2.0, 2.0])
    g = torch.Generator().manual_seed(1)
    x, rec = torch.randn(2, 5, 4, 4, generator=g), torch.randn(2, 5, 4, 4, generator=g)
    mask = (torch.rand(2, 1, 4, 4, generator=g) > 0.3).float()
    got = float(system._nll(x, rec, mask)["rec_loss"])
    w = np.array([1.0, 3.0, 0.0, 2.0, 2.0]) / 1.6
    err = (rec.double().numpy() - x.double().numpy()) ** 2 * w[None, :, None, None]
    m = np.broadcast_to(mask.double().numpy(), err.shape)
    assert got == pytest.approx((err * m).sum() / m.sum(), rel=1e-6)
    uniform = tiny_system(reconstruction_loss="l2")
    assert float(uniform._nll(x, rec, mask)["rec_loss"]) == pytest.approx(
        float(tiny_system(reconstruction_loss="l2", reconstruction_channel_weights=[2.0] * 5)._nll(x, rec, mask)["rec_loss"]))


@pytest.mark.parametrize("weights", [[1.0] * 4, [1.0, 1.0, -1.0, 1.0, 1.0], [0.0] * 5])
def test_bad_reconstruction_channel_weights_are_errors(weights):
    with pytest.raises(ValueError, match="reconstruction_channel_weights"):
        tiny_system(reconstruction_channel_weights=weights)
