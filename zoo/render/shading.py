"""Per-pixel attributes on top of `rasterize`: UV render, normals, part labels, texture
sampling and compositing. Gradients flow through the attributes and the texture (the
barycentric weights are constants of the rasterisation)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.render.rasterize import Fragments


def interpolate(fragments: Fragments, face_attributes: torch.Tensor) -> torch.Tensor:
    """Barycentric interpolation of per-corner attributes.

    Args:
        fragments: output of `rasterize` (B, H, W).
        face_attributes: (F, 3, C) shared by the batch, or (B, F, 3, C).

    Returns:
        (B, H, W, C), zero on background pixels.
    """
    face_index, bary = fragments.face_index, fragments.bary
    B = face_index.shape[0]
    if face_attributes.dim() == 3:
        face_attributes = face_attributes.unsqueeze(0).expand(B, -1, -1, -1)
    if face_attributes.dim() != 4 or face_attributes.shape[0] != B or face_attributes.shape[2] != 3:
        raise ValueError(f"face_attributes must be (F, 3, C) or ({B}, F, 3, C), got {tuple(face_attributes.shape)}")
    n_faces = face_attributes.shape[1]
    flat = face_attributes.reshape(B * n_faces, 3, -1)
    mask = face_index >= 0
    offset = torch.arange(B, device=face_index.device).view(B, 1, 1) * n_faces
    idx = torch.where(mask, face_index + offset, torch.zeros_like(face_index))
    corners = flat[idx.reshape(-1)].view(*face_index.shape, 3, -1)  # (B, H, W, 3, C)
    values = (bary.to(corners.dtype).unsqueeze(-1) * corners).sum(-2)
    return values * mask.unsqueeze(-1).to(values.dtype)


def render_uv(fragments: Fragments, corner_uvs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel UV coordinates as a `grid_sample` grid.

    Args:
        corner_uvs: (F, 3, 2) per-corner UV in [0, 1], u right, v down.

    Returns:
        uv: (B, H, W, 2) in [-1, 1] (x = 2u - 1, y = 2v - 1; background -2, outside the grid),
        mask: (B, 1, H, W) float, 1 where the body is visible.
    """
    uv = interpolate(fragments, corner_uvs) * 2.0 - 1.0
    mask = fragments.mask
    uv = torch.where(mask.unsqueeze(-1), uv, torch.full_like(uv, -2.0))
    return uv, mask.unsqueeze(1).to(uv.dtype)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor | None = None,
                   mode: str = "bilinear") -> torch.Tensor:
    """Look the texture up at per-pixel UV (differentiable with respect to the texture).

    Args:
        texture: (B, C, Ht, Wt).
        uv: (B, H, W, 2) grid from `render_uv` (align_corners=False texel centres).
        mask: optional (B, 1, H, W); background set to zero.

    Returns:
        (B, C, H, W).
    """
    if texture.dim() != 4 or uv.dim() != 4 or uv.shape[-1] != 2 or texture.shape[0] != uv.shape[0]:
        raise ValueError(f"texture (B, C, Ht, Wt) and uv (B, H, W, 2) expected, got {tuple(texture.shape)} and {tuple(uv.shape)}")
    image = F.grid_sample(texture, uv.to(texture.dtype), mode=mode, padding_mode="border", align_corners=False)
    return image if mask is None else image * mask.to(image.dtype)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) area-weighted unit vertex normals of a batch of meshes."""
    v0, v1, v2 = (vertices[:, faces[:, k]] for k in range(3))
    face_n = torch.cross(v1 - v0, v2 - v0, dim=-1)  # length = 2 * area: area weighting
    normals = torch.zeros_like(vertices).index_add_(1, faces.reshape(-1), face_n.repeat_interleave(3, dim=1))
    return F.normalize(normals, dim=-1, eps=1e-12)


def render_normals(fragments: Fragments, vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) smooth unit normals of the visible surface, in the vertices' frame."""
    normals = vertex_normals(vertices, faces)
    per_corner = normals[:, faces]  # (B, F, 3, 3)
    n = F.normalize(interpolate(fragments, per_corner), dim=-1, eps=1e-12)
    return n.permute(0, 3, 1, 2)


def render_labels(fragments: Fragments, face_labels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) int64 per-pixel face label (e.g. body part), 0 on background."""
    labels = face_labels.to(fragments.face_index.device)[fragments.face_index.clamp(min=0)]
    return torch.where(fragments.mask, labels, torch.zeros_like(labels))


def render_over_image(texture: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The texture seen through a view's UV render (`render_uv`), over that view's real image:
    only the person's pixels change, so image losses compare the person alone."""
    return composite(sample_texture(texture, uv, mask), mask, image)


def composite(foreground: torch.Tensor, mask: torch.Tensor, background: torch.Tensor | float) -> torch.Tensor:
    """mask * foreground + (1 - mask) * background; background is an image or a constant."""
    return foreground * mask + (1.0 - mask) * background
