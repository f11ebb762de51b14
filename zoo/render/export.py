"""Textured-mesh export: OBJ + MTL + PNG files and turntable renders of a body-frame mesh.

Used by the prediction writer (`zoo.callbacks.TextureWriter`) and by scripts; plain functions of
tensors and a body model (any `zoo.body.BodyModel`: `template_vertices`, `faces`, `corner_uvs`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from zoo.render.camera import focal_to_fit, intrinsics, look_at_body, to_camera
from zoo.render.rasterize import rasterize
from zoo.render.shading import composite, render_uv, sample_texture
from zoo.utils.files import atomic_file
from zoo.utils.images import save_png, to_uint8


def write_textured_obj(folder: str | Path, vertices: torch.Tensor, faces: torch.Tensor, corner_uvs: torch.Tensor,
                       texture: torch.Tensor, name: str = "mesh") -> Path:
    """Write `<name>.obj`, `<name>.mtl` and `<name>.png` into `folder`.

    vertices (V, 3), faces (F, 3), corner_uvs (F, 3, 2) in the zoo convention (v down; the OBJ gets
    1 - v), texture (3, H, W) in [-1, 1]. Identical corner UVs share one `vt` line."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_png(to_uint8(texture), folder / f"{name}.png")
    with atomic_file(folder / f"{name}.mtl") as temporary:
        temporary.write_text(f"newmtl {name}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {name}.png\n",
                             encoding="utf-8")
    uv, index = torch.unique(corner_uvs.detach().reshape(-1, 2).cpu().float(), dim=0, return_inverse=True)
    index = index.view(-1, 3) + 1
    f = faces.detach().cpu().long() + 1
    lines = [f"mtllib {name}.mtl", f"o {name}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices.detach().cpu().tolist()]
    lines += [f"vt {u:.6f} {1.0 - v:.6f}" for u, v in uv.tolist()]
    lines.append(f"usemtl {name}")
    lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}" for (a, b, c), (ta, tb, tc) in zip(f.tolist(), index.tolist())]
    path = folder / f"{name}.obj"
    with atomic_file(path) as temporary:  # a kill never leaves a half-written mesh
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@torch.no_grad()
def render_turntable(vertices: torch.Tensor, faces: torch.Tensor, corner_uvs: torch.Tensor, texture: torch.Tensor,
                     yaws: Sequence[float] = (0.0, 90.0, 180.0), image_size: Sequence[int] = (256, 128),
                     distance: float = 6.0, background: float = 1.0) -> torch.Tensor:
    """Render a textured body-frame mesh (V, 3) from each yaw (0 front, 90 its left side, 180 back).

    texture (3, T, T) in [-1, 1]. Returns (len(yaws), 3, H, W) in [-1, 1] over a constant background."""
    H, W = int(image_size[0]), int(image_size[1])
    n = len(yaws)
    y = vertices[:, 1]
    centre = torch.tensor([[0.0, float(y.max() + y.min()) / 2, 0.0]]).expand(n, 3)
    R, t = look_at_body(torch.tensor(list(yaws)), torch.zeros(n), torch.full((n,), distance), target=centre)
    cam = to_camera(vertices.detach().float().cpu()[None].expand(n, -1, -1), R, t)
    K = intrinsics(focal_to_fit(float(y.max() - y.min()), H, distance), (H, W), batch_size=n)
    frags = rasterize(cam, faces.cpu(), K, (H, W))
    uv, mask = render_uv(frags, corner_uvs.float().cpu())
    person = sample_texture(texture.detach().float().cpu()[None].expand(n, -1, -1, -1), uv, mask)
    return composite(person, mask, background)


def export_textures(folder: str | Path, textures: torch.Tensor, view_ids: Sequence[int], person_ids: Sequence[int],
                    body, seen: set, render_size: Sequence[int] = (256, 128)) -> list[str]:
    """Write `textures/view_<id>.png` for every texture (B, 3, T, T) in [-1, 1] and, for each person
    not in `seen` (updated), `person_<id>/mesh.{obj,mtl,png}` on `body`'s template mesh (any
    `zoo.body.BodyModel`) plus its front / side / back renders; `body=None` writes textures only."""
    folder, written = Path(folder), []
    for texture, view, person in zip(textures, view_ids, person_ids):
        written.append(str(save_png(to_uint8(texture), folder / "textures" / f"view_{int(view):05d}.png")))
        if body is None or person in seen:
            continue
        seen.add(person)
        target = folder / f"person_{int(person):05d}"
        written.append(str(write_textured_obj(target, body.template_vertices, body.faces, body.corner_uvs, texture)))
        renders = render_turntable(body.template_vertices, body.faces, body.corner_uvs, texture, image_size=render_size)
        for side, picture in zip(("front", "side", "back"), renders):
            written.append(str(save_png(to_uint8(picture), target / f"render_{side}.png")))
    return written
