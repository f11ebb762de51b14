"""UV-space helpers shared by every body model: reading UV layouts and filling triangles.

Convention (the whole zoo): a UV coordinate is `(u, v)` in [0, 1] with u to the right and
v DOWN, so texel `(row, col) = (v * H, u * W)`. OBJ files (and most body-model assets) store v
UP; readers here flip it once (`v_down = 1 - v_obj`).

`rasterize_uv` is the UV-space triangle fill used for region masks and for anything that needs
"which face covers this texel": a texel belongs to a triangle when its centre
`((col + 0.5) / S, (row + 0.5) / S)` lies inside or on the triangle (barycentric coordinates all
>= -1e-6). Faces are processed in buckets of similar bounding-box size: every face of a bucket
tests only the texels of a `(h, w)` window anchored at its own bounding box, so the cost is
proportional to the covered area, never to faces x texels.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

_INSIDE_EPS = 1e-6


def obj_uv_layout(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read `vt` lines and the texture indices of `f` lines of an OBJ file.

    Returns `(vt (T, 2) float64 in the file's v-up convention, ft (F, 3) int64)`. Polygons
    are fanned into triangles (0, i, i + 1), the same order `obj_faces` uses, so face `k`
    of both readers is the same triangle.
    """
    vt, ft, _ = read_obj(path)
    if not len(vt):
        raise ValueError(f"{path} has no 'vt' lines: it holds no UV layout")
    if ft is None:
        raise ValueError(f"{path} has faces without texture indices (expected 'f v/vt ...')")
    return vt, ft


def obj_faces(path: str | os.PathLike) -> np.ndarray:
    """Vertex indices (F, 3) int64 of the triangles of an OBJ file (polygons fanned)."""
    return read_obj(path)[2]


