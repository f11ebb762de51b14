"""Texformer checkpoint conversion: a checkpoint in the reference layout (key names of
xuxy09/Texformer), written by a small re-implementation of that network, converts into a
TexformerBackbone that computes the same outputs in eval mode, the conv biases folded into the
BatchNorm running means."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.modules.texformer import TexformerBackbone
from zoo.pretrained import load_pretrained
from zoo.pretrained.convert import convert_texformer_state_dict
from zoo.pretrained.convert import texformer_from_original_checkpoint as load_texformer_checkpoint

FEAT, HEADS, UV, H, W = 8, 2, (16, 16), 16, 8


# --------------------------------------------------------------------- reference layout, re-implemented
class Block(nn.Module):
    """A reference block: its layers in a Sequential called `conv` (keys `<block>.conv.<i>.*`)."""

    def __init__(self, cin: int, cout: int, kind: str):
        super().__init__()
        cbr = lambda i, o, s=1: [nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o), nn.ReLU()]  # noqa: E731
        layers = {"single": cbr(cin, cout), "double": cbr(cin, cout) + cbr(cout, cout),
                  "down": cbr(cin, cout, 2) + cbr(cout, cout),
                  "up": [nn.Upsample(scale_factor=2, mode="nearest")] + cbr(cin, cout) + cbr(cout, cout)}[kind]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return self.conv(x)


class RefEncoder(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv_in = Block(cin, FEAT, "single")
        self.conv1, self.conv2 = Block(FEAT, FEAT, "down"), Block(FEAT, FEAT, "down")
        self.conv3 = Block(FEAT, FEAT, "double")
        self.conv4, self.conv5 = Block(FEAT, FEAT, "up"), Block(FEAT, FEAT, "up")
        self.conv6 = Block(FEAT, FEAT, "double")

    def forward(self, x):
        f0 = self.conv_in(x)
        f1 = self.conv1(f0)
        f2 = self.conv2(f1)
        quarter = self.conv3(f2) + f2
        half = self.conv4(quarter) + f1
        full = self.conv6(self.conv5(half) + f0)
        return quarter, half, full


def detr_sine(c: int, h: int, w: int) -> torch.Tensor:
    """DETR's normalised sine encoding written from its definition: rows then columns, each
    channel i of a half uses frequency 10000^(2 floor(i/2) / (c/2)), sin on even i, cos on odd i."""
    half = c // 2
    out = torch.zeros(c, h, w, dtype=torch.float64)
    for axis, n in ((0, h), (1, w)):
        pos = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1e-6) * 2 * math.pi
        for i in range(half):
            arg = pos / 10000 ** (2 * (i // 2) / half)
            value = arg.sin() if i % 2 == 0 else arg.cos()
            out[axis * half + i] = value[:, None].expand(h, w) if axis == 0 else value[None, :].expand(h, w)
    return out[None]


class RefAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.w_qs, self.w_ks = nn.Conv2d(FEAT, FEAT, 1, bias=False), nn.Conv2d(FEAT, FEAT, 1, bias=False)
        self.w_vs, self.fc = nn.Conv2d(FEAT, FEAT, 1, bias=False), nn.Conv2d(FEAT, FEAT, 1, bias=False)


class RefUnit(nn.Module):
    def __init__(self, softmax: bool):
        super().__init__()
        self.softmax = softmax
        self.attn = RefAttention()
        self.linear1, self.linear2 = nn.Conv2d(FEAT, FEAT, 1), nn.Conv2d(FEAT, FEAT, 1)
        self.norm = nn.BatchNorm2d(FEAT)

    def forward(self, q, k, v):
        b, (h, w) = k.shape[0], q.shape[-2:]
        split = lambda x: x.reshape(x.shape[0], HEADS, FEAT // HEADS, -1)  # noqa: E731
        pos = lambda x: detr_sine(FEAT, *x.shape[-2:]).to(x)  # noqa: E731
        qh = split(self.attn.w_qs(q + pos(q))).expand(b, -1, -1, -1)
        kh, vh = split(self.attn.w_ks(k + pos(k))), split(self.attn.w_vs(v))
        n = kh.shape[-1]
        if self.softmax:
            weights = torch.softmax(qh.transpose(-1, -2) @ kh / math.sqrt(n), dim=-1)  # (b, heads, Nq, Nk)
            out = weights @ vh.transpose(-1, -2)
        else:
            out = qh.transpose(-1, -2) @ (kh @ vh.transpose(-1, -2) / n)
        out = self.attn.fc(out.transpose(-1, -2).reshape(b, FEAT, h, w))
        return self.norm(out + self.linear2(F.relu(self.linear1(out))))


class RefTexformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.unet_q, self.unet_k, self.unet_v = RefEncoder(3), RefEncoder(4), RefEncoder(5)
        self.trans_dec = nn.ModuleList([None, None, None, RefUnit(True), RefUnit(False), RefUnit(False)])
        self.conv0 = Block(FEAT, FEAT, "double")
        self.conv1, self.conv2 = Block(FEAT, FEAT, "down"), Block(FEAT, FEAT, "down")
        self.conv3 = Block(FEAT, FEAT, "double")
        self.conv4, self.conv5 = Block(FEAT, FEAT, "up"), Block(FEAT, FEAT, "up")
        self.conv6 = nn.Sequential(Block(FEAT, FEAT, "single"), nn.Conv2d(FEAT, 6, 3, 1, 1))

    def forward(self, q, k, v):
        a = [self.trans_dec[3 + i](qi, ki, vi) for i, (qi, ki, vi) in enumerate(zip(self.unet_q(q), self.unet_k(k),
                                                                                     self.unet_v(v)))]
        f0 = self.conv0(a[2])
        f1 = self.conv1(f0) + a[1]
        f2 = self.conv2(f1) + a[0]
        f3 = self.conv3(f2) + a[0] + f2
        f4 = self.conv4(f3) + a[1] + f1
        out = self.conv6(self.conv5(f4) + a[2] + f0)
        return torch.tanh(out[:, :2]), torch.tanh(out[:, 2:5]), torch.sigmoid(out[:, 5:])


def randomized_reference(seed: int = 0) -> RefTexformer:
    torch.manual_seed(seed)
    ref = RefTexformer()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return ref.eval()


def reference_outputs(ref: RefTexformer, code: torch.Tensor, image: torch.Tensor, parts: torch.Tensor):
    b = image.shape[0]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, H, dtype=image.dtype), torch.linspace(-1, 1, W, dtype=image.dtype),
                            indexing="ij")
    key = torch.cat([image, parts[:, None].to(image.dtype) / 7 * 2 - 1], 1)
    value = torch.cat([torch.stack([ys, xs])[None].expand(b, -1, -1, -1), image], 1)
    with torch.no_grad():
        return ref(code[None], key, value)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    ref = randomized_reference()
    path = tmp_path_factory.mktemp("texformer") / "texformer_ep500.pt"
    torch.save(ref.state_dict(), path)
    return ref, path


def inputs(batch: int = 2):
    g = torch.Generator().manual_seed(1)
    code = torch.rand(3, *UV, generator=g, dtype=torch.float64) * 2 - 1
    image = torch.rand(batch, 3, H, W, generator=g, dtype=torch.float64) * 2 - 1
    return code, image, torch.randint(0, 8, (batch, H, W), generator=g)


def test_converted_checkpoint_computes_the_reference_outputs(checkpoint, tmp_path):
    from zoo.pretrained.convert import main as convert

    ref, path = checkpoint
    folder = convert(["texformer", str(path), "--output", str(tmp_path / "tf"), "--num-heads", str(HEADS),
                      "--uv-size", *map(str, UV)])
    backbone = load_pretrained(folder)
    assert isinstance(backbone, TexformerBackbone) and backbone.feat_dim == FEAT
    code, image, parts = inputs()
    backbone = backbone.double().eval()
    backbone.set_query_code(code)
    with torch.no_grad():
        out = backbone(image, parts)
    flow, rgb, mask = reference_outputs(ref.double(), code, image, parts)
    torch.testing.assert_close(out.flow, flow, atol=1e-7, rtol=1e-6)  # float32 checkpoint, float32 fold
    torch.testing.assert_close(out.rgb, rgb, atol=1e-7, rtol=1e-6)  # float32 checkpoint, float32 fold
    torch.testing.assert_close(out.mask, mask, atol=1e-7, rtol=1e-6)  # float32 checkpoint, float32 fold
    ref.float()


def test_the_biases_are_folded_not_dropped(checkpoint, tmp_path):
    ref, path = checkpoint
    state = torch.load(path, weights_only=True)
    converted = convert_texformer_state_dict(state)
    torch.testing.assert_close(converted["key_encoder.up1.0.1.running_mean"],
                               state["unet_k.conv4.conv.2.running_mean"] - state["unet_k.conv4.conv.1.bias"])
    conv_biases = [k for k in state if k.endswith(".bias") and ".conv." in k and state[k[:-4] + "weight"].dim() == 4]
    assert len(conv_biases) == 4 * 13  # every conv that a BatchNorm follows: 13 per encoder and in the decoder
    # Dropping the biases without folding them is not the same network.
    torch.save({k: torch.zeros_like(v) if k in conv_biases else v for k, v in state.items()}, tmp_path / "nobias.pt")
    dropped = load_texformer_checkpoint(tmp_path / "nobias.pt", num_heads=HEADS, uv_size=UV).double().eval()
    code, image, parts = inputs(1)
    dropped.set_query_code(code)
    flow, _, _ = reference_outputs(ref.double(), code, image, parts)
    ref.float()
    with torch.no_grad():
        assert (dropped(image, parts).flow - flow).abs().max() > 1e-3


def test_bad_checkpoints_raise_clear_errors(checkpoint, tmp_path):
    _, path = checkpoint
    with pytest.raises(FileNotFoundError, match="texformer_ep500.pt"):
        load_texformer_checkpoint(tmp_path / "missing.pt")
    state = torch.load(path, weights_only=True)
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(KeyError, match="extra.weight"):
        load_texformer_checkpoint(tmp_path / "extra.pt", num_heads=HEADS, uv_size=UV)
    del state["trans_dec.4.norm.running_var"]
    torch.save(state, tmp_path / "short.pt")
    with pytest.raises(KeyError, match="missing"):
        load_texformer_checkpoint(tmp_path / "short.pt", num_heads=HEADS, uv_size=UV)
    module_state = {f"module.{k}": v for k, v in torch.load(path, weights_only=True).items()}  # DataParallel
    assert set(convert_texformer_state_dict(module_state)) == set(convert_texformer_state_dict(
        torch.load(path, weights_only=True)))
