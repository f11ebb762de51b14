"""Exact triangle rasterisation in pure PyTorch (CPU and CUDA, batched).

Conventions (OpenCV camera): x right, y down, z forward; a camera-space point (X, Y, Z)
projects to u = fx X/Z + cx, v = fy Y/Z + cy. Pixel (row i, column j) is sampled at its
centre, image coordinates (u, v) = (j, i) -- so pixel centres sit at integer coordinates.

Method: every face is projected, its screen bounding box is clipped to the image and
enumerated as (face, pixel) candidate pairs; each pair is tested with edge functions,
perspective-correct barycentrics and depth are computed for the covered pairs, and a
scatter-min z-buffer keeps the nearest surface. Ties in depth go to the smaller face
index, which makes the result deterministic. The cost is proportional to the summed
bounding-box area of the faces, never to faces x pixels. Large workloads are processed
in chunks of faces so that memory stays bounded.

Faces with a vertex at Z <= `near` are skipped (no clipping); degenerate faces (zero
screen area) cover nothing. Both windings are rasterised (no back-face culling).
Rasterisation is not differentiable: gradients flow through texture sampling instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


_NO_FACE = torch.iinfo(torch.int64).max


@dataclass
class Fragments:
    """Per-pixel result of `rasterize`.

    Attributes:
        face_index: (B, H, W) int64, the visible face, -1 for background.
        bary: (B, H, W, 3) perspective-correct weights of the face's three vertices at the
            visible 3D point (zero for background).
        depth: (B, H, W) camera-space Z of the visible point (+inf for background).
    """

    face_index: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool, True where a face is visible."""
        return self.face_index >= 0


def _check_inputs(vertices, faces, K, image_size):
    if not isinstance(vertices, torch.Tensor) or vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be a (B, V, 3) tensor, got {getattr(vertices, 'shape', type(vertices))}")
    if not vertices.is_floating_point():
        raise TypeError(f"vertices must be floating point, got {vertices.dtype}")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be a (F, 3) tensor, got {getattr(faces, 'shape', type(faces))}")
    if faces.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"faces must be int64 (or int32), got {faces.dtype}")
    if faces.numel() and (faces.min() < 0 or faces.max() >= vertices.shape[1]):
        raise ValueError(
            f"faces index vertices in [{int(faces.min())}, {int(faces.max())}] but there are "
            f"{vertices.shape[1]} vertices"
        )
    if not isinstance(K, torch.Tensor) or K.shape != (vertices.shape[0], 3, 3):
        raise ValueError(f"K must be a ({vertices.shape[0]}, 3, 3) tensor, got {getattr(K, 'shape', type(K))}")
    if len(image_size) != 2 or int(image_size[0]) <= 0 or int(image_size[1]) <= 0:
        raise ValueError(f"image_size must be (H, W) with positive sizes, got {image_size}")
    if K.device != vertices.device or faces.device != vertices.device:
        raise ValueError(
            f"vertices ({vertices.device}), faces ({faces.device}) and K ({K.device}) must share a device"
        )
    _check_values(vertices, K)


def _check_values(vertices, K):
    """NaN / inf geometry or a zero / negative focal would rasterise to garbage without an error."""
    if not torch.isfinite(K).all():
        raise ValueError(f"K holds NaN or inf (batch items {_bad_items(K)}): check the camera (focal, centre)")
    focal = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)
    if (focal <= 0).any():
        items = (focal <= 0).any(-1).nonzero().flatten().tolist()[:4]
        raise ValueError(f"K must have positive focal lengths fx, fy; batch items {items} have "
                         f"{focal[items].tolist()}: a zero focal collapses the image to the principal point, a "
                         "negative one mirrors it. Check the camera's focal (in pixels).")
    if not torch.isfinite(vertices).all():
        raise ValueError(f"vertices hold NaN or inf (batch items {_bad_items(vertices)}): check the body "
                         "parameters and the camera translation that produced them")


