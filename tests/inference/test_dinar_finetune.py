"""DINAR's RGB fine-tuning: what it may change (exact checks) and its gradient mask (against an
independent computation)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from zoo.inference.dinar_finetune import (
    box_blur,
    feather_weights,
    finetune_gradient_mask,
    finetune_rgb,
    finetune_schedule,
)
from zoo.losses.avatar import PerceptualDistance
from zoo.modules.neural_renderer import NeuralRenderer
from zoo.modules.stylegan2 import StyleGAN2Discriminator
from zoo.render.neural_texture import texel_view_cosines

T, S = 16, 16


class _TinyLPIPS(nn.Module):
    """A stand-in with LPIPS's call signature (a, b) -> (B, 1, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, a, b):
        return (self.conv(a) - self.conv(b)).pow(2).mean(dim=(1, 2, 3), keepdim=True)


def _scene(seed: int = 0):
    """A texture with half its texels known, an image, a UV render covering the image's centre
    with the whole texture, and view cosines that fall from 1 to -1 across the texture."""
    g = torch.Generator().manual_seed(seed)
    texture = torch.rand(1, 21, T, T, generator=g) * 2 - 1
    known = torch.zeros(1, 1, T, T)
    known[..., :, : T // 2 + 3] = 1.0
    texture[:, -2:-1] = known
    texture[:, -1:] = 0.0
    image = torch.rand(1, 3, S, S, generator=g) * 2 - 1
    person = torch.zeros(1, 1, S, S)
    person[..., 2:14, 3:13] = 1.0
    ys, xs = torch.meshgrid(torch.linspace(-0.95, 0.95, 12), torch.linspace(-0.95, 0.95, 12), indexing="ij")
    uv = torch.full((1, S, S, 2), -2.0)
    uv[0, 2:14, 2:14] = torch.stack([xs, ys], dim=-1)
    cosines = torch.linspace(1.0, -1.0, T).view(1, 1, 1, T).expand(1, 1, T, T).contiguous()
    return texture, image, person, uv, cosines


def _renderer():
    torch.manual_seed(0)
    return NeuralRenderer(texture_channels=21, uv_features=2, mask_features=2, base_channels=4, n_downsampling=2,
                          n_blocks=1, features=4)


def _run(steps=6, rescale_steps=0, **kw):
    texture, image, person, uv, cosines = _scene()
    renderer = _renderer()
    torch.manual_seed(1)
    disc = StyleGAN2Discriminator(image_size=S, base_channels=4, channel_multiplier=1, max_channels=8)
    perceptual = PerceptualDistance(_TinyLPIPS(), "lpips")
    before = ({k: v.clone() for k, v in renderer.state_dict().items()}, {k: v.clone() for k, v in disc.state_dict().items()})
    result = finetune_rgb(texture, renderer, image, person, uv, cosines, discriminator=disc, perceptual=perceptual,
                          steps=steps, rescale_steps=rescale_steps, lr=0.05, generator=torch.Generator().manual_seed(0),
                          **kw)
    return texture, cosines, renderer, disc, before, result


def test_schedule_is_dinars():
    assert finetune_schedule(False) == (64, 0)
    assert finetune_schedule(True) == (128, 64)


@pytest.mark.parametrize("feather", [10, 0])
def test_changes_only_rgb_of_known_texels_the_mask_allows(feather):
    texture, cosines, renderer, disc, before, result = _run(feather=feather)
    out = result.texture
    assert out.shape == texture.shape
    assert torch.equal(out[:, :-5], texture[:, :-5]) and torch.equal(out[:, -2:], texture[:, -2:])
    changed = (out[:, -5:-2] != texture[:, -5:-2]).any(dim=1, keepdim=True)
    allowed = (texture[:, -2:-1] > 0.5) & (result.gradient_mask > 0)
    assert changed.any(), "fine-tuning changed nothing"
    assert not (changed & ~allowed).any(), "a texel outside the known, mask-allowed region changed"
    # the mask really removes texels: known texels facing away are there and stay exact
    blocked = (texture[:, -2:-1] > 0.5) & (result.gradient_mask == 0)
    assert blocked.sum() >= T * 2
    # the renderer and the caller's discriminator are untouched; the scale / shift stayed 1 / 0
    for module, state in zip((renderer, disc), before):
        for k, v in module.state_dict().items():
            assert torch.equal(v, state[k]), k
    assert torch.equal(result.scale, torch.ones(1, 3, 1, 1)) and torch.equal(result.shift, torch.zeros(1, 3, 1, 1))
    assert len(result.losses) == 6 and {"l2", "perceptual", "g_adv", "d_loss", "r1", "loss"} <= set(result.losses[0])


def test_rescale_steps_move_unseen_texels_by_one_global_affine_map():
    texture, cosines, renderer, disc, before, result = _run(steps=6, rescale_steps=3)
    out, rgb0 = result.texture[:, -5:-2], texture[:, -5:-2]
    unseen = texture[:, -2:-1] <= 0.5
    assert not torch.equal(result.scale, torch.ones(1, 3, 1, 1)) or not torch.equal(result.shift, torch.zeros(1, 3, 1, 1))
    expected = rgb0 * result.scale + result.shift
    assert torch.equal(torch.where(unseen, out, 0), torch.where(unseen, expected, 0))
    assert torch.equal(result.texture[:, :-5], texture[:, :-5]) and torch.equal(result.texture[:, -2:], texture[:, -2:])


def test_missing_perceptual_or_discriminator_fails_unless_weight_zero():
    texture, image, person, uv, cosines = _scene()
    renderer = _renderer()
    with pytest.raises(ValueError, match="perceptual_weight=1.0 needs a perceptual network"):
        finetune_rgb(texture, renderer, image, person, uv, cosines, adversarial_weight=0.0, steps=1)
    with pytest.raises(ValueError, match="adversarial_weight=0.01 needs the stage-1 discriminator"):
        finetune_rgb(texture, renderer, image, person, uv, cosines, perceptual_weight=0.0, steps=1)
    out = finetune_rgb(texture, renderer, image, person, uv, cosines, perceptual_weight=0.0, adversarial_weight=0.0,
                       steps=2, lr=0.05)
    assert set(out.losses[0]) == {"l2", "loss"}
    with pytest.raises(ValueError, match="cosines must be"):
        finetune_rgb(texture, renderer, image, person, uv, cosines[..., :-1], perceptual_weight=0, adversarial_weight=0)


def _mask_reference(cos: np.ndarray, threshold=0.6, sharpness=20.0, blur=5) -> np.ndarray:
    """Loops in float64; borders mirrored without repeating the edge (OpenCV's BORDER_REFLECT_101)."""
    h, w = cos.shape
    soft = np.zeros_like(cos)
    for i in range(h):
        for j in range(w):
            c = cos[i, j]
            soft[i, j] = c * max(1.0 - math.exp((threshold - c) * sharpness), 0.0)

    def mirror(k, n):
        return -k if k < 0 else (2 * (n - 1) - k if k >= n else k)

    out = np.zeros_like(cos)
    r = blur // 2
    for i in range(h):
        for j in range(w):
            out[i, j] = np.mean([soft[mirror(i + a, h), mirror(j + b, w)] for a in range(-r, r + 1) for b in range(-r, r + 1)])
    return out


def test_gradient_mask_matches_loop_reference():
    cos = np.random.default_rng(0).uniform(-1, 1, (11, 9))
    ours = finetune_gradient_mask(torch.tensor(cos)[None, None])[0, 0].double().numpy()
    np.testing.assert_allclose(ours, _mask_reference(cos), atol=1e-6)


def test_box_blur_even_window_reaches_right_and_down():
    x = torch.zeros(1, 1, 24, 24)
    x[..., 10, 10] = 1.0
    y = box_blur(x, 10)[0, 0]
    rows = torch.nonzero(y.sum(1)).flatten()
    assert rows.min() == 10 - 5 and rows.max() == 10 + 4  # output i averages i-4 .. i+5
    assert float(y.sum()) == pytest.approx(1.0)
    assert feather_weights(torch.ones(1, 1, 8, 8), 10).eq(1).all()


def _half_cylinder(radius=0.5, distance=3.0, n_theta=60, n_y=20):
    """Front half of a vertical cylinder (axis at z = distance) facing the camera at the origin;
    u follows the angle theta in [-pi/2, pi/2], v the height y in [-0.5, 0.5]."""
    th = torch.linspace(-math.pi / 2, math.pi / 2, n_theta, dtype=torch.float64)
    ys = torch.linspace(-0.5, 0.5, n_y, dtype=torch.float64)
    TH, Y = torch.meshgrid(th, ys, indexing="ij")
    verts = torch.stack([radius * torch.sin(TH), Y, distance - radius * torch.cos(TH)], -1).reshape(-1, 3)
    uvs = torch.stack([(TH + math.pi / 2) / math.pi, Y + 0.5], -1).reshape(-1, 2)
    idx = torch.arange(n_theta * n_y).reshape(n_theta, n_y)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = torch.cat([torch.stack([a, b, c], -1).reshape(-1, 3), torch.stack([a, c, d], -1).reshape(-1, 3)])
    return verts.float(), faces, uvs[faces].float()


def test_mask_of_view_cosines_follows_the_analytic_normal_cosine():
    """The texel cosines of a half cylinder against cos = n . (-p) / |p| computed from its formula,
    and the gradient mask: 0 where the surface turns away (cos < 0.6 around the texel), > 0 where
    it faces the camera."""
    radius, distance, size = 0.5, 3.0, 32
    verts, faces, corner_uvs = _half_cylinder(radius, distance)
    cos = texel_view_cosines(verts[None], faces, corner_uvs, size)[0, 0].double()
    u = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    th = (u * math.pi - math.pi / 2)[None, :].expand(size, size)
    p = torch.stack([radius * torch.sin(th), torch.zeros_like(th), distance - radius * torch.cos(th)], -1)
    p[..., 1] = ((torch.arange(size, dtype=torch.float64) + 0.5) / size - 0.5)[:, None]
    n = torch.stack([torch.sin(th), torch.zeros_like(th), -torch.cos(th)], -1)
    analytic = (n * -p).sum(-1) / p.norm(dim=-1)
    inside = (slice(1, -1), slice(1, -1))  # atlas-edge texels are half outside the mesh
    torch.testing.assert_close(cos[inside], analytic[inside], atol=5e-3, rtol=0)
    mask = finetune_gradient_mask(cos[None, None].float())[0, 0]
    far = -torch.nn.functional.max_pool2d(-(analytic < 0.58).double()[None, None], 5, 1, 2)[0, 0] > 0.5
    assert far.any() and (mask[far] == 0).all()
    assert (mask[analytic > 0.65] > 0).all()


def test_tuning_brings_the_render_closer_to_the_image():
    texture, image, person, uv, cosines = _scene()
    cosines = torch.ones_like(cosines)  # every texel frontal: the whole known region may move
    out = finetune_rgb(texture, _renderer(), image, person, uv, cosines, perceptual_weight=0.0,
                       adversarial_weight=0.0, steps=30, lr=0.05)
    first, last = out.losses[0]["l2"], out.losses[-1]["l2"]
    assert last < 0.9 * first, (first, last)


def test_explicit_known_mask_and_no_grad_caller():
    """After inpainting every texel's mask channel may be set: the view's own known mask decides,
    and the function works when called under inference mode (Lightning's predict)."""
    texture, image, person, uv, cosines = _scene()
    known = texture[:, -2:-1].clone()
    texture[:, -2:-1] = 1.0
    renderer = _renderer()  # made outside inference mode, as a system's networks are
    with torch.inference_mode():
        out = finetune_rgb(texture, renderer, image, person, uv, torch.ones_like(cosines), perceptual_weight=0.0,
                           adversarial_weight=0.0, steps=3, lr=0.05, known_mask=known)
    changed = (out.texture[:, -5:-2] != texture[:, -5:-2]).any(dim=1, keepdim=True)
    assert changed.any() and not (changed & (known < 0.5)).any()
