"""UV render, texture sampling, normals, labels, scatter to UV and the UV atlas."""
from __future__ import annotations

import math

import torch
import trimesh

from zoo.render import (
    intrinsics,
    look_at_body,
    rasterize,
    rasterize_uv_atlas,
    render_labels,
    render_normals,
    render_uv,
    sample_texture,
    scatter_to_uv,
    texformer_intrinsics,
    to_camera,
    uv_attribute_map,
)


def square_scene(H=32, W=32, depth=2.0):
    """A square filling the image, UV = its own screen position (u right, v down)."""
    verts = torch.tensor([[[-1.0, -1.0, depth], [1.0, -1.0, depth], [1.0, 1.0, depth], [-1.0, 1.0, depth]]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uv_v = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    corner_uvs = uv_v[faces]
    K = intrinsics(depth * (W / 2), (H, W))
    K[:, 1, 1] = depth * (H / 2)  # non-square pixels so the square spans the whole image
    return verts, faces, corner_uvs, K


def test_uv_render_of_a_screen_aligned_square_matches_pixel_centres():
    H, W = 16, 24
    verts, faces, corner_uvs, K = square_scene(H, W)
    frags = rasterize(verts, faces, K, (H, W))
    uv, mask = render_uv(frags, corner_uvs)
    assert mask.shape == (1, 1, H, W) and mask.all()
    jj, ii = torch.meshgrid(torch.arange(W), torch.arange(H), indexing="xy")
    # Pixel centre (j, i) maps to u = (j + 0.5) / W: in grid coordinates (2j + 1) / W - 1.
    torch.testing.assert_close(uv[0, ..., 0], (2 * jj + 1) / W - 1, atol=1e-5, rtol=0)
    torch.testing.assert_close(uv[0, ..., 1], (2 * ii + 1) / H - 1, atol=1e-5, rtol=0)
    # Sampling a texture of the same size at those UVs returns it exactly.
    texture = torch.rand(1, 3, H, W, requires_grad=True)
    image = sample_texture(texture, uv, mask)
    torch.testing.assert_close(image, texture.detach(), atol=1e-5, rtol=0)
    image.sum().backward()
    assert texture.grad is not None and (texture.grad > 0).all()


def test_scatter_to_uv_recovers_the_texture_at_known_texels():
    torch.manual_seed(0)
    H = W = 48
    verts, faces, corner_uvs, K = square_scene(H, W)
    verts[..., 2] += torch.tensor([0.0, 0.3, 0.6, 0.3])  # tilted: a perspective warp
    frags = rasterize(verts, faces, K, (H, W))
    uv, mask = render_uv(frags, corner_uvs)
    texture = torch.rand(1, 3, 16, 16)
    image = sample_texture(texture, uv, mask, mode="nearest")
    out = scatter_to_uv(image, uv, mask, 16, fill_gaps=False)
    known = out["known_mask"].bool().expand_as(texture)
    assert known.float().mean() > 0.5
    torch.testing.assert_close(out["texture"][known], texture[known], atol=1e-6, rtol=0)


def test_scatter_fills_one_texel_gaps_and_marks_them():
    image = torch.ones(1, 1, 1, 2)
    uv = torch.tensor([[[[-0.9, -0.9], [0.9, 0.9]]]])  # two pixels hit two far texels
    out = scatter_to_uv(image, uv, torch.ones(1, 1, 1, 2), 4)
    assert out["known_mask"].sum() == 2
    assert out["filled_mask"].sum() == 6  # the 3x3 neighbours of the two corners, inside the map
    assert ((out["filled_mask"] * out["known_mask"]) == 0).all()
    assert torch.allclose(out["texture"][out["filled_mask"].bool().expand_as(out["texture"])], torch.tensor(1.0))


def test_normals_of_a_sphere_point_outwards():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    verts = torch.tensor(sphere.vertices, dtype=torch.float32)[None] + torch.tensor([0.0, 0.0, 4.0])
    faces = torch.tensor(sphere.faces, dtype=torch.int64)
    K = intrinsics(40.0, (32, 32))
    frags = rasterize(verts, faces, K, (32, 32))
    normals = render_normals(frags, verts, faces)[0].permute(1, 2, 0)[frags.mask[0]]
    hit = (frags.bary[0][frags.mask[0]][..., None] * verts[0][faces[frags.face_index[0][frags.mask[0]]]]).sum(1)
    radial = torch.nn.functional.normalize(hit - torch.tensor([0.0, 0.0, 4.0]), dim=-1)
    assert (torch.nn.functional.cosine_similarity(normals, radial, dim=-1) > 0.99).all()
    assert (normals[:, 2] < 0).all()  # visible surface faces the camera (-z)


def test_labels_and_atlas():
    verts, faces, corner_uvs, K = square_scene(8, 8)
    frags = rasterize(verts, faces, K, (8, 8))
    labels = render_labels(frags, torch.tensor([3, 5]))
    assert set(labels.unique().tolist()) <= {3, 5} and (labels > 0).all()
    atlas = rasterize_uv_atlas(corner_uvs, 8)
    assert atlas.mask.all()
    values, mask = uv_attribute_map(corner_uvs, corner_uvs, (8, 4))  # UV written into UV space
    jj, ii = torch.meshgrid(torch.arange(4), torch.arange(8), indexing="xy")
    torch.testing.assert_close(values[0], (jj + 0.5) / 4, atol=1e-5, rtol=0)
    torch.testing.assert_close(values[1], (ii + 0.5) / 8, atol=1e-5, rtol=0)


def test_camera_conventions():
    R, t = look_at_body(torch.tensor([0.0, 90.0]), torch.tensor([0.0, 0.0]), torch.tensor([3.0, 3.0]))
    assert torch.allclose(torch.det(R), torch.ones(2))
    front, left, up = torch.tensor([0.0, 0, 1]), torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0])
    pts = to_camera(torch.stack([front, left, up])[None].repeat(2, 1, 1), R, t)
    assert pts[0, 0, 2] < 3 and pts[1, 1, 2] < 3  # yaw 0 sees the front, yaw 90 the left side
    assert (pts[:, 2, 1] < 0).all()  # up is -y in OpenCV
    assert pts[0, 1, 0] > 0  # the person's left appears on the image's right from the front
    K = texformer_intrinsics((128, 64))
    assert math.isclose(K[0, 0, 0].item(), 5000 * 128 / 224, rel_tol=1e-6)
    assert K[0, 0, 2].item() == 31.5 and K[0, 1, 2].item() == 63.5