def _bad_items(x):
    return (~torch.isfinite(x)).reshape(x.shape[0], -1).any(-1).nonzero().flatten().tolist()[:4]


def _candidate_pairs(bw, bh):
    """Enumerate (owner, local x, local y) for every pixel of every face's bounding box."""
    counts = bw * bh
    total = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts, output_size=total)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=counts.device) - start[owner]
    width = bw[owner]
    row = local // width
    return owner, local - row * width, row


def rasterize(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    image_size: tuple[int, int],
    near: float = 1e-4,
    max_pairs_per_chunk: int = 2_000_000,
) -> Fragments:
    """Rasterise a batch of meshes that share one topology.

    Args:
        vertices: (B, V, 3) camera-space positions (OpenCV axes).
        faces: (F, 3) int64 vertex indices.
        K: (B, 3, 3) pinhole intrinsics.
        image_size: (H, W) of the output.
        near: faces with any vertex at Z <= near are not drawn.
        max_pairs_per_chunk: bound on the (face, pixel) candidates held in memory at once.

    Returns:
        `Fragments` with face_index (B, H, W), bary (B, H, W, 3), depth (B, H, W).
    """
    _check_inputs(vertices, faces, K, image_size)
    H, W = int(image_size[0]), int(image_size[1])
    B, device = vertices.shape[0], vertices.device
    faces = faces.long()
    # Geometry in float64: edge functions of pixel coordinates lose digits in float32 on
    # thin faces, and the candidate count, not the precision, dominates the cost.
    verts = vertices.detach().double()
    Kd = K.detach().double()
    Z = verts[..., 2]
    safe_Z = torch.where(Z > near, Z, torch.ones_like(Z))
    u = Kd[:, 0, 0, None] * verts[..., 0] / safe_Z + Kd[:, 0, 1, None] * verts[..., 1] / safe_Z + Kd[:, 0, 2, None]
    v = Kd[:, 1, 1, None] * verts[..., 1] / safe_Z + Kd[:, 1, 2, None]

    fu, fv, fz = u[:, faces], v[:, faces], Z[:, faces]  # (B, F, 3)
    area = (fu[..., 1] - fu[..., 0]) * (fv[..., 2] - fv[..., 0]) - (fu[..., 2] - fu[..., 0]) * (fv[..., 1] - fv[..., 0])
    x0 = torch.ceil(fu.min(-1).values).clamp(min=0)
    x1 = torch.floor(fu.max(-1).values).clamp(max=W - 1)
    y0 = torch.ceil(fv.min(-1).values).clamp(min=0)
    y1 = torch.floor(fv.max(-1).values).clamp(max=H - 1)
    keep = (fz > near).all(-1) & (area != 0) & (x1 >= x0) & (y1 >= y0)
    b_idx, f_idx = keep.nonzero(as_tuple=True)

    npix = B * H * W
    # Per-pair work runs in the input precision (float32 unless float64 is passed).
    work_dtype = torch.float64 if vertices.dtype == torch.float64 else torch.float32
    zbuf = torch.full((npix,), float("inf"), dtype=work_dtype, device=device)
    best_face = torch.full((npix,), -1, dtype=torch.int64, device=device)
    best_bary = torch.zeros((npix, 3), dtype=work_dtype, device=device)
    best_cand = torch.full((npix,), _NO_FACE, dtype=torch.int64, device=device)  # scratch
    if len(b_idx):
        bx0, by0 = x0[b_idx, f_idx], y0[b_idx, f_idx]
        bw = (x1[b_idx, f_idx] - bx0).long() + 1
        bh = (y1[b_idx, f_idx] - by0).long() + 1
        # One packed row per kept face: its corners' screen position relative to the face's
        # bounding-box origin (small numbers, so the per-pair pass keeps its digits in the
        # input precision), their 1/Z and 1/area. Each candidate pair is one row gather.
        u_ = fu[b_idx, f_idx] - bx0[:, None]
        v_ = fv[b_idx, f_idx] - by0[:, None]
        z_ = fz[b_idx, f_idx]
        table = torch.cat([u_, v_, 1.0 / z_, 1.0 / area[b_idx, f_idx, None]], dim=1).to(work_dtype)
        bx0, by0 = bx0.long(), by0.long()
        cum = torch.cumsum(bw * bh, 0)
        chunk_start = 0
        while chunk_start < len(b_idx):
            base = cum[chunk_start - 1] if chunk_start else 0
            chunk_end = int(torch.searchsorted(cum, base + max_pairs_per_chunk, right=True))
            chunk_end = max(chunk_end, chunk_start + 1)
            sl = slice(chunk_start, chunk_end)
            _rasterize_chunk(
                table[sl], b_idx[sl], f_idx[sl], bx0[sl], by0[sl], bw[sl], bh[sl],
                H, W, zbuf, best_face, best_bary, best_cand,
            )
            chunk_start = chunk_end

    dtype = vertices.dtype
    face_index = best_face.view(B, H, W)
    bary = best_bary.view(B, H, W, 3).to(dtype)
    depth = zbuf.view(B, H, W).to(dtype)
    return Fragments(face_index=face_index, bary=bary, depth=depth)


