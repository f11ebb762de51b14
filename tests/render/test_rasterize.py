"""`rasterize` against a brute-force reference (every pixel against every face, float64)."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.render import rasterize


def brute_force(vertices, faces, K, H, W, near=1e-4):
    """Independent reference: loop over faces, test all pixel centres, keep the nearest."""
    B = vertices.shape[0]
    face_index = torch.full((B, H, W), -1, dtype=torch.int64)
    depth = torch.full((B, H, W), math.inf, dtype=torch.float64)
    bary = torch.zeros((B, H, W, 3), dtype=torch.float64)
    jj, ii = torch.meshgrid(torch.arange(W, dtype=torch.float64), torch.arange(H, dtype=torch.float64), indexing="xy")
    for b in range(B):
        P = vertices[b].double()
        proj = (K[b].double() @ P.T).T
        uv = proj[:, :2] / proj[:, 2:3]
        for f, (a, c, d) in enumerate(faces.tolist()):
            if min(P[a, 2], P[c, 2], P[d, 2]) <= near:
                continue
            A = torch.stack([uv[a], uv[c], uv[d]])
            # Solve for screen barycentrics l with sum 1: [A^T; 1] l = [x; y; 1].
            M = torch.cat([A.T, torch.ones(1, 3, dtype=torch.float64)])
            if abs(torch.linalg.det(M)) < 1e-12:
                continue
            rhs = torch.stack([jj.reshape(-1), ii.reshape(-1), torch.ones(H * W, dtype=torch.float64)])
            lam = torch.linalg.solve(M, rhs).T  # (HW, 3)
            inside = (lam >= -1e-12).all(-1)
            zs = torch.stack([P[a, 2], P[c, 2], P[d, 2]])
            w = lam / zs
            z = 1.0 / w.sum(-1)
            pc = w * z[:, None]
            cur = depth[b].reshape(-1)
            better = inside & (z < cur - 1e-12)
            cur_face = face_index[b].reshape(-1)
            cur_face[better] = f
            cur[better] = z[better]
            bary[b].reshape(-1, 3)[better] = pc[better]
    return face_index, bary, depth


@pytest.fixture(params=["torch", "numba"])
def backend(request):
    """Every test below runs on both CPU backends of `rasterize`."""
    return request.param


def random_scene(B, n_faces, H, W, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n_faces, 1, 3, generator=g) * torch.tensor([1.6, 1.6, 2.0]) + torch.tensor([-0.8, -0.8, 2.0])
    verts = (centres + 0.35 * torch.randn(n_faces, 3, 3, generator=g)).reshape(-1, 3)
    verts = verts[None].repeat(B, 1, 1) + 0.05 * torch.randn(B, n_faces * 3, 3, generator=g)
    faces = torch.arange(n_faces * 3).reshape(n_faces, 3)
    f = 1.1 * max(H, W)
    K = torch.tensor([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]]).repeat(B, 1, 1)
    return verts, faces, K


@pytest.mark.parametrize("H,W", [(24, 16), (17, 29)])
def test_matches_brute_force(H, W, backend):
    verts, faces, K = random_scene(2, 25, H, W, seed=H)
    frags = rasterize(verts, faces, K, (H, W), backend=backend)
    ref_face, ref_bary, ref_depth = brute_force(verts, faces, K, H, W)
    assert frags.face_index.shape == (2, H, W) and frags.bary.shape == (2, H, W, 3)
    same = frags.face_index == ref_face
    # Exact ties (a pixel centre on a shared edge at equal depth) may go either way.
    assert same.float().mean() > 0.995
    assert same.any() and (ref_face >= 0).sum() > 50
    torch.testing.assert_close(frags.bary[same].double(), ref_bary[same], atol=1e-5, rtol=0)
    hit = same & (ref_face >= 0)
    torch.testing.assert_close(frags.depth[hit].double(), ref_depth[hit], atol=1e-5, rtol=1e-6)
    assert torch.isinf(frags.depth[frags.face_index < 0]).all()


def test_small_and_off_screen_faces_match_brute_force(backend):
    # Many sub-pixel faces (most cover no pixel centre and are culled before the float set-up)
    # and faces that straddle or miss the image borders.
    g = torch.Generator().manual_seed(11)
    n = 400
    centres = torch.rand(n, 1, 3, generator=g) * torch.tensor([3.0, 3.0, 1.0]) + torch.tensor([-1.5, -1.5, 2.0])
    size = torch.where(torch.rand(n, 1, 1, generator=g) < 0.8, 0.02, 0.3)
    verts = (centres + size * torch.randn(n, 3, 3, generator=g)).reshape(1, -1, 3)
    faces = torch.arange(3 * n).reshape(n, 3)
    K = torch.tensor([[[12.0, 0.0, 9.5], [0.0, 12.0, 7.5], [0.0, 0.0, 1.0]]])
    frags = rasterize(verts, faces, K, (16, 20), backend=backend)
    ref_face, ref_bary, _ = brute_force(verts, faces, K, 16, 20)
    same = frags.face_index == ref_face
    assert same.float().mean() > 0.995 and (ref_face >= 0).sum() > 50
    torch.testing.assert_close(frags.bary[same].double(), ref_bary[same], atol=1e-5, rtol=0)


def test_skewed_camera_matches_brute_force(backend):
    verts, faces, K = random_scene(1, 20, 18, 22, seed=4)
    K[:, 0, 1] = 3.5  # a skew term
    frags = rasterize(verts, faces, K, (18, 22), backend=backend)
    ref_face, ref_bary, _ = brute_force(verts, faces, K, 18, 22)
    same = frags.face_index == ref_face
    assert same.float().mean() > 0.995 and (ref_face >= 0).sum() > 50
    torch.testing.assert_close(frags.bary[same].double(), ref_bary[same], atol=1e-5, rtol=0)


def test_backends_give_the_same_face_ids():
    # Both backends run the same arithmetic in the same order: equal face ids, also on exact
    # ties, and weights / depth equal to float rounding; batch, float64 and a half input.
    for dtype in (torch.float32, torch.float64, torch.float16):
        verts, faces, K = random_scene(3, 200, 30, 26, seed=8)
        verts = verts.to(dtype)
        torch_out = rasterize(verts, faces, K, (30, 26), backend="torch")
        numba_out = rasterize(verts, faces, K, (30, 26), backend="numba")
        assert torch.equal(numba_out.face_index, torch_out.face_index)
        assert (torch_out.face_index >= 0).sum() > 500
        assert numba_out.bary.dtype == numba_out.depth.dtype == dtype
        torch.testing.assert_close(numba_out.bary, torch_out.bary, atol=1e-6, rtol=0)
        torch.testing.assert_close(numba_out.depth, torch_out.depth, atol=1e-6, rtol=1e-6)


def test_numba_kernel_clips_far_vertices_like_the_torch_path():
    # Screen positions far beyond int64 (a vertex just past `near`, far to the side) must clip
    # to the image like any off-screen vertex: codes [ceil u, ceil v, ceil -u, ceil -v] clipped
    # to [0, W], [0, H], [1 - W, 1], [1 - H, 1]; an undrawable vertex gets (W, H, 1, 1).
    import numpy as np

    from zoo.render import rasterize_cpu

    verts = np.array([[1e38, -1e38, 1e-3], [-1e38, 1e38, 1e-3], [2.4, -0.5, 1.0], [0.0, 0.0, -1.0]])
    K = np.array([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 1.0]])
    u, v, inv_z, box = np.empty(4), np.empty(4), np.empty(4), np.empty((4, 4), dtype=np.int32)
    rasterize_cpu._project(verts, K, 300, 500, 1e-4, u, v, inv_z, box)
    assert box.tolist() == [[500, 0, -499, 1], [0, 300, 1, -299], [240, 0, -240, 1], [500, 300, 1, 1]]


def test_unknown_backend_is_refused():
    verts, faces, K = random_scene(1, 2, 8, 8, seed=1)
    with pytest.raises(ValueError, match="backend must be one of"):
        rasterize(verts, faces, K, (8, 8), backend="cuda")


def test_coplanar_faces_at_one_depth_tie_to_the_smaller_index(backend):
    # Two overlapping triangles at the same constant depth (not a power of two): the overlap
    # is an exact tie and goes to face 0 wherever both cover the pixel centre.
    tri = torch.tensor([[-1.0, -1.0, 3.0], [1.0, -1.0, 3.0], [0.0, 1.0, 3.0]])
    verts = torch.cat([tri, tri * torch.tensor([0.9, 0.9, 1.0]) + torch.tensor([0.1, 0.05, 0.0])])[None]
    faces = torch.tensor([[3, 4, 5], [0, 1, 2]])  # listed second, so face 1 is the big one
    K = torch.tensor([[[20.0, 0.0, 7.5], [0.0, 20.0, 7.5], [0.0, 0.0, 1.0]]])
    frags = rasterize(verts, faces, K, (16, 16), backend=backend)
    ref_face, _, _ = brute_force(verts[:, [3, 4, 5]], torch.tensor([[0, 1, 2]]), K, 16, 16)
    assert (ref_face >= 0).sum() > 20
    assert (frags.face_index[ref_face >= 0] == 0).all()
    assert torch.equal(frags.depth[frags.mask], torch.full_like(frags.depth[frags.mask], 3.0))


def test_undrawable_vertices_drop_only_their_faces(backend):
    verts, faces, K = random_scene(1, 12, 20, 20, seed=5)
    clean = rasterize(verts, faces, K, (20, 20), backend=backend)
    broken = verts.clone()
    broken[0, 0, 2] = 0.0  # face 0: a vertex in the camera plane
    broken[0, 3, 2] = -1.0  # face 1: behind the camera
    broken[0, 6, 2] = 1e-4  # face 2: exactly at `near`
    frags = rasterize(broken, faces, K, (20, 20), backend=backend)
    assert not torch.isin(frags.face_index, torch.tensor([0, 1, 2])).any()
    others = ~torch.isin(clean.face_index, torch.tensor([0, 1, 2])) & (clean.face_index >= 0)
    # Pixels that a dropped face did not win keep their face.
    assert torch.equal(frags.face_index[others], clean.face_index[others])


@pytest.mark.gpu
def test_device_path_equals_cpu_result(device):
    # Every per-pair value is one IEEE operation after another (no fused or reordered arithmetic),
    # so the device gives the CPU's face ids exactly, in one chunk or many.
    verts, faces, K = random_scene(3, 300, 48, 40, seed=2)
    cpu = rasterize(verts, faces, K, (48, 40))
    for chunk in (2_000_000, 500):
        out = rasterize(verts.to(device), faces.to(device), K.to(device), (48, 40), max_pairs_per_chunk=chunk)
        assert torch.equal(out.face_index.cpu(), cpu.face_index)
        torch.testing.assert_close(out.bary.cpu(), cpu.bary, atol=1e-6, rtol=0)
        torch.testing.assert_close(out.depth.cpu(), cpu.depth, atol=1e-6, rtol=1e-6)


def test_chunking_gives_identical_result():
    verts, faces, K = random_scene(3, 40, 32, 32, seed=3)
    whole = rasterize(verts, faces, K, (32, 32), backend="torch")
    chunked = rasterize(verts, faces, K, (32, 32), max_pairs_per_chunk=50, backend="torch")
    assert torch.equal(whole.face_index, chunked.face_index)
    assert torch.equal(whole.bary, chunked.bary)


def test_shared_edge_tie_goes_to_smaller_face_and_quad_is_watertight(backend):
    # A square at constant depth split into two triangles along the diagonal: every pixel
    # is covered, the diagonal pixels (exact ties) go to face 0.
    verts = torch.tensor([[[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [1.0, 1.0, 2.0], [-1.0, 1.0, 2.0]]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    K = torch.tensor([[[7.0, 0.0, 3.5], [0.0, 7.0, 3.5], [0.0, 0.0, 1.0]]])
    frags = rasterize(verts, faces, K, (8, 8), backend=backend)
    assert (frags.face_index >= 0).all()
    diag = torch.arange(8)
    assert (frags.face_index[0, diag, diag] == 0).all()


def test_perspective_correct_barycentrics_interpolate_3d_points(backend):
    verts, faces, K = random_scene(1, 10, 20, 20, seed=7)
    frags = rasterize(verts.double(), faces, K.double(), (20, 20), backend=backend)
    hit = frags.face_index[0] >= 0
    corners = verts[0].double()[faces[frags.face_index[0][hit]]]  # (N, 3, 3)
    point = (frags.bary[0][hit][..., None] * corners).sum(1)
    proj = (K[0].double() @ point.T).T
    ii, jj = hit.nonzero(as_tuple=True)
    torch.testing.assert_close(proj[:, 0] / proj[:, 2], jj.double(), atol=1e-7, rtol=0)
    torch.testing.assert_close(proj[:, 1] / proj[:, 2], ii.double(), atol=1e-7, rtol=0)
    torch.testing.assert_close(point[:, 2], frags.depth[0][hit], atol=1e-9, rtol=0)


def test_behind_camera_faces_are_skipped(backend):
    verts = torch.tensor([[[-1.0, -1.0, -2.0], [1.0, -1.0, -2.0], [0.0, 1.0, -2.0]]])
    frags = rasterize(verts, torch.tensor([[0, 1, 2]]), torch.eye(3)[None] * 4, (8, 8), backend=backend)
    assert (frags.face_index == -1).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(vertices=torch.zeros(4, 3)), "vertices must be a \\(B, V, 3\\)"),
        (dict(vertices=torch.zeros(1, 4, 3, dtype=torch.int64)), "floating point"),
        (dict(faces=torch.zeros(2, 4, dtype=torch.int64)), "faces must be a \\(F, 3\\)"),
        (dict(faces=torch.zeros(2, 3)), "faces must be int64"),
        (dict(faces=torch.tensor([[0, 1, 9]])), "there are 4 vertices"),
        (dict(K=torch.eye(3)), "K must be a \\(1, 3, 3\\)"),
        (dict(image_size=(0, 4)), "image_size"),
        (dict(image_size=(4, 40000)), "image_size"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    args = dict(vertices=torch.rand(1, 4, 3) + 1, faces=torch.tensor([[0, 1, 2]]), K=torch.eye(3)[None], image_size=(4, 4))
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        rasterize(**args)
