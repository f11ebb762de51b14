"""Denoising U-Net: shapes, gradients, time embedding, attention placement, DINAR preset size."""
from __future__ import annotations

import math

import pytest
import torch

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.diffusion_unet import (
    DiffusionUNet,
    MultiHeadAttnBlock,
    TimestepResBlock,
    timestep_embedding,
)
from zoo.modules.vqgan import count_parameters

TINY = dict(in_channels=5, out_channels=2, base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1,
            attention_resolutions=(4,), resolution=8, num_heads=2, dropout=0.0, norm_groups=4)


def tiny_unet(**overrides) -> DiffusionUNet:
    torch.manual_seed(0)
    return DiffusionUNet(**{**TINY, **overrides})


def perturb_zero_init(model: torch.nn.Module) -> torch.nn.Module:
    """Zero-initialised output layers (as in ADM/LDM) block gradients to everything before them at
    step 0; give them small values so the gradient check sees the whole network."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return model


@pytest.mark.parametrize("batch,size", [(1, 8), (3, 8), (2, 16)])
def test_shapes(batch, size):
    model = tiny_unet()
    out = model(torch.randn(batch, 5, size, size), torch.randint(0, 1000, (batch,)))
    assert out.shape == (batch, 2, size, size)
    assert model(torch.randn(batch, 5, size, size), 10).shape == (batch, 2, size, size)


def test_zero_initialised_output():
    out = tiny_unet()(torch.randn(2, 5, 8, 8), torch.tensor([3, 4]))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("updown,scale_shift", [(True, False), (False, True)])
def test_gradients_and_round_trip(updown, scale_shift, tmp_path):
    model = perturb_zero_init(tiny_unet(resblock_updown=updown, scale_shift_norm=scale_shift, dropout=0.1))
    x, t = torch.randn(2, 5, 8, 8), torch.tensor([1, 700])
    assert_all_parameters_get_gradients(model.train(), lambda m: m(x, t))
    assert_save_load_round_trip(model, lambda m: m(x, t), tmp_path)


def test_eval_is_deterministic_and_dropout_is_active_in_training():
    model = perturb_zero_init(tiny_unet(dropout=0.5))
    x, t = torch.randn(2, 5, 8, 8), torch.tensor([5, 6])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), model(x, t), rtol=0, atol=0)
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x, t), model(x, t))


def test_output_depends_on_timestep():
    model = perturb_zero_init(tiny_unet()).eval()
    x = torch.randn(1, 5, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(model(x, 0), model(x, 999))


def test_timestep_embedding_closed_form():
    t = torch.tensor([0, 1, 17, 999])
    dim = 7
    emb = timestep_embedding(t, dim).double()
    for row, step in enumerate(t.tolist()):
        for i in range(3):
            w = 10000.0 ** (-i / 3)
            assert emb[row, i].item() == pytest.approx(math.cos(step * w), abs=1e-4)
            assert emb[row, 3 + i].item() == pytest.approx(math.sin(step * w), abs=1e-4)
        assert emb[row, 6] == 0


def test_attention_placement_and_heads():
    model = tiny_unet(channel_multipliers=(1, 2, 2), attention_resolutions=(4, 2), resolution=8)
    assert model.attention_sides == [4, 2]  # one res block per level, attention at 4 and 2 px
    heads = [m.num_heads for m in model.modules() if isinstance(m, MultiHeadAttnBlock)]
    assert heads and set(heads) == {2}
    model = tiny_unet(head_channels=4)
    assert {m.num_heads for m in model.modules() if isinstance(m, MultiHeadAttnBlock)} == {4}  # 16 ch / 4
    updown = [m for m in model.modules() if isinstance(m, TimestepResBlock) and (m.up or m.down)]
    assert len(updown) == 2  # one BigGAN-style down and one up block between the two levels


def test_invalid_arguments_and_inputs():
    with pytest.raises(ValueError, match="num_heads"):
        tiny_unet(num_heads=3)
    with pytest.raises(ValueError, match="norm_groups"):
        tiny_unet(norm_groups=3)
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        tiny_unet()(torch.randn(1, 4, 8, 8), 1)
    with pytest.raises(ValueError, match="divisible"):
        tiny_unet()(torch.randn(1, 5, 7, 8), 1)
    with pytest.raises(ValueError, match="t must be"):
        tiny_unet()(torch.randn(2, 5, 8, 8), torch.tensor([1, 2, 3]))


def test_dinar_preset_matches_dinars_code():
    """DINAR's inpainting/openaimodel.py and util.py (read from its code): GroupNorm with 8 groups, and
    preproc_input = 3x3 convs 3 -> 3 and 2 -> 2 on input channels -5:-2 and -2:."""
    with torch.device("meta"):
        model = DiffusionUNet()
    assert {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)} == {8}
    for conv, channels in ((model.preproc_rgb, 3), (model.preproc_mask, 2)):
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (channels, channels, (3, 3), (1, 1))
        assert conv.bias is not None
    # DINAR's attention_resolutions (8, 4, 2) are downsampling rates of its 64 px latent: 8, 16, 32 px
    assert sorted(set(model.attention_sides)) == [64 // 8, 64 // 4, 64 // 2]


def test_preproc_input_replaces_the_last_five_input_channels():
    torch.manual_seed(0)
    model = tiny_unet(in_channels=7, preproc_input=True)
    with torch.no_grad():
        for p in model.parameters():  # a non-trivial output despite the zero-initialised layers
            if not p.any():
                p.normal_(0, 0.1)
        for conv in (model.preproc_rgb, model.preproc_mask):
            conv.weight.zero_()
            conv.bias.zero_()
    x = torch.randn(2, 7, 8, 8)
    changed_tail, changed_head = x.clone(), x.clone()
    changed_tail[:, 2:] += 1.0
    changed_head[:, :2] += 1.0
    with torch.no_grad():
        out = model(x, 3)
        torch.testing.assert_close(model(changed_tail, 3), out)  # channels -5: only reach the net via preproc
        assert not torch.allclose(model(changed_head, 3), out)
    plain = tiny_unet(in_channels=7, preproc_input=False)
    assert plain.preproc_rgb is None
    with pytest.raises(ValueError, match="preproc_input"):
        tiny_unet(in_channels=4, preproc_input=True)


def test_dinar_preset_on_meta_device():
    with torch.device("meta"):
        model = DiffusionUNet()
        out = model(torch.empty(2, 13, 64, 64), torch.tensor([0, 999]))
    assert out.shape == (2, 6, 64, 64)
    # implementation notes section 4: 13 -> 6 channels, base 256, (1, 2, 3, 4), 2 residual blocks,
    # BigGAN-style up/down sampling, dropout 0.5 (paper), GroupNorm 8 groups and preproc_input (DINAR's code)
    args = model.config["init_args"]
    assert (model.in_channels, model.out_channels, args["base_channels"]) == (13, 6, 256)
    assert (list(args["channel_multipliers"]), args["num_res_blocks"]) == ([1, 2, 3, 4], 2)
    assert (args["resblock_updown"], args["dropout"], args["preproc_input"]) == (True, 0.5, True)
    assert {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)} == {8}
    assert model.attention_sides == [32, 32, 16, 16, 8, 8]
    n = count_parameters(model)
    assert abs(n - 390e6) / 390e6 < 0.02, f"{n / 1e6:.1f} M parameters, implementation notes say ~390 M"
    heads = {m.num_heads for m in model.modules() if isinstance(m, MultiHeadAttnBlock)}
    assert heads == {8}