def _rasterize_chunk(table, b_idx, f_idx, bx0, by0, bw, bh, H, W, zbuf, best_face, best_bary, best_cand):
    owner, lx, ly = _candidate_pairs(bw, bh)
    corners = table[:, :6][owner]  # (N, 6): u0 u1 u2 v0 v1 v2, relative to the box origin
    x, y = lx.to(table.dtype), ly.to(table.dtype)
    du0, du1, du2 = corners[:, 0] - x, corners[:, 1] - x, corners[:, 2] - x
    dv0, dv1, dv2 = corners[:, 3] - y, corners[:, 4] - y, corners[:, 5] - y
    # Edge functions in relative form: the two faces sharing an edge evaluate exactly
    # negated values there, so a pixel centre on a shared edge is never dropped by both
    # (watertight). Multiplying by 1/area gives barycentrics for either winding.
    w0 = du1 * dv2 - du2 * dv1
    w1 = du2 * dv0 - du0 * dv2
    w2 = du0 * dv1 - du1 * dv0
    sign = table[:, 9].sign()[owner]
    inside = ((w0 * sign >= 0) & (w1 * sign >= 0) & (w2 * sign >= 0)).nonzero().squeeze(1)
    owner = owner[inside]
    rest = table[:, 6:10][owner]  # 1/Z0, 1/Z1, 1/Z2, 1/area
    screen = torch.stack([w0[inside], w1[inside], w2[inside]], dim=1) * rest[:, 3:4]
    f = f_idx[owner]
    pix = (b_idx[owner] * H + by0[owner] + ly[inside]) * W + bx0[owner] + lx[inside]
    # Perspective-correct: 1/Z is affine in screen space.
    persp = screen * rest[:, 0:3]
    depth = 1.0 / persp.sum(-1)
    bary = persp * depth[:, None]

    # Two-pass z-buffer: nearest depth per pixel, then the smallest face id at that depth.
    old_depth = zbuf[pix]
    zbuf.scatter_reduce_(0, pix, depth, reduce="amin")
    at_min = depth == zbuf[pix]
    pix_min = pix[at_min]
    best_cand.scatter_reduce_(0, pix_min, f[at_min], reduce="amin")
    won = at_min & (f == best_cand[pix])  # one winner per pixel within this chunk
    best_cand[pix_min] = _NO_FACE  # reset only what was touched
    win_pix, win_face = pix[won], f[won]
    # Against earlier chunks: a strictly nearer point replaces; an equal depth keeps the
    # smaller face id.
    prev_face = best_face[win_pix]
    replace = (depth[won] < old_depth[won]) | (prev_face < 0) | (win_face < prev_face)
    best_face[win_pix[replace]] = win_face[replace]
    best_bary[win_pix[replace]] = bary[won][replace]