def read_obj(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """`(vt (T, 2), ft (F, 3) or None when faces lack texture indices, fv (F, 3))`, 0-based,
    polygons fanned into triangles (0, i, i + 1); vt as stored (OBJ: v up)."""
    vt, ft, fv = [], [], []
    has_vt = True
    with open(Path(path), encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("vt "):
                vt.append([float(x) for x in line.split()[1:3]])
            elif line.startswith("f "):
                corners = [c.split("/") for c in line.split()[1:]]
                for i in range(1, len(corners) - 1):
                    tri = (corners[0], corners[i], corners[i + 1])
                    fv.append([int(c[0]) for c in tri])
                    if all(len(c) > 1 and c[1] for c in tri):
                        ft.append([int(c[1]) for c in tri])
                    else:
                        has_vt = False
    vt_arr = np.asarray(vt, dtype=np.float64).reshape(-1, 2)
    fv_arr = _obj_indices(np.asarray(fv, dtype=np.int64).reshape(-1, 3), "v", path)
    ft_arr = _obj_indices(np.asarray(ft, dtype=np.int64).reshape(-1, 3), "vt", path) if has_vt else None
    return vt_arr, ft_arr, fv_arr


def _obj_indices(idx: np.ndarray, kind: str, path) -> np.ndarray:
    if (idx < 0).any():
        raise ValueError(f"{path}: negative (relative) OBJ {kind} indices are not supported")
    if (idx == 0).any():
        raise ValueError(f"{path}: OBJ {kind} indices start at 1, found 0")
    return idx - 1


def corner_uvs_from_layout(vt: torch.Tensor | np.ndarray, ft: torch.Tensor | np.ndarray,
                           v_up: bool = True) -> torch.Tensor:
    """(F, 3, 2) float32 per-corner UVs in the zoo convention (v down) from `vt` / `ft`."""
    vt = torch.as_tensor(np.asarray(vt), dtype=torch.float64)
    ft = torch.as_tensor(np.asarray(ft), dtype=torch.int64)
    if vt.ndim != 2 or vt.shape[1] < 2:
        raise ValueError(f"vt must be (T, 2), got {tuple(vt.shape)}")
    if ft.ndim != 2 or ft.shape[1] != 3:
        raise ValueError(f"ft must be (F, 3) triangles, got {tuple(ft.shape)}")
    if len(ft) and (ft.min() < 0 or ft.max() >= len(vt)):
        raise ValueError(f"ft indexes vt out of range [0, {len(vt)}): min {int(ft.min())}, max {int(ft.max())}")
    uv = vt[:, :2].clone()
    if v_up:
        uv[:, 1] = 1.0 - uv[:, 1]
    return uv[ft].clamp(0.0, 1.0).float()


def rasterize_uv(corner_uvs: torch.Tensor, size: int, max_candidates: int = 1 << 18) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill triangles given in UV space into a `size x size` texel grid.

    Args:
        corner_uvs: (F, 3, 2) per-corner UVs in [0, 1], v down (zoo convention).
        size: texels per side.
        max_candidates: most (face, texel) candidate pairs tested in one batch (memory bound).

    Returns:
        face_index: (size, size) int64, the covering face per texel, -1 where none. Where
            faces overlap in UV space the largest face index wins (deterministic).
        barycentric: (size, size, 3) float32 barycentric coordinates of the texel centre
            in that face (zeros where none).
    """
    if corner_uvs.ndim != 3 or corner_uvs.shape[1:] != (3, 2):
        raise ValueError(f"corner_uvs must be (F, 3, 2), got {tuple(corner_uvs.shape)}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    device = corner_uvs.device
    face_index = torch.full((size * size,), -1, dtype=torch.int64, device=device)
    bary_out = torch.zeros(size * size, 3, dtype=torch.float32, device=device)
    if corner_uvs.shape[0] == 0:
        return face_index.view(size, size), bary_out.view(size, size, 3)
    # Texel space: texel (row, col) has its centre at (col + 0.5, row + 0.5).
    pts = corner_uvs.detach().double() * size
    lo = torch.ceil(pts.min(dim=1).values - 0.5).clamp(0, size - 1).long()  # first centre >= min
    hi = torch.floor(pts.max(dim=1).values - 0.5).clamp(-1, size - 1).long()
    extent = (hi - lo + 1).clamp(min=0)  # (F, 2) as (cols, rows)
    nonempty = (extent > 0).all(dim=1)
    longest = extent.max(dim=1).values
    bucket = torch.ceil(torch.log2(longest.clamp(min=1).double())).long()
    for b in torch.unique(bucket[nonempty]).tolist():
        faces = torch.nonzero(nonempty & (bucket == b)).squeeze(1)
        w = int(extent[faces, 0].max())
        h = int(extent[faces, 1].max())
        chunk = max(1, max_candidates // (w * h))
        dy, dx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        for start in range(0, len(faces), chunk):
            f = faces[start:start + chunk]
            cols = lo[f, 0, None] + dx.reshape(1, -1)
            rows = lo[f, 1, None] + dy.reshape(1, -1)
            inside_box = (cols <= hi[f, 0, None]) & (rows <= hi[f, 1, None])
            centre = torch.stack([cols + 0.5, rows + 0.5], dim=-1).double()  # (n, h*w, 2)
            bary = _barycentric(pts[f], centre)
            hit = inside_box & (bary >= -_INSIDE_EPS).all(dim=-1)
            if not hit.any():
                continue
            texel = (rows * size + cols)[hit]
            fid = f[:, None].expand_as(hit)[hit]
            face_index.scatter_reduce_(0, texel, fid, reduce="amax")
            won = face_index[texel] == fid
            bary_out[texel[won]] = bary[hit][won].float()
    return face_index.view(size, size), bary_out.view(size, size, 3)


def _barycentric(tri: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Barycentric coordinates (n, m, 3) of points p (n, m, 2) in triangles tri (n, 3, 2).

    Degenerate (zero-area) triangles give -inf, i.e. cover nothing."""
    a, b, c = tri[:, None, 0], tri[:, None, 1], tri[:, None, 2]
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
    ok = den.abs() > 1e-12
    safe = torch.where(ok, den, torch.ones_like(den))
    l1 = (v2[..., 0] * v1[..., 1] - v1[..., 0] * v2[..., 1]) / safe
    l2 = (v0[..., 0] * v2[..., 1] - v2[..., 0] * v0[..., 1]) / safe
    bary = torch.stack([1.0 - l1 - l2, l1, l2], dim=-1)
    return torch.where(ok[..., None], bary, torch.full_like(bary, -float("inf")))


def rasterize_uv_mask(corner_uvs: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) bool: texels covered by any of the triangles `corner_uvs` (F, 3, 2)."""
    return rasterize_uv(corner_uvs, size)[0] >= 0
