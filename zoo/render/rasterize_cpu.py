"""The CPU kernel of `zoo.render.rasterize` (backend "numba"): one compiled loop per image.

The same method and the same arithmetic as the whole-tensor ("torch") path of
zoo/render/rasterize.py, fused into one pass: every vertex is projected once in float64 and
its rounded screen position clipped to the image; every face's box of pixel centres comes from
its corners' rounded positions (integer work, exact), and only a face whose box holds a pixel
centre gets the float64 set-up of its barycentric planes (rounded once to the working
precision); the pixels of its box are then tested and depth-tested in the working precision
with the torch path's operations in its order (no fused multiply-add: numba compiles without
fast-math), so the two backends give the same face ids. Faces are visited in index order and a
face only replaces the current one when strictly nearer, so the smallest index wins exact ties,
as on the torch path.

Numba compiles the kernel on its first call (one compilation per working precision, cached on
disk with `cache=True`, so a later process loads it instead); importing this module compiles
nothing. Single-threaded, GIL released.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch


@numba.njit(cache=True, nogil=True)
def _project(verts, K, H, W, near, u, v, inv_z, box):
    """u, v, 1/Z (float64, NaN where the vertex is not drawable) and the clipped rounded
    position [ceil u, ceil v, ceil -u, ceil -v] of every vertex of one image (an undrawable
    vertex gets (W, H, 1, 1), which never enlarges a box)."""
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    for i in range(verts.shape[0]):
        X, Y, Z = np.float64(verts[i, 0]), np.float64(verts[i, 1]), np.float64(verts[i, 2])
        iz = 1.0 / Z if Z > near else math.nan
        x, y = X * iz, Y * iz
        uu = x * fx
        if s != 0.0:
            uu += y * s
        uu += cx
        vv = y * fy + cy
        u[i], v[i], inv_z[i] = uu, vv, iz
        if math.isnan(uu) or math.isnan(vv):
            box[i, 0], box[i, 1], box[i, 2], box[i, 3] = W, H, 1, 1
        else:
            # Rounded and clipped as floats, converted after: a far vertex's ceil overflows int64.
            box[i, 0] = int(min(max(np.ceil(uu), 0.0), W))
            box[i, 1] = int(min(max(np.ceil(vv), 0.0), H))
            box[i, 2] = int(min(max(np.ceil(-uu), 1.0 - W), 1.0))
            box[i, 3] = int(min(max(np.ceil(-vv), 1.0 - H), 1.0))


@numba.njit(cache=True, nogil=True)
def _raster_image(faces, u, v, inv_z, box, W, coord, face_out, bary_out, zbuf):
    """Rasterise one image into face_out (H*W,), bary_out (H*W, 3) and zbuf (H*W,); face_out
    and zbuf hold -1 and 0 on entry, bary_out anything; on return zbuf holds 1/Z of the visible
    point and bary_out its unnormalised perspective weights (where face_out >= 0). coord[n] is
    n in the working precision."""
    p = np.empty(14, dtype=zbuf.dtype)  # the working precision
    U = np.empty(3)
    Vr = np.empty(3)
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        x0 = min(box[a, 0], box[b, 0], box[c, 0])
        y0 = min(box[a, 1], box[b, 1], box[c, 1])
        x1 = -min(box[a, 2], box[b, 2], box[c, 2])
        y1 = -min(box[a, 3], box[b, 3], box[c, 3])
        if x0 > x1 or y0 > y1:
            continue  # no pixel centre of the image in the face's box
        for k in range(3):
            corner = faces[f, k]
            U[k] = u[corner] - x0
            Vr[k] = v[corner] - y0
        # Edge k (opposite vertex k) from vertex i to j: a + b x + c y, divided by twice the area.
        e0 = U[1] * Vr[2] - U[2] * Vr[1]
        e1 = U[2] * Vr[0] - U[0] * Vr[2]
        e2 = U[0] * Vr[1] - U[1] * Vr[0]
        area = e0 + e1 + e2
        if area == 0.0 or not abs(area) < math.inf:
            continue  # degenerate face or an undrawable vertex
        p[0], p[1], p[2] = e0 / area, e1 / area, e2 / area
        p[3], p[4], p[5] = (Vr[1] - Vr[2]) / area, (Vr[2] - Vr[0]) / area, (Vr[0] - Vr[1]) / area
        p[6], p[7], p[8] = (U[2] - U[1]) / area, (U[0] - U[2]) / area, (U[1] - U[0]) / area
        iz0, iz1, iz2 = inv_z[a], inv_z[b], inv_z[c]
        p[9], p[10], p[11], p[12], p[13] = iz0, iz1, iz2, iz1 - iz0, iz2 - iz0
        for ly in range(y1 - y0 + 1):
            y = coord[ly]
            row = (y0 + ly) * W + x0
            for lx in range(x1 - x0 + 1):
                x = coord[lx]
                l0 = p[0] + p[3] * x + p[6] * y
                l1 = p[1] + p[4] * x + p[7] * y
                l2 = p[2] + p[5] * x + p[8] * y
                if not (l0 >= 0 and l1 >= 0 and l2 >= 0):
                    continue
                d = p[9] + l1 * p[12] + l2 * p[13]
                pix = row + lx
                if d > zbuf[pix] or (d == zbuf[pix] and face_out[pix] < 0):
                    zbuf[pix] = d
                    face_out[pix] = f
                    bary_out[pix, 0] = l0 * p[9]
                    bary_out[pix, 1] = l1 * p[10]
                    bary_out[pix, 2] = l2 * p[11]


@numba.njit(cache=True, nogil=True)
def _finalise(face_out, bary_out, zbuf):
    """Normalise the weights of the visible points and turn 1/Z into depth (zero weights and
    +inf depth where no face is visible)."""
    one = np.ones(1, dtype=zbuf.dtype)[0]
    for pix in range(face_out.shape[0]):
        if face_out[pix] < 0:
            zbuf[pix] = math.inf
            bary_out[pix, 0], bary_out[pix, 1], bary_out[pix, 2] = 0, 0, 0
            continue
        q0, q1, q2 = bary_out[pix, 0], bary_out[pix, 1], bary_out[pix, 2]
        total = q0 + q1 + q2
        bary_out[pix, 0], bary_out[pix, 1], bary_out[pix, 2] = q0 / total, q1 / total, q2 / total
        zbuf[pix] = one / zbuf[pix]


@numba.njit(cache=True, nogil=True)
def _values_valid(verts, faces, K):
    """The value checks of `zoo.render.rasterize`: finite vertices and K, positive focal
    lengths, faces that index existing vertices."""
    V = verts.shape[1]
    bad = False
    for f in range(faces.shape[0]):
        for k in range(3):
            bad |= (faces[f, k] < 0) | (faces[f, k] >= V)
    for i in range(K.shape[0]):
        bad |= not (K[i, 0, 0] > 0 and K[i, 1, 1] > 0)
        for r in range(3):
            for c in range(3):
                bad |= not math.isfinite(K[i, r, c])
    for i in range(verts.shape[0]):
        for j in range(V):
            for k in range(3):
                bad |= not math.isfinite(verts[i, j, k])
    return not bad


@numba.njit(cache=True, nogil=True)
def _rasterize_batch(verts, faces, K, H, W, near, face_out, bary_out, zbuf):
    """Every image of the batch: projection, faces and their pixels, final pass; False (and
    nothing drawn) when a value check fails."""
    if not _values_valid(verts, faces, K):
        return False
    V = verts.shape[1]
    u, v, inv_z = np.empty(V), np.empty(V), np.empty(V)
    box = np.empty((V, 4), dtype=np.int32)
    coord = np.arange(max(H, W)).astype(zbuf.dtype)
    for i in range(verts.shape[0]):
        face_out[i, :] = -1
        zbuf[i, :] = 0  # 1/Z: 0 is background
        _project(verts[i], K[i], H, W, near, u, v, inv_z, box)
        _raster_image(faces, u, v, inv_z, box, W, coord, face_out[i], bary_out[i], zbuf[i])
        _finalise(face_out[i], bary_out[i], zbuf[i])
    return True


def rasterize_cpu(vertices: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, H: int, W: int, near: float,
                  work_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(face_index (B*H*W,) int64, bary (B*H*W, 3), depth (B*H*W,)) in `work_dtype`, for CPU
    inputs whose types and shapes `zoo.render.rasterize` checked; None when one of its value
    checks fails (the kernel makes them, before drawing anything)."""
    B = vertices.shape[0]
    verts = vertices.detach()
    if verts.dtype not in (torch.float32, torch.float64):
        verts = verts.float()  # exact: half / bfloat16 values are float32 values
    verts = verts.contiguous().numpy()
    # Filled in by the kernel, one image at a time (depth holds 1/Z until the last pass).
    face_index = torch.empty((B, H * W), dtype=torch.int64)
    bary = torch.empty((B, H * W, 3), dtype=work_dtype)
    depth = torch.empty((B, H * W), dtype=work_dtype)
    valid = _rasterize_batch(verts, faces.long().contiguous().numpy(), K.detach().to(torch.float64).contiguous().numpy(),
                             H, W, float(near), face_index.numpy(), bary.numpy(), depth.numpy())
    return (face_index.view(-1), bary.view(-1, 3), depth.view(-1)) if valid else None
