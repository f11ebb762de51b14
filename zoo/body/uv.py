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


def rasterize_uv(corner_uvs: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which face covers each texel centre of a `size` x `size` atlas, and where.

    A thin view of `zoo.render.rasterize_uv_atlas` (the exact screen rasteriser run on the UV
    layout): returns face_index (size, size) int64 (-1 = no face) and barycentrics (size, size, 3).
    """
    from zoo.render.uv_space import rasterize_uv_atlas  # render imports nothing from body

    frags = rasterize_uv_atlas(corner_uvs, size)
    return frags.face_index[0], frags.bary[0]


def rasterize_uv_mask(corner_uvs: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) bool: texels covered by any of the triangles `corner_uvs` (F, 3, 2)."""
    return rasterize_uv(corner_uvs, size)[0] >= 0
