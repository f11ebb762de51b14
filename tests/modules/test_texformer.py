"""Texformer backbone: shapes, gradients, save/load, the query-branch cache, references."""
from __future__ import annotations

import math

import pytest
import torch

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.texformer import (
    CrossAttentionUnit,
    TexformerBackbone,
    coordinate_map,
    sine_position_encoding,
)

TINY = dict(feat_dim=16, num_heads=4, uv_size=(16, 16))


def make_inputs(batch: int, height: int = 16, width: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=g) * 2 - 1
    parts = torch.randint(0, 8, (batch, height, width), generator=g)
    return image, parts


def tiny(**overrides) -> TexformerBackbone:
    torch.manual_seed(0)
    return TexformerBackbone(**{**TINY, **overrides})


class NaiveQuery(TexformerBackbone):
    """Runs the query branch on B copies, the way a per-sample implementation would."""

    def _query_tokens(self, batch: int):
        return self._compute_query_tokens(batch)


# ------------------------------------------------------------------ references
def test_sine_position_encoding_matches_formula():
    h, w, c, temp = 3, 5, 8, 10000.0
    pos = sine_position_encoding(h, w, c, temp, dtype=torch.float64)
    assert pos.shape == (1, c, h, w)
    half = c // 2
    for y in range(h):
        for x in range(w):
            for k in range(half):
                freq = temp ** (2 * (k // 2) / half)
                ey = (y + 1) / (h + 1e-6) * 2 * math.pi / freq
                ex = (x + 1) / (w + 1e-6) * 2 * math.pi / freq
                trig = math.sin if k % 2 == 0 else math.cos
                assert pos[0, k, y, x].item() == pytest.approx(trig(ey), abs=1e-12)
                assert pos[0, half + k, y, x].item() == pytest.approx(trig(ex), abs=1e-12)


def _reference_attention(unit: CrossAttentionUnit, q_feat, k_feat, v_feat):
    """Per-head einsum attention written from the definition, float64."""
    heads, d = unit.num_heads, unit.head_dim
    c, hq, wq = q_feat.shape[1:]
    pos_q = sine_position_encoding(hq, wq, c, dtype=q_feat.dtype)
    pos_k = sine_position_encoding(*k_feat.shape[-2:], c, dtype=k_feat.dtype)

    def proj(conv, x):
        return torch.einsum("oc,bcn->bon", conv.weight[:, :, 0, 0], x.flatten(2))

    q = proj(unit.to_q, q_feat + pos_q).view(q_feat.shape[0], heads, d, -1)
    k = proj(unit.to_k, k_feat + pos_k).view(k_feat.shape[0], heads, d, -1)
    v = proj(unit.to_v, v_feat).view(k_feat.shape[0], heads, d, -1)
    n = k.shape[-1]
    if unit.attention == "softmax":
        scale = n if unit.softmax_scale == "num_keys" else d
        logits = torch.einsum("bhdq,bhdk->bhqk", q.expand(k.shape[0], -1, -1, -1), k) / math.sqrt(scale)
        out = torch.einsum("bhqk,bhdk->bhdq", logits.softmax(-1), v)
    else:
        out = torch.einsum("bhdq,bhek,bhdk->bheq", q.expand(k.shape[0], -1, -1, -1), v, k) / n
    out = out.reshape(k.shape[0], c, hq, wq)
    out = unit.proj(out)
    return unit.norm(out + unit.ffn(out))


@pytest.mark.parametrize("attention,scale", [("softmax", "num_keys"), ("softmax", "head_dim"),
                                             ("linear", "num_keys")])
@pytest.mark.parametrize("query_batch", [1, 3])
def test_cross_attention_matches_einsum_reference(attention, scale, query_batch):
    torch.manual_seed(0)
    unit = CrossAttentionUnit(16, 4, attention, scale).double().eval()
    with torch.no_grad():
        unit.norm.running_mean.normal_()
        unit.norm.running_var.uniform_(0.5, 2)
    q = torch.randn(query_batch, 16, 4, 6, dtype=torch.float64)
    k, v = torch.randn(2, 3, 16, 5, 3, dtype=torch.float64)
    with torch.no_grad():
        got = unit(q, k, v)
        want = _reference_attention(unit, q, k, v)
    assert got.shape == (3, 16, 4, 6)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


# ---------------------------------------------------------------- the backbone
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("uv,img", [((16, 16), (16, 8)), ((8, 12), (12, 8))])
def test_output_shapes(batch, uv, img):
    model = tiny(uv_size=uv)
    out = model(*make_inputs(batch, *img))
    assert out.flow.shape == (batch, 2, *uv)
    assert out.rgb.shape == (batch, 3, *uv)
    assert out.mask.shape == (batch, 1, *uv)
    assert out.features.shape == (batch, 16, *uv)
    for t in (out.flow, out.rgb, out.mask):
        assert torch.isfinite(t).all()
    assert out.flow.abs().max() <= 1 and out.rgb.abs().max() <= 1
    assert 0 <= out.mask.min() and out.mask.max() <= 1
    assert out.channels().shape == (batch, 6, *uv)


def test_image_size_is_free_at_call_time():
    model = tiny()
    out = model(*make_inputs(2, 8, 12))
    assert out.flow.shape == (2, 2, 16, 16)


def test_every_parameter_gets_a_gradient():
    model = tiny().train()
    image, parts = make_inputs(2)
    assert_all_parameters_get_gradients(model, lambda m: m(image, parts))


def test_save_load_round_trip_keeps_query_code(tmp_path):
    model = tiny()
    model.set_query_code(torch.rand(3, 16, 16) * 2 - 1)
    image, parts = make_inputs(2)
    loaded = assert_save_load_round_trip(model, lambda m: m(image, parts), tmp_path)
    torch.testing.assert_close(loaded.query_code, model.query_code, atol=0, rtol=0)


def test_paper_size_parameter_count():
    count = sum(p.numel() for p in TexformerBackbone().parameters())
    assert 7.3e6 < count < 7.8e6  # Texformer ~7.5 M (paper Table 2: 7.6 M)


# ------------------------------------------------------------ query branch
def test_eval_batch_one_query_equals_naive_and_follows_weight_changes():
    model = tiny().eval()
    naive = NaiveQuery(**TINY)
    naive.load_state_dict(model.state_dict())
    naive.eval()
    image, parts = make_inputs(3)
    with torch.no_grad():
        first = model(image, parts)
        for a, d in zip(first.channels(), naive(image, parts).channels()):
            torch.testing.assert_close(a, d, atol=1e-6, rtol=0)
        model.query_encoder.inc[0][0].weight.mul_(1.5)  # in place, like an optimiser step or an EMA swap
        naive.load_state_dict(model.state_dict())
        stepped = model(image, parts)
        assert not torch.equal(first.flow, stepped.flow)  # nothing stale is reused
        torch.testing.assert_close(stepped.flow, naive(image, parts).flow, atol=1e-6, rtol=0)


def test_training_batch_one_query_matches_per_sample_query():
    """The docstring's claim: forward and gradients equal those of B identical copies."""
    model = tiny().train()
    naive = NaiveQuery(**TINY).train()
    naive.load_state_dict(model.state_dict())
    image, parts = make_inputs(3)
    out_a, out_b = model(image, parts), naive(image, parts)
    torch.testing.assert_close(out_a.channels(), out_b.channels(), atol=1e-5, rtol=0)
    out_a.channels().square().mean().backward()
    out_b.channels().square().mean().backward()
    for (name, pa), pb in zip(model.named_parameters(), naive.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=1e-4, msg=name)


# ------------------------------------------------------------------- inputs
def test_key_and_value_inputs():
    image, parts = make_inputs(2)
    key = TexformerBackbone.make_key_input(image, parts, 7)
    assert key.shape == (2, 4, 16, 8)
    torch.testing.assert_close(key[:, 3], parts.float() / 7 * 2 - 1)
    yx, xy = coordinate_map(1, 3, 5, "yx"), coordinate_map(1, 3, 5, "xy")
    assert torch.equal(yx[0, 0, :, 0], torch.linspace(-1, 1, 3))
    assert torch.equal(yx[0, 1, 0], torch.linspace(-1, 1, 5))
    assert torch.equal(yx.flip(1), xy)


def test_bad_inputs_raise_naming_the_shape():
    model = tiny()
    image, parts = make_inputs(2)
    with pytest.raises(ValueError, match=r"\(2, 3, 15, 8\)"):
        model(torch.zeros(2, 3, 15, 8), torch.zeros(2, 15, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(2, 4, 16, 8\)"):
        model(torch.zeros(2, 4, 16, 8), parts)
    with pytest.raises(ValueError, match=r"\(2, 16, 4\)"):
        model(image, parts[..., :4])
    with pytest.raises(ValueError, match="integer"):
        model(image, parts.float())
    with pytest.raises(ValueError, match=r"\[0, 7\]"):
        model(image, parts + 1)
    with pytest.raises(ValueError, match=r"\(3, 16, 16\)"):
        model.set_query_code(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.set_query_code(torch.full((3, 16, 16), 2.0))


@pytest.mark.parametrize("kwargs", [dict(uv_size=(10, 16)), dict(coord_order="zx"),
                                    dict(softmax_scale="sqrt"), dict(feat_dim=18),
                                    dict(query_code_init="smpl")])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        TexformerBackbone(**{**TINY, **kwargs})
