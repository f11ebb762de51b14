"""Deformable sampling conv (vs brute force and torchvision), refiners, mask fusion, paper config."""
from __future__ import annotations

import pytest
import torch

from tests.module_checks import assert_all_parameters_get_gradients, assert_save_load_round_trip
from zoo.modules.fusion import MaskFusion
from zoo.modules.refiners import (
    ConvRefiner,
    DeformableRefiner,
    DeformableSampleConv2d,
)
from zoo.modules.refinetex import refinetex_paper_config
from zoo.modules.texformer import TexformerBackbone, TexturePrediction, split_prediction
from zoo.pretrained.config import import_class

try:  # torchvision's compiled ops are missing when its build does not match torch's
    from torchvision.ops import deform_conv2d

    deform_conv2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 18, 3, 3), torch.zeros(1, 1, 3, 3), padding=1)
    TORCHVISION_SKIP = ""
except Exception as err:  # noqa: BLE001 - any failure to load the op means "no reference here"
    deform_conv2d = None
    TORCHVISION_SKIP = f"torchvision.ops.deform_conv2d unusable here: {type(err).__name__}: {err}"[:300]


# ------------------------------------------------------------- references
def bilinear_zero_padded(image: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup at pixel coordinates (B, Ho, Wo), corners outside the image read 0 (the
    deformable-conv definition), by explicit gathers of the four neighbours."""
    b, c, h, w = image.shape
    y0, x0 = y.floor(), x.floor()
    out = image.new_zeros(b, c, *y.shape[1:])
    flat = image.flatten(2)
    for dy, wy in ((0, 1 - (y - y0)), (1, y - y0)):
        for dx, wx in ((0, 1 - (x - x0)), (1, x - x0)):
            yy, xx = y0 + dy, x0 + dx
            valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long().flatten(1)
            vals = flat.gather(2, idx[:, None].expand(-1, c, -1)).view_as(out)
            out = out + vals * (wy * wx * valid)[:, None]
    return out


def brute_force_deform_conv(image, pix_y, pix_x, offset, weight, bias, dilation=1):
    """sum over taps (i, j) and channels of weight * image(p + tap + offset), p in pixels."""
    k = weight.shape[-1]
    out = 0
    for i in range(k):
        for j in range(k):
            t = i * k + j
            y = pix_y + (i - (k - 1) / 2) * dilation + offset[:, 2 * t]
            x = pix_x + (j - (k - 1) / 2) * dilation + offset[:, 2 * t + 1]
            out = out + torch.einsum("oc,bchw->bohw", weight[:, :, i, j], bilinear_zero_padded(image, y, x))
    return out + bias.view(1, -1, 1, 1)


def identity_grid(b, h, w, align_corners=False, dtype=torch.float32):
    """Normalised (x, y) grid at pixel centres and the same centres in pixels."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    if align_corners:
        gx, gy = 2 * xs / (w - 1) - 1, 2 * ys / (h - 1) - 1
    else:
        gx, gy = (2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1
    grid = torch.stack([gx, gy], dim=-1).expand(b, h, w, 2)
    return grid, ys.expand(b, h, w), xs.expand(b, h, w)


def random_case(dtype, b=2, c=3, o=4, h=7, w=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    offset = torch.randn(b, 2 * k * k, h, w, generator=g, dtype=dtype) * 2
    far = torch.rand(b, 2 * k * k, h, w, generator=g, dtype=dtype) < 0.2  # well outside the image
    offset = torch.where(far, offset.sign() * (h + 1.5), offset)
    weight = torch.randn(o, c, k, k, generator=g, dtype=dtype)
    bias = torch.randn(o, generator=g, dtype=dtype)
    return image, offset, weight, bias


def make_layer(weight, bias, dilation=1, align_corners=False):
    o, c, k, _ = weight.shape
    layer = DeformableSampleConv2d(c, o, k, dilation, align_corners=align_corners).to(weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


# ------------------------------------------------------------ deformable conv
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("align_corners", [False, True])
def test_deformable_conv_matches_brute_force(dtype, tol, dilation, align_corners):
    image, offset, weight, bias = random_case(dtype)
    grid, py, px = identity_grid(2, 7, 5, align_corners, dtype)
    got = make_layer(weight, bias, dilation, align_corners)(image, grid, offset)
    want = brute_force_deform_conv(image, py, px, offset, weight, bias, dilation)
    assert (got - want).abs().max() < tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_deformable_conv_changes_size_like_brute_force(dtype):
    """Output grid 6x9 over a 7x5 input: the case torchvision cannot do."""
    image, _, weight, bias = random_case(dtype)
    g = torch.Generator().manual_seed(1)
    grid = (torch.rand(2, 6, 9, 2, generator=g, dtype=dtype) * 2.4 - 1.2)
    offset = torch.randn(2, 18, 6, 9, generator=g, dtype=dtype)
    got = make_layer(weight, bias)(image, grid, offset)
    px, py = (grid[..., 0] + 1) * 5 / 2 - 0.5, (grid[..., 1] + 1) * 7 / 2 - 0.5
    want = brute_force_deform_conv(image, py, px, offset, weight, bias)
    assert got.shape == (2, 4, 6, 9)
    assert (got - want).abs().max() < (1e-4 if dtype == torch.float32 else 1e-10)


@pytest.mark.skipif(deform_conv2d is None, reason=TORCHVISION_SKIP or "torchvision available")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_deformable_conv_matches_torchvision(dtype, tol, dilation):
    image, offset, weight, bias = random_case(dtype)
    grid, _, _ = identity_grid(2, 7, 5, False, dtype)
    got = make_layer(weight, bias, dilation)(image, grid, offset)
    want = deform_conv2d(image, offset, weight, bias, padding=dilation, dilation=dilation)
    assert (got - want).abs().max() < tol


def test_deformable_conv_gradients_and_round_trip(tmp_path):
    torch.manual_seed(0)
    layer = DeformableSampleConv2d(3, 4)
    image = torch.randn(2, 3, 6, 4)
    grid = torch.rand(2, 5, 5, 2) * 2 - 1
    offset = torch.randn(2, 18, 5, 5, requires_grad=True)
    assert_all_parameters_get_gradients(layer, lambda m: m(image, grid, offset))
    assert offset.grad is not None and offset.grad.abs().sum() > 0
    assert_save_load_round_trip(layer, lambda m: m(image, grid, offset), tmp_path)


def test_deformable_conv_bad_shapes():
    layer = DeformableSampleConv2d(3, 4)
    image, grid = torch.zeros(2, 3, 6, 4), torch.zeros(2, 5, 5, 2)
    with pytest.raises(ValueError, match=r"\(2, 18, 5, 5\).*\(2, 8, 5, 5\)"):
        layer(image, grid, torch.zeros(2, 8, 5, 5))
    with pytest.raises(ValueError, match=r"\(2, 5, 5, 3\)"):
        layer(image, torch.zeros(2, 5, 5, 3), torch.zeros(2, 18, 5, 5))
    with pytest.raises(ValueError, match=r"\(2, 2, 6, 4\)"):
        layer(torch.zeros(2, 2, 6, 4), grid, torch.zeros(2, 18, 5, 5))
    with pytest.raises(ValueError, match="odd"):
        DeformableSampleConv2d(3, 4, kernel_size=2)


# ------------------------------------------------------------------ refiners
def backbone_like(batch, uv=(16, 16), feat=16, seed=0) -> TexturePrediction:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(batch, 6, *uv, generator=g)
    return TexturePrediction(flow=raw[:, :2].tanh(), rgb=raw[:, 2:5].tanh(), mask=raw[:, 5:].sigmoid(),
                             features=torch.randn(batch, feat, *uv, generator=g))


def key_image(batch, h=16, w=8, seed=1):
    return torch.rand(batch, 4, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


REFINERS = [
    (DeformableRefiner, dict(hidden_channels=16)),
    (DeformableRefiner, dict(hidden_channels=16, offset_source="prediction")),
    (DeformableRefiner, dict(hidden_channels=16, offset_source="features", feature_channels=16)),
    (ConvRefiner, dict(hidden_channels=16)),
]


@pytest.mark.parametrize("cls,kwargs", REFINERS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("uv,img", [((16, 16), (16, 8)), ((8, 12), (12, 8))])
def test_refiner_shapes(cls, kwargs, batch, uv, img):
    torch.manual_seed(0)
    out = cls(**kwargs)(key_image(batch, *img), backbone_like(batch, uv))
    assert out.flow.shape == (batch, 2, *uv) and out.rgb.shape == (batch, 3, *uv)
    assert out.mask.shape == (batch, 1, *uv) and out.features.shape == (batch, 16, *uv)
    assert all(torch.isfinite(t).all() for t in (out.flow, out.rgb, out.mask))
    if cls is DeformableRefiner:
        assert out.offsets.shape == (batch, 18, *uv)


@pytest.mark.parametrize("cls,kwargs", REFINERS)
def test_refiner_gradients_and_round_trip(cls, kwargs, tmp_path):
    torch.manual_seed(0)
    model = cls(**kwargs).train()
    image, pred = key_image(2), backbone_like(2)
    assert_all_parameters_get_gradients(model, lambda m: m(image, pred))
    assert_save_load_round_trip(model, lambda m: m(image, pred), tmp_path)


def test_deformable_refiner_starts_at_the_backbone_flow():
    torch.manual_seed(0)
    model = DeformableRefiner(hidden_channels=16)
    image, pred = key_image(2), backbone_like(2)
    out = model(image, pred)
    assert torch.equal(out.offsets, torch.zeros_like(out.offsets))
    cols = model.deform.sample(image, pred.flow.permute(0, 2, 3, 1), out.offsets)
    centre = torch.nn.functional.grid_sample(image, pred.flow.permute(0, 2, 3, 1), align_corners=False)
    torch.testing.assert_close(cols[:, :, 4], centre, atol=1e-6, rtol=0)


def test_refiner_bad_inputs():
    model = DeformableRefiner(hidden_channels=16)
    pred = backbone_like(2)
    with pytest.raises(ValueError, match=r"\(2, 3, 16, 8\)"):
        model(torch.zeros(2, 3, 16, 8), pred)
    with pytest.raises(ValueError, match=r"batch size 3, got \(2, 2, 16, 16\)"):
        model(key_image(3), pred)
    bad = TexturePrediction(pred.flow, pred.rgb[:, :, :8], pred.mask)
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 16\)"):
        model(key_image(2), bad)
    with pytest.raises(ValueError, match="features"):
        DeformableRefiner(hidden_channels=16, offset_source="features")(key_image(2), pred)



# ----------------------------------------------------------- residual head
def backbone_raw(batch, uv=(16, 16), feat=16, seed=0) -> TexturePrediction:
    """A backbone prediction as Texformer returns it: activated from a raw output that it keeps."""
    g = torch.Generator().manual_seed(seed)
    return split_prediction(torch.randn(batch, 6, *uv, generator=g) * 3,
                            features=torch.randn(batch, feat, *uv, generator=g))


def reference_parameter_count(in_ch: int, hidden: int, layers: int, offset_in: int) -> int:
    """Implementation notes section 2, counted by hand: offset conv (3x3, bias) -> 18 offsets;
    deformable 3x3 conv in_ch -> hidden without bias + BN; `layers` 3x3 convs without bias + BN;
    3x3 head over [hidden, 6 skip channels] -> 6 with bias."""
    offset = offset_in * 18 * 9 + 18
    deform = in_ch * hidden * 9 + 2 * hidden
    plain = layers * (hidden * hidden * 9 + 2 * hidden)
    return offset + deform + plain + (hidden + 6) * 6 * 9 + 6


@pytest.mark.parametrize("cls,kwargs", REFINERS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_residual_head_starts_exactly_at_the_backbone_prediction(cls, kwargs, mode):
    torch.manual_seed(0)
    model = getattr(cls(**kwargs, residual_head=True), mode)()
    pred = backbone_raw(2)
    out = model(key_image(2), pred)
    for name in ("flow", "rgb", "mask"):
        assert torch.equal(getattr(out, name), getattr(pred, name)), name
    # the reference head (the default) starts elsewhere: its output is the random head's, not the backbone's
    torch.manual_seed(0)
    default = getattr(cls(**kwargs), mode)()(key_image(2), pred)
    assert (default.rgb - pred.rgb).abs().mean() > 0.1


def test_default_refiner_keeps_the_reference_layout_and_the_residual_one_the_same_parameters():
    for kwargs, offset_in in ((dict(), 2), (dict(offset_source="prediction"), 6)):
        default, residual = DeformableRefiner(**kwargs), DeformableRefiner(**kwargs, residual_head=True)
        assert default.residual_head is False  # the reference's behaviour unless asked
        assert sum(p.numel() for p in default.parameters()) == reference_parameter_count(4, 128, 2, offset_in)
        assert {k: v.shape for k, v in default.state_dict().items()} == \
            {k: v.shape for k, v in residual.state_dict().items()}
    conv, conv_residual = ConvRefiner(hidden_channels=16), ConvRefiner(hidden_channels=16, residual_head=True)
    assert {k: v.shape for k, v in conv.state_dict().items()} == {k: v.shape for k, v in conv_residual.state_dict().items()}
    # the same seed gives the same weights everywhere but the zeroed head (the head's draw is still consumed)
    for cls in (DeformableRefiner, ConvRefiner):
        torch.manual_seed(3)
        a = cls(hidden_channels=16).state_dict()
        torch.manual_seed(3)
        b = cls(hidden_channels=16, residual_head=True).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("head."))
        assert not b["head.weight"].any() and not b["head.bias"].any() and a["head.weight"].any()


@pytest.mark.parametrize("cls", [DeformableRefiner, ConvRefiner])
def test_residual_head_corrects_the_pre_activation_output(cls):
    """With a head that outputs a constant c per channel, flow / rgb = tanh(raw + c), mask = sigmoid(raw + c),
    computed here in float64."""
    model = cls(hidden_channels=8, residual_head=True).eval()
    c = torch.tensor([0.3, -0.2, 0.5, -1.0, 2.0, -0.7])
    with torch.no_grad():
        model.head.bias.copy_(c)
    pred = backbone_raw(2)
    out = model(key_image(2), pred)
    raw = pred.raw.double() + c.double().view(1, 6, 1, 1)
    torch.testing.assert_close(out.flow.double(), torch.tanh(raw[:, :2]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.rgb.double(), torch.tanh(raw[:, 2:5]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.mask.double(), 1 / (1 + torch.exp(-raw[:, 5:])), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls,kwargs", REFINERS)
def test_residual_head_learns_and_every_parameter_trains_after_the_first_step(cls, kwargs, tmp_path):
    torch.manual_seed(0)
    model = cls(**kwargs, residual_head=True).train()
    image, pred = key_image(2), backbone_raw(2)
    target = torch.rand(2, 3, 16, 16) * 2 - 1
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        optimiser.zero_grad()
        loss = (model(image, pred).rgb - target).square().mean()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert_all_parameters_get_gradients(model, lambda m: m(image, pred))
    assert_save_load_round_trip(model, lambda m: m(image, pred), tmp_path)


def test_residual_head_needs_the_raw_prediction():
    pred = backbone_like(2)  # activations only, no raw output
    for model in (DeformableRefiner(hidden_channels=16, residual_head=True), ConvRefiner(hidden_channels=16, residual_head=True)):
        with pytest.raises(ValueError, match=r"residual_head=True needs prediction.raw \(2, 6, 16, 16\).*None"):
            model(key_image(2), pred)
    with pytest.raises(ValueError, match="residual_head must be a bool, got 1"):
        DeformableRefiner(residual_head=1)


def test_split_prediction_keeps_the_raw_output():
    raw = torch.randn(2, 6, 4, 4)
    pred = split_prediction(raw)
    assert pred.raw is raw and torch.equal(pred.flow, raw[:, :2].tanh()) and torch.equal(pred.mask, raw[:, 5:].sigmoid())


# --------------------------------------------------------------------- fusion
def test_mask_fusion_against_brute_force_bilinear(tmp_path):
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64)
    flow = (torch.rand(2, 2, 6, 6, generator=g, dtype=torch.float64) * 2.2 - 1.1).requires_grad_()
    rgb = torch.rand(2, 3, 6, 6, generator=g, dtype=torch.float64).requires_grad_()
    mask = torch.rand(2, 1, 6, 6, generator=g, dtype=torch.float64).requires_grad_()
    fusion = MaskFusion()
    out = fusion(image, flow, rgb, mask)
    px, py = (flow[:, 0] + 1) * 5 / 2 - 0.5, (flow[:, 1] + 1) * 7 / 2 - 0.5
    sampled = bilinear_zero_padded(image, py, px)
    torch.testing.assert_close(out.sampled, sampled, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.texture, mask * sampled + (1 - mask) * rgb, atol=1e-12, rtol=0)
    out.texture.sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (flow, rgb, mask))
    identity, _, _ = identity_grid(2, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(fusion.sample(image, identity.permute(0, 3, 1, 2)), image, atol=1e-12, rtol=0)
    assert_save_load_round_trip(fusion, lambda m: m(image, flow, rgb, mask), tmp_path)


def test_mask_fusion_bad_shapes():
    fusion = MaskFusion()
    image, flow = torch.zeros(2, 3, 7, 5), torch.zeros(2, 2, 6, 6)
    with pytest.raises(ValueError, match=r"\(2, 3, 6, 4\)"):
        fusion(image, flow, torch.zeros(2, 3, 6, 4), torch.zeros(2, 1, 6, 6))
    with pytest.raises(ValueError, match=r"\(2, 3, 6, 6\)"):
        fusion(image, flow, torch.zeros(2, 3, 6, 6), torch.zeros(2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"\(1, 2, 6, 6\)"):
        fusion(image, flow[:1], torch.zeros(1, 3, 6, 6), torch.zeros(1, 1, 6, 6))


# ---------------------------------------------------------------- paper config
def test_paper_config_builds_consistent_modules():
    config = refinetex_paper_config()
    assert config["image_size"] == [128, 64] and config["uv_size"] == [128, 128]
    modules = {name: import_class(config[name]["class_path"])(**config[name]["init_args"])
               for name in ("backbone", "refiner", "fusion", "uncertainty")}
    assert isinstance(modules["backbone"], TexformerBackbone)
    assert modules["refiner"].in_channels == 4  # the backbone's key image
    assert modules["refiner"].deform.align_corners == modules["fusion"].align_corners
    assert modules["uncertainty"].in_channels == 3  # sigma read from the input image (the head's default)
    # implementation notes sections 1-2: Texformer width 128 everywhere, 8 heads of 16 channels, UV
    # 128x128; refiner channels {4, 128, 128, 128, 6} with a 3x3 deformable conv (18 offset channels);
    # confidence network 128 wide
    backbone, refiner = modules["backbone"], modules["refiner"]
    assert (backbone.feat_dim, backbone.uv_size, backbone.part_label_max) == (128, (128, 128), 7)
    assert {(unit.num_heads, unit.feat_dim // unit.num_heads) for unit in backbone.attention} == {(8, 16)}
    assert refiner.deform.weight.shape == (128, 4, 3, 3) and refiner.offset_conv.out_channels == 18
    assert len([m for m in refiner.hidden.modules() if isinstance(m, torch.nn.Conv2d)]) == 2
    assert refiner.head.out_channels == 6 and modules["uncertainty"].config["init_args"]["width"] == 128
