"""DINAR's stage-2 pairs: single-view neural textures of a frozen stage-1 network and their merge."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from zoo.datamodules.neural_texture_pairs import NeuralTexturePairsDataModule, person_neural_textures
from zoo.modules.dinar import DinarAvatarNet
from zoo.modules.neural_renderer import NeuralRenderer
from zoo.modules.stylegan2 import StyleEncoder, TextureGenerator

TINY_SG2 = dict(base_channels=4, channel_multiplier=1, max_channels=8)
OVERRIDES = {"num_identities": 4, "views_per_identity": 3, "image_size": [16, 16], "texture_size": 8}


def tiny_net(image_size: int = 16, texture_size: int = 8) -> DinarAvatarNet:
    torch.manual_seed(0)
    return DinarAvatarNet(
        renderer=NeuralRenderer(texture_channels=21, uv_features=2, mask_features=2, base_channels=4, n_downsampling=2,
                                n_blocks=1, features=4),
        encoder=StyleEncoder(image_size=image_size, style_dim=8, **TINY_SG2),
        generator=TextureGenerator(texture_size=texture_size, out_channels=16, style_dim=8, **TINY_SG2)).eval()


def test_merge_against_a_per_texel_float64_loop():
    net = tiny_net()
    n, T = 3, 8
    g = torch.Generator().manual_seed(1)
    image, mask = torch.rand(n, 3, 16, 16, generator=g) * 2 - 1, (torch.rand(n, 1, 16, 16, generator=g) > 0.3).float()
    rgb = torch.rand(n, 5, T, T, generator=g) * 2 - 1
    known = (torch.rand(n, 1, T, T, generator=g) > 0.5).float()
    known[:, :, 0, 0] = 0  # a texel no view saw
    rgb[:, 3:4], rgb[:, 4:5] = known, known * (torch.rand(n, 1, T, T, generator=g) > 0.7).float()
    rgb[:, :3] *= known
    cosines = torch.rand(n, 1, T, T, generator=g) * 2 - 1
    out = person_neural_textures(net, image, mask, rgb, cosines, noise_seeds=[5, 6, 7])

    views = out["views"].double().numpy()
    cos, vis = cosines.double().numpy()[:, 0], known.double().numpy()[:, 0]
    expected = np.zeros((21, T, T))
    for y in range(T):
        for x in range(T):
            w = np.exp(10 * cos[:, y, x])
            expected[:16, y, x] = (w / w.sum()) @ views[:, :16, y, x]
            if vis[:, y, x].any():
                wv = w * vis[:, y, x]
                expected[16:, y, x] = (wv / wv.sum()) @ views[:, 16:, y, x]
    np.testing.assert_allclose(out["merged"].double().numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(out["seen"][0].numpy(), vis.max(axis=0))
    assert out["seen"][0, 0, 0] == 0 and torch.all(out["merged"][16:, 0, 0] == 0)
    # the last five channels of each view are its RGB channels; the noise seed fixes a view's texture
    assert torch.equal(out["views"][:, 16:], rgb)
    again = person_neural_textures(net, image[1:2], mask[1:2], rgb[1:2], cosines[1:2], noise_seeds=[6])
    torch.testing.assert_close(again["views"][0], out["views"][1])


def test_needs_the_full_dinar_texture():
    rgb_only = DinarAvatarNet(renderer=NeuralRenderer(texture_channels=5, uv_features=2, mask_features=2, base_channels=4,
                                                      n_downsampling=2, n_blocks=1, features=4))
    with pytest.raises(ValueError, match="generator and RGB channels"):
        person_neural_textures(rgb_only, torch.zeros(1, 3, 16, 16), torch.ones(1, 1, 16, 16), torch.zeros(1, 5, 8, 8),
                               torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="encoder_image"):
        NeuralTexturePairsDataModule(tiny_net(), encoder_image="grey")


@pytest.fixture(scope="module")
def pairs(zoo_home):
    dm = NeuralTexturePairsDataModule(tiny_net(), preset="tiny", overrides=OVERRIDES, data_dir=str(zoo_home / "pairs"),
                                      cache_dir=str(zoo_home / "pairs_cache"), batch_size=2, progress=False)
    dm.setup()
    return dm


def test_synthetic_pairs(pairs, zoo_home):
    data = pairs.datasets["train"]
    item = data[0]
    T = 8
    shapes = {"partial": (19, T, T), "known_mask": (1, T, T), "gap_mask": (1, T, T), "texture": (19, T, T),
              "texture_mask": (1, T, T), "albedo": (3, T, T), "atlas": (1, T, T), "facing": ()}
    for key, shape in shapes.items():
        assert tuple(item[key].shape) == shape, key
    # every view of a person has the same merged target; views of different people differ
    owners = data.view_person.tolist()
    same = [i for i, p in enumerate(owners) if p == owners[0]]
    assert len(same) == 3 and all(torch.equal(data[i]["texture"], item["texture"]) for i in same)
    other = owners.index(next(p for p in owners if p != owners[0]))
    assert not torch.equal(data[other]["texture"], item["texture"])
    # the RGB channels are the stage-1 batch's (5x... erosion 3, gap fill), the masks split known / gap
    people = pairs._synthetic_people().datasets["train"]
    rgb = people.person_views(owners[0])["source_rgb_texture"][0]
    torch.testing.assert_close(item["partial"][16:], rgb[:3], atol=2e-3, rtol=0)
    torch.testing.assert_close(item["known_mask"] + item["gap_mask"], rgb[3:4], atol=1e-3, rtol=0)
    assert torch.all(item["known_mask"] * item["gap_mask"] == 0)
    # the merged RGB is seen wherever a view saw the texel, and lies in the atlas
    assert torch.all(item["texture_mask"] <= item["atlas"]) and item["texture_mask"].sum() >= rgb[3].sum()
    batch = next(iter(pairs.train_dataloader()))
    assert batch["partial"].shape == (2, 19, T, T)
    # the cache gives back the same tensors
    cached = NeuralTexturePairsDataModule(tiny_net(), preset="tiny", overrides=OVERRIDES,
                                          data_dir=str(zoo_home / "pairs"), cache_dir=str(zoo_home / "pairs_cache"))
    cached.setup()
    for key, value in cached.datasets["test"][1].items():
        assert torch.equal(value, pairs.datasets["test"][1][key]), key


def test_dinar_folder_people(tmp_path):
    from tests.datamodules.dinar_fixtures import write_dinar_folder, write_tiny_smplx

    model = write_tiny_smplx(tmp_path / "model")
    write_dinar_folder(tmp_path / "raw", model, frames=3)
    root = tmp_path / "data"
    for sub in ("rgb", "segm", "smplx"):
        (root / sub).mkdir(parents=True)
        for k, name in enumerate(["ann_0", "ann_1", "bob_0"]):
            ext = "pkl" if sub == "smplx" else "png"
            shutil.copy(tmp_path / "raw" / sub / f"frame{k:02d}.{ext}", root / sub / f"{name}.{ext}")
    dm = NeuralTexturePairsDataModule(tiny_net(), dinar_folders={"train": str(root)},
                                      dinar_options={"body": model, "image_size": 16, "texture_size": 8},
                                      batch_size=2, progress=False)
    dm.setup()
    data = dm.datasets["train"]
    assert len(data) == 2 and data.view_person.tolist() == [0, 0]  # bob has one frame: no pair
    assert torch.equal(data[0]["texture"], data[1]["texture"])
    assert data[0]["partial"].shape == (19, 8, 8)
    with pytest.raises(ValueError, match="no 'test' split"):
        dm.test_dataloader()


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++"])
def test_stage2_on_pairs_known_region_holds_exactly(pairs, sampler):
    """21-channel VQGAN and latent diffusion train on the pairs; inpainting keeps the input's known and
    gap-filled texels exactly with the hard paste (DINAR eq. 6) and, with DINAR's soft test-time paste,
    exactly wherever its weight is 1 (none at these 8 px sizes: the rim blend covers every known texel),
    with every sampler."""
    from tests.systems.test_vqgan_system import quiet_trainer
    from zoo.modules.diffusion_unet import DiffusionUNet
    from zoo.modules.discriminator import PatchDiscriminator
    from zoo.modules.vqgan import VQGAN
    from zoo.render.uv_space import soft_paste_mask
    from zoo.systems.latent_inpainting import LatentInpaintingSystem
    from zoo.systems.vqgan import VQGANSystem

    torch.manual_seed(0)
    vqgan = VQGAN(in_channels=21, base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, resolution=8,
                  latent_channels=4, num_codes=16, code_dim=3, norm_groups=4)
    quiet_trainer(fast_dev_run=2).fit(VQGANSystem(vqgan, PatchDiscriminator(in_channels=21, base_channels=8, n_layers=1,
                                                                            norm="group", norm_groups=4),
                                                  lr=1e-3, train_on="both", perceptual_weight=0.0), datamodule=pairs)
    unet = DiffusionUNet(in_channels=7, out_channels=3, base_channels=8, channel_multipliers=[1], num_res_blocks=1,
                         attention_resolutions=[], resolution=4, num_heads=2, dropout=0.0, norm_groups=4)
    system = LatentInpaintingSystem(unet, vqgan, num_train_timesteps=50, lr=1e-3, val_steps=2, ema_decay=0.9)
    quiet_trainer(fast_dev_run=2).fit(system, datamodule=pairs)
    batch = next(iter(pairs.test_dataloader()))
    known = ((batch["known_mask"] + batch["gap_mask"]) > 0.5).float()
    outs = {}
    for paste in ("hard", "soft"):
        system.hparams.known_paste = paste
        outs[paste] = system.inpaint(batch["partial"], batch["known_mask"], batch["gap_mask"], sampler=sampler, steps=5,
                                     generator=torch.Generator().manual_seed(0), atlas=batch["atlas"])
    region = (known > 0.5).expand_as(outs["hard"])
    assert region.any() and (~region).any()
    assert torch.equal(outs["hard"][region], batch["partial"][region])
    assert torch.isfinite(outs["hard"]).all() and not torch.equal(outs["hard"][~region], torch.zeros_like(outs["hard"][~region]))
    weight = soft_paste_mask(known, batch["atlas"]).expand_as(outs["soft"])
    assert torch.all(weight[~region] == 0) and weight[region].max() > 0
    inner = weight == 1
    assert torch.equal(outs["soft"][inner], batch["partial"][inner])
    assert torch.equal(outs["soft"][~region], outs["hard"][~region])  # unknown texels: the decoded sample, same seed