def test_dilate_texture_pads_outside_and_keeps_inside():
    from zoo.render import dilate_texture

    tex = torch.zeros(1, 1, 5, 5)
    tex[0, 0, 2, 2] = 4.0
    mask = torch.zeros(1, 1, 5, 5)
    mask[0, 0, 2, 2] = 1
    out = dilate_texture(tex, mask, iterations=1)
    assert out[0, 0, 2, 2] == 4.0
    assert (out[0, 0, 1:4, 1:4] == 4.0).all() and out[0, 0, 0].abs().sum() == 0


def _gap_fill_loop(texture, known, atlas):
    """Brute-force float64 reference of DINAR's 3x3 gap fill, texel by texel."""
    B, _, H, W = texture.shape
    out, filled = texture.double().clone() * known, torch.zeros(B, 1, H, W, dtype=torch.float64)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                if known[b, 0, i, j] or not atlas[0, 0, i, j]:
                    continue
                values = [texture[b, :, y, x].double() for y in range(max(i - 1, 0), min(i + 2, H))
                          for x in range(max(j - 1, 0), min(j + 2, W)) if known[b, 0, y, x]]
                if values:
                    out[b, :, i, j] = torch.stack(values).mean(0)
                    filled[b, 0, i, j] = 1
    return out, filled


def test_fill_texture_gaps_matches_a_brute_force_loop():
    from zoo.render import fill_texture_gaps

    g = torch.Generator().manual_seed(3)
    texture = torch.rand(2, 3, 9, 11, generator=g) * 2 - 1
    known = (torch.rand(2, 1, 9, 11, generator=g) > 0.6).float()
    atlas = (torch.rand(1, 1, 9, 11, generator=g) > 0.2).float()
    out = fill_texture_gaps(texture, known, atlas)
    ref_texture, ref_filled = _gap_fill_loop(texture, known.bool(), atlas.bool())
    torch.testing.assert_close(out["filled_mask"].double(), ref_filled)
    torch.testing.assert_close(out["known_mask"], known)
    torch.testing.assert_close(out["texture"].double(), ref_texture, atol=1e-6, rtol=0)
    assert 0 < out["filled_mask"].sum() < (1 - known).sum()  # some gaps filled, far texels left empty
    # Without an atlas every empty texel next to a known one is filled.
    free = fill_texture_gaps(texture, known)
    assert (free["filled_mask"] >= out["filled_mask"]).all() and free["filled_mask"].sum() > out["filled_mask"].sum()
