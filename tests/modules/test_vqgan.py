"""VQGAN (encoder, decoder, vector quantiser) and the PatchGAN discriminator."""
from __future__ import annotations

import pytest
import torch

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.discriminator import PatchDiscriminator
from zoo.modules.quantize import VectorQuantizer
from zoo.modules.vqgan import VQGAN, Decoder, Encoder, count_parameters

TINY = dict(in_channels=5, base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1,
            attention_resolutions=(8,), mid_attention=True, resolution=16, latent_channels=4,
            num_codes=32, code_dim=3, norm_groups=4)


def tiny_vqgan(**overrides) -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(**{**TINY, **overrides})


@pytest.mark.parametrize("batch,size", [(1, 16), (3, 8), (2, 24)])
def test_vqgan_shapes(batch, size):
    model = tiny_vqgan()
    out = model(torch.randn(batch, 5, size, size))
    assert out.reconstruction.shape == (batch, 5, size, size)
    assert out.latents.shape == (batch, 3, size // 2, size // 2)
    assert out.indices.shape == (batch, size // 2, size // 2) and out.indices.dtype == torch.long
    assert torch.isfinite(out.reconstruction).all()
    assert model.encode(torch.randn(batch, 5, size, size)).shape == (batch, 3, size // 2, size // 2)


def test_vqgan_out_channels_and_attention_placement():
    model = tiny_vqgan(out_channels=2, attention_resolutions=(16,), mid_attention=False, output_heads=False)
    assert model(torch.randn(2, 5, 16, 16)).reconstruction.shape == (2, 2, 16, 16)
    assert len(model.encoder.levels[0].attns) == 1 and len(model.encoder.levels[1].attns) == 0
    assert len(model.decoder.levels[-1].attns) == 2  # finest decoder level has num_res_blocks + 1 blocks
    assert isinstance(model.encoder.mid_attn, torch.nn.Identity)


def test_vqgan_gradients_and_round_trip(tmp_path):
    model = tiny_vqgan()
    x = torch.randn(2, 5, 16, 16)
    assert_all_parameters_get_gradients(model.train(), lambda m: m(x))
    assert_save_load_round_trip(model, lambda m: m(x), tmp_path)


@pytest.mark.parametrize("cls", [Encoder, Decoder])
def test_encoder_decoder_round_trip(cls, tmp_path):
    model = cls(base_channels=8, channel_multipliers=[1, 2], num_res_blocks=1, norm_groups=4, resolution=16,
                latent_channels=3, **({"in_channels": 2} if cls is Encoder else {"out_channels": 2, "output_heads": False}))
    x = torch.randn(2, 2 if cls is Encoder else 3, 8, 8)
    assert_save_load_round_trip(model, lambda m: m(x), tmp_path)


def test_quantizer_against_brute_force_float64():
    torch.manual_seed(1)
    vq = VectorQuantizer(num_codes=16, code_dim=3, beta=0.25)
    with torch.no_grad():
        vq.embedding.weight.normal_()
    z = torch.randn(2, 3, 4, 5, requires_grad=True)
    out = vq(z)
    codes = vq.embedding.weight.double()
    for b in range(2):
        for i in range(4):
            for j in range(5):
                d = ((codes - z[b, :, i, j].double()) ** 2).sum(1)
                assert out.indices[b, i, j] == d.argmin()
    e = codes[out.indices].permute(0, 3, 1, 2)
    mse = ((e - z.double()) ** 2).mean()
    torch.testing.assert_close(out.codebook_loss.double(), mse, rtol=1e-5, atol=0)
    torch.testing.assert_close(out.commitment_loss.double(), mse, rtol=1e-5, atol=0)
    torch.testing.assert_close(out.loss.double(), 1.25 * mse, rtol=1e-5, atol=0)
    torch.testing.assert_close(out.z_q.double(), e, rtol=0, atol=1e-6)
    # straight-through: d z_q / d z is the identity
    (grad,) = torch.autograd.grad((out.z_q * torch.arange(60.0).view(1, 3, 4, 5)).sum(), z)
    torch.testing.assert_close(grad, torch.arange(60.0).view(1, 3, 4, 5).expand(2, -1, -1, -1))
    # statistics against a hand count
    counts = torch.bincount(out.indices.flatten(), minlength=16).double()
    p = counts / counts.sum()
    p = p[p > 0]
    torch.testing.assert_close(out.perplexity.double(), torch.exp(-(p * p.log()).sum()), rtol=1e-5, atol=0)
    assert out.usage.item() == pytest.approx((counts > 0).double().mean().item())


def test_dead_code_restart():
    vq = VectorQuantizer(num_codes=8, code_dim=2).train()
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.arange(16.0).view(8, 2) * 10)
    z = torch.zeros(1, 2, 3, 3)  # all positions pick code 0
    vq(z)
    assert vq.usage_counts[0] == 9 and vq.usage_counts[1:].sum() == 0
    candidates = torch.randn(1, 2, 3, 3) + 100
    before = vq.embedding.weight.detach().clone()
    restarted = vq.restart_dead_codes(candidates, generator=torch.Generator().manual_seed(0))
    assert restarted == 7
    assert torch.equal(vq.embedding.weight[0], before[0])
    flat = candidates.permute(0, 2, 3, 1).reshape(-1, 2)
    for row in vq.embedding.weight[1:]:
        assert (flat == row).all(1).any(), "restarted codes come from the candidates"
    assert vq.usage_counts.sum() == 0
    vq.eval()(z)
    assert vq.usage_counts.sum() == 0, "eval forwards do not count usage"


def test_decode_indices_matches_decode_of_quantised():
    model = tiny_vqgan().eval()
    x = torch.randn(2, 5, 16, 16)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(model.decode_indices(out.indices), out.reconstruction)
        torch.testing.assert_close(model.decode(out.latents, quantize=True), out.reconstruction)


def test_invalid_arguments_and_inputs():
    with pytest.raises(ValueError, match="norm_groups"):
        VQGAN(**{**TINY, "norm_groups": 3})
    with pytest.raises(ValueError, match="resolution"):
        VQGAN(**{**TINY, "resolution": 15})
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        tiny_vqgan()(torch.randn(1, 4, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        tiny_vqgan()(torch.randn(1, 5, 15, 16))


def test_dinar_preset_forward():
    with torch.device("meta"):
        model = VQGAN().eval()
        out = model(torch.empty(1, 21, 256, 256))
    # implementation notes section 4 (DINAR's VQGAN): 21 channels in / out at 256, base 64, (1, 2, 4),
    # 2 residual blocks, attention only in the middle block, latent 6, 8192 codes, beta 0.25, 16 groups
    assert (model.in_channels, model.out_channels, model.code_dim) == (21, 21, 6)
    args = model.config["init_args"]
    assert (args["base_channels"], list(args["channel_multipliers"]), args["num_res_blocks"]) == (64, [1, 2, 4], 2)
    assert (list(args["attention_resolutions"]), args["mid_attention"]) == ([], True)
    assert (args["beta"], args["norm_groups"]) == (0.25, 16)
    assert {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)} == {16}
    assert model.quantizer.embedding.weight.shape == (8192, 6)
    assert 10e6 < count_parameters(model) < 20e6
    assert out.reconstruction.shape == (1, 21, 256, 256)
    assert out.latents.shape == (1, 6, 64, 64)


def test_dinar_preset_matches_dinars_code():
    """DINAR's compress_models (read from its code): LeakyReLU() (slope 0.01) everywhere, GroupNorm 16,
    and decoder heads BatchNorm -> LeakyReLU -> 3x3 conv on output channels -5:-2 and -2:."""
    with torch.device("meta"):
        model = VQGAN()
    acts = [m for m in model.modules() if isinstance(m, (torch.nn.LeakyReLU, torch.nn.SiLU, torch.nn.ReLU))]
    assert acts and all(type(m) is torch.nn.LeakyReLU and m.negative_slope == 0.01 for m in acts)
    assert {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)} == {16}
    for head, channels in ((model.decoder.rgb_head, 3), (model.decoder.mask_head, 2)):
        norm, act, conv = head
        assert type(norm) is torch.nn.BatchNorm2d and norm.num_features == channels
        assert type(act) is torch.nn.LeakyReLU and act.negative_slope == 0.01
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (channels, channels, (3, 3), (1, 1))


def test_decoder_heads_replace_the_rgb_and_mask_channels():
    model = tiny_vqgan(out_channels=7).eval()
    z = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = model.decode(z)
        for head, value in ((model.decoder.rgb_head, 7.0), (model.decoder.mask_head, -3.0)):
            head[-1].weight.zero_()
            head[-1].bias.fill_(value)
        after = model.decode(z)
    torch.testing.assert_close(after[:, :2], before[:, :2])  # channels before -5 do not pass the heads
    assert after[:, 2:5].eq(7.0).all() and after[:, 5:].eq(-3.0).all()
    with pytest.raises(ValueError, match="output_heads"):
        tiny_vqgan(out_channels=4)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_discriminator(norm, tmp_path):
    torch.manual_seed(0)
    disc = PatchDiscriminator(in_channels=5, base_channels=8, n_layers=2, norm=norm, norm_groups=4)
    for batch, size in [(2, 16), (3, 32)]:
        assert disc(torch.randn(batch, 5, size, size)).shape == (batch, 1, size // 4 - 2, size // 4 - 2)
    x = torch.randn(4, 5, 16, 16)
    assert_all_parameters_get_gradients(disc.train(), lambda m: m(x))
    assert_save_load_round_trip(disc, lambda m: m(x), tmp_path)


def test_discriminator_validation():
    with pytest.raises(ValueError, match="norm"):
        PatchDiscriminator(norm="instance")
    with pytest.raises(ValueError, match="below"):
        PatchDiscriminator(in_channels=3, base_channels=8, n_layers=3)(torch.randn(1, 3, 16, 16))
