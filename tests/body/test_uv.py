"""UV helpers: the bounding-box triangle fill against an all-pairs brute force, OBJ reading."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.body import TEXFORMER_SMPL12_TO_COARSE, coarse_from_smpl12
from zoo.body.uv import corner_uvs_from_layout, obj_faces, obj_uv_layout, rasterize_uv, rasterize_uv_mask


def _brute_force(corner_uvs: torch.Tensor, size: int) -> torch.Tensor:
    """(F, S, S) bool: every texel centre against every triangle, float64, by a 2x2 solve."""
    tri = corner_uvs.double()
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    rows, cols = torch.meshgrid(centres, centres, indexing="ij")
    p = torch.stack([cols, rows], dim=-1).reshape(-1, 2)  # (S*S, 2) as (u, v)
    a = tri[:, 0]
    m = torch.stack([tri[:, 1] - a, tri[:, 2] - a], dim=-1)  # (F, 2, 2), columns are the edges
    rhs = (p[None] - a[:, None]).transpose(1, 2)  # (F, 2, S*S)
    det = torch.linalg.det(m)
    ok = det.abs() > 1e-12
    sol = torch.linalg.solve(torch.where(ok[:, None, None], m, torch.eye(2, dtype=m.dtype)), rhs)
    bary = torch.cat([1 - sol.sum(dim=1, keepdim=True), sol], dim=1)  # (F, 3, S*S)
    inside = (bary >= -1e-6).all(dim=1) & ok[:, None]
    return inside.reshape(-1, size, size)


def _random_mesh(n_faces: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n_faces, 1, 2, generator=g)
    scale = torch.rand(n_faces, 1, 1, generator=g) * 0.3
    return (centres + scale * (torch.rand(n_faces, 3, 2, generator=g) - 0.5)).clamp(0, 1)


@pytest.mark.parametrize("size", [1, 7, 32])
def test_rasterize_matches_brute_force(size):
    uv = _random_mesh(40, seed=size)
    uv[0] = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # a big face across the grid
    uv[1] = torch.tensor([[0.2, 0.2], [0.2, 0.2], [0.6, 0.6]])  # degenerate: covers nothing
    face_index, bary = rasterize_uv(uv, size)
    brute = _brute_force(uv, size)
    torch.testing.assert_close(face_index >= 0, brute.any(dim=0), rtol=0, atol=0)
    assert torch.equal(rasterize_uv_mask(uv, size), brute.any(dim=0))
    hit = face_index >= 0
    rows, cols = torch.nonzero(hit, as_tuple=True)
    winner = face_index[hit]
    assert brute[winner, rows, cols].all()  # the chosen face does contain the texel centre
    # The smallest covering face index wins where faces overlap (the rasteriser's tie rule).
    expected = torch.where(brute, torch.arange(len(uv))[:, None, None], len(uv)).amin(dim=0)
    expected[expected == len(uv)] = -1
    assert torch.equal(face_index, expected)
    # Barycentric interpolation of the corners gives back the texel centre.
    centre = torch.stack([(cols + 0.5) / size, (rows + 0.5) / size], dim=-1)
    interp = (bary[hit][..., None] * uv[winner]).sum(dim=1)
    torch.testing.assert_close(interp, centre.float(), atol=1e-5, rtol=0)


def test_shared_edges_leave_no_gap_and_bounds_are_respected():
    square = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75]], [[0.25, 0.25], [0.75, 0.75], [0.25, 0.75]]])
    mask = rasterize_uv_mask(square, 16)
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[4:12, 4:12] = True  # texel centres (i + 0.5) / 16 inside [0.25, 0.75]
    assert torch.equal(mask, expected)
    assert not rasterize_uv_mask(torch.zeros(0, 3, 2), 8).any()
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        rasterize_uv(torch.zeros(4, 2), 8)


def test_large_atlas_is_fast_enough():
    import time

    uv = _random_mesh(20000, seed=0) * 0.02 + torch.rand(20000, 1, 2) * 0.98
    start = time.perf_counter()
    face_index, _ = rasterize_uv(uv, 256)
    assert time.perf_counter() - start < 5.0 and (face_index >= 0).any()


def test_obj_layout_reader_fans_polygons_and_flips_v(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                    "f 1/1 2/2 3/3 4/4\n", encoding="utf-8")
    vt, ft = obj_uv_layout(path)
    assert ft.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert obj_faces(path).tolist() == [[0, 1, 2], [0, 2, 3]]
    corner = corner_uvs_from_layout(vt, ft)
    assert corner.shape == (2, 3, 2)
    assert corner[0, 0].tolist() == [0.0, 1.0]  # OBJ (0, 0) is the bottom-left: v down = 1
    no_uv = tmp_path / "plain.obj"
    no_uv.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nf 1 2 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vt"):
        obj_uv_layout(no_uv)
    with pytest.raises(ValueError, match="out of range"):
        corner_uvs_from_layout(np.zeros((2, 2)), np.array([[0, 1, 2]]))


def test_texformer_smpl12_mapping():
    labels = torch.arange(13)
    coarse = coarse_from_smpl12(labels)
    assert coarse[0] == 0 and all(coarse[k] == v for k, v in TEXFORMER_SMPL12_TO_COARSE.items())
    with pytest.raises(ValueError, match="0..12"):
        coarse_from_smpl12(torch.tensor([13]))
