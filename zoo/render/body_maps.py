"""UV-space maps of a body model's atlas: rest-pose positions, part labels, regions.

These drive the procedural textures of the synthetic people (garments are defined on the
rest-pose surface, so patterns run continuously across UV seams) and give the Texformer query
its colour code (rest-pose positions normalised to [-1, 1] and written into each texel).
"""
from __future__ import annotations

import torch

from zoo.render.shading import interpolate
from zoo.render.uv_space import rasterize_uv_atlas


def body_uv_maps(body, size: int) -> dict[str, torch.Tensor]:
    """UV maps of `body` (any `zoo.body.BodyModel`) at `size` x `size`.

    Returns a dict of:
        position: (3, size, size) rest-pose surface position (metres, body frame), 0 off-atlas.
        position_code: (3, size, size) the same normalised to [-1, 1] per axis over the
            body's bounding box (the Texformer query colour code), 0 off-atlas.
        normal: (3, size, size) rest-pose face normal.
        mask: (1, size, size) 1 on the atlas.
        parts: (size, size) int64 coarse part label 1..7, 0 off-atlas.
        parts_fine: (size, size) int64 fine part index, -1 off-atlas.
        face_hands: (size, size) bool, the face + hands region (face-structure loss).
    """
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    faces = body.faces
    corners = body.template_vertices[faces]  # (F, 3, 3)
    frags = rasterize_uv_atlas(body.corner_uvs, size)
    hit = frags.mask[0]
    position = interpolate(frags, corners.float())[0].permute(2, 0, 1)
    lo, hi = body.template_vertices.min(0).values, body.template_vertices.max(0).values
    code = ((position - lo[:, None, None]) / (hi - lo)[:, None, None] * 2 - 1) * hit
    face_n = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    face_n = torch.nn.functional.normalize(face_n, dim=-1)
    fidx = frags.face_index[0].clamp(min=0)
    normal = face_n[fidx].permute(2, 0, 1) * hit
    parts = torch.where(hit, body.face_parts[fidx], torch.zeros_like(fidx))
    parts_fine = torch.where(hit, body.face_parts_fine[fidx], torch.full_like(fidx, -1))
    region = body.region_faces("face_hands")
    face_hands = hit & region[fidx]
    return {
        "position": position, "position_code": code, "normal": normal, "mask": hit[None].float(),
        "parts": parts, "parts_fine": parts_fine, "face_hands": face_hands,
    }
