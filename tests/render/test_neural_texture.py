"""DINAR's RGB texture channels and multi-view merging against brute-force references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.render import intrinsics, rasterize, render_uv
from zoo.render.neural_texture import merge_textures, rgb_texture_channels, texel_view_cosines


def identity_scene(size=16):
    """A square whose pixel (i, j) shows texel (i, j) of a size x size texture exactly."""
    depth = 2.0
    verts = torch.tensor([[[-1.0, -1.0, depth], [1.0, -1.0, depth], [1.0, 1.0, depth], [-1.0, 1.0, depth]]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    corner_uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])[faces]
    uv, mask = render_uv(rasterize(verts, faces, intrinsics(depth * size / 2, (size, size)), (size, size)), corner_uvs)
    return uv, mask


def test_rgb_channels_match_a_brute_force_scatter_erode_exclude_and_fill():
    torch.manual_seed(0)
    n = 16
    uv, _ = identity_scene(n)
    image = torch.rand(1, 3, n, n) * 2 - 1
    person = torch.zeros(1, 1, n, n)
    person[..., 2:14, 3:15] = 1
    exclude = torch.zeros(1, 1, n, n)
    exclude[..., 7, 5:12] = 1  # one excluded row: its texels become one-texel gaps
    out = rgb_texture_channels(image, uv, person, n, erode=5, exclude=exclude)
    assert out.shape == (1, 5, n, n)
    # Reference: erode 5x5 (a pixel stays if its whole 5x5 window is person), drop excluded,
    # then every empty texel with hit 3x3 neighbours takes their mean.
    p, ex, img = person[0, 0].numpy(), exclude[0, 0].numpy(), image[0].double().numpy()
    hit = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(n):
            window = p[max(i - 2, 0):i + 3, max(j - 2, 0):j + 3]
            hit[i, j] = window.size == 25 and window.min() > 0.5 and ex[i, j] < 0.5
    rgb = np.where(hit, img, 0.0)
    filled = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(n):
            if hit[i, j]:
                continue
            nb = [(a, b) for a in range(i - 1, i + 2) for b in range(j - 1, j + 2)
                  if 0 <= a < n and 0 <= b < n and hit[a, b]]
            if nb:
                filled[i, j] = True
                rgb[:, i, j] = np.mean([img[:, a, b] for a, b in nb], axis=0)
    assert hit.sum() > 20 and filled[7, 6:11].all()
    np.testing.assert_allclose(out[0, :3].numpy(), rgb, atol=1e-6)
    np.testing.assert_array_equal(out[0, 3].numpy(), (hit | filled).astype(np.float32))
    np.testing.assert_array_equal(out[0, 4].numpy(), filled.astype(np.float32))


def test_rgb_channels_validate_shapes():
    uv, mask = identity_scene(8)
    with pytest.raises(ValueError, match="image must be"):
        rgb_texture_channels(torch.zeros(1, 4, 8, 8), uv, mask, 8)
    with pytest.raises(ValueError, match="exclude must be"):
        rgb_texture_channels(torch.zeros(1, 3, 8, 8), uv, mask, 8, exclude=torch.zeros(1, 1, 4, 4))


def test_merge_weights_match_hand_computed_softmax():
    # One texel seen by views 0 and 1 (view 2 did not see it), one seen by no view, one by all.
    cos = torch.tensor([[0.9, 0.0, 0.3], [0.5, 0.0, 0.3], [-0.2, 0.0, -0.4]], dtype=torch.float64).view(3, 1, 1, 1, 3)
    visible = torch.tensor([[1.0, 0, 1], [1, 0, 1], [0, 0, 1]]).view(3, 1, 1, 1, 3)
    textures = torch.arange(3 * 2 * 3, dtype=torch.float64).view(3, 1, 2, 1, 3)
    out = merge_textures(textures, cos, visible.double(), tau=0.1)
    e = math.exp
    w0 = [e(9) / (e(9) + e(5)), e(5) / (e(9) + e(5)), 0.0]
    z = e(3) + e(3) + e(-4)
    w2 = [e(3) / z, e(3) / z, e(-4) / z]
    expected_w = torch.tensor([[w0[0], 0, w2[0]], [w0[1], 0, w2[1]], [w0[2], 0, w2[2]]], dtype=torch.float64)
    torch.testing.assert_close(out["weights"].view(3, 3), expected_w, rtol=1e-12, atol=1e-12)
    for c in range(2):
        for t in range(3):
            ref = sum(expected_w[v, t] * textures[v, 0, c, 0, t] for v in range(3))
            torch.testing.assert_close(out["texture"][0, c, 0, t], ref, rtol=1e-12, atol=1e-12)
    assert out["seen"].view(3).tolist() == [1.0, 0.0, 1.0]
    # Without visibility every view counts (DINAR's code): view 2 now takes a share of texel 0.
    free = merge_textures(textures, cos)
    assert free["weights"][2, 0, 0, 0, 0] == pytest.approx(e(-2) / (e(9) + e(5) + e(-2)), rel=1e-12)


def test_merge_validates_shapes():
    with pytest.raises(ValueError, match="cosines"):
        merge_textures(torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 1, 1, 4, 5))
    with pytest.raises(ValueError, match="tau"):
        merge_textures(torch.zeros(2, 1, 3, 4, 4), torch.zeros(2, 1, 1, 4, 4), tau=0.0)


def _box(theta_deg: float, distance: float, flip: bool):
    """A unit box (each side its own 4 vertices) rotated about y and `distance` in front of the
    camera; its front side (facing the camera at theta = 0) fills the top-left UV quarter."""
    sides, uvs, faces = [], [], []
    cells = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (2, 1)]
    normals = [(0, 0, -1), (0, 0, 1), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0)]
    for k, (n, (cu, cv)) in enumerate(zip(normals, cells)):
        n = np.array(n, float)
        a = np.array([0.0, 1, 0]) if abs(n[1]) < 0.5 else np.array([1.0, 0, 0])
        b = np.cross(n, a)
        quad = [0.5 * n + 0.5 * (sa * a + sb * b) for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        sides += quad
        uvs += [((cu + (sa + 1) / 2) / 3, (cv + (sb + 1) / 2) / 2) for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        tri = [[0, 1, 2], [0, 2, 3]]
        if np.dot(np.cross(quad[1] - quad[0], quad[2] - quad[0]), n) < 0:
            tri = [[0, 2, 1], [0, 3, 2]]
        if flip:
            tri = [[t[0], t[2], t[1]] for t in tri]
        faces += [[4 * k + i for i in t] for t in tri]
    t = math.radians(theta_deg)
    rot = np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])
    verts = np.array(sides) @ rot.T + np.array([0, 0, distance])
    faces = torch.tensor(faces)
    corner_uvs = torch.tensor(uvs, dtype=torch.float32)[faces]
    return torch.tensor(verts, dtype=torch.float32)[None], faces, corner_uvs, [rot @ np.array(n, float) for n in normals]


@pytest.mark.parametrize("flip", [False, True])
def test_texel_cosines_of_a_far_box_are_its_face_normals_against_the_view(flip):
    theta, distance, T = 35.0, 1000.0, 24
    verts, faces, corner_uvs, normals = _box(theta, distance, flip)
    cos = texel_view_cosines(verts, faces, corner_uvs, T)[0, 0]
    to_camera = np.array([0.0, 0.0, -1.0])  # from a point 1000 units away, the camera is straight back
    for k, (cu, cv) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        block = cos[cv * 12 + 2:(cv + 1) * 12 - 2, cu * 8 + 2:(cu + 1) * 8 - 2]
        expected = float(np.dot(normals[k], to_camera))
        torch.testing.assert_close(block, torch.full_like(block, expected), atol=2e-3, rtol=0)
    assert cos[2, 2] == pytest.approx(math.cos(math.radians(theta)), abs=2e-3)
