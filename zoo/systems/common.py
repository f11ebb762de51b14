"""Helpers shared by the zoo's LightningModules: frozen networks kept out of checkpoints, image
logging, metric tables written next to a run, and textured-mesh export (OBJ + turntable renders).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from zoo.render import composite, focal_to_fit, intrinsics, look_at_body, rasterize, render_uv, sample_texture, to_camera
from zoo.utils.images import grid, log_picture, save_png, to_uint8
from zoo.utils.runs import run_dir


class FrozenNetworks:
    """Mixin for LightningModules that hold frozen feature networks (ReID, LPIPS) outside their
    state dict: they are loaded from the pretrained cache, never trained, so checkpoints stay free
    of them; they still follow `.to(device)` / dtype changes and stay in eval mode."""

    def attach_frozen(self, name: str, module: nn.Module) -> nn.Module:
        module.eval().requires_grad_(False)
        self.__dict__.setdefault("_frozen_networks", {})[name] = module
        return module

    def frozen(self, name: str) -> nn.Module | None:
        return self.__dict__.get("_frozen_networks", {}).get(name)

    def _apply(self, fn, *args, **kwargs):
        result = super()._apply(fn, *args, **kwargs)
        for module in self.__dict__.get("_frozen_networks", {}).values():
            module._apply(fn, *args, **kwargs)
        return result



def image_grid(columns: Sequence[torch.Tensor], max_items: int = 4) -> torch.Tensor:
    """(H, W, 3) uint8 picture: one row per sample (at most `max_items`), one column per tensor of
    `columns`, each (B, 3 or 1, h, w) in [-1, 1]; sizes may differ between columns."""
    n = min(max_items, min(c.shape[0] for c in columns))
    return grid([[to_uint8(c[i]) for c in columns] for i in range(n)])


def log_image_grid(module: pl.LightningModule, key: str, columns: Sequence[torch.Tensor],
                   caption: str | None = None) -> None:
    """Send `image_grid(columns)` to the trainer's loggers (see `zoo.utils.images.log_picture`)."""
    trainer = module._trainer
    if trainer is None or not trainer.is_global_zero or not trainer.loggers:
        return
    takes_images = any(hasattr(logger, "log_image") for logger in trainer.loggers)
    fallback = None if takes_images else run_dir(trainer)  # loggers without images: PNG files
    log_picture(trainer.loggers, key, image_grid(columns), module.global_step, fallback, caption=caption)


def _format(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return "nan" if math.isnan(value) else f"{value:.4f}"


def write_metric_tables(folder: str | Path, stem: str, tables: Mapping[str, tuple[Sequence[str], Mapping[str, Mapping[str, float | str]]]],
                        notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write `<stem>.md` (one markdown table per entry) and `<stem>.csv` (table,metric,column,value).

    `tables` maps a title to (column names, {metric: {column: value}}); a missing cell is "-", a
    string cell (e.g. "unavailable: ...") is written as is."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines, rows = [], []
    for title, (columns, table) in tables.items():
        lines += [f"### {title}", "", "| metric | " + " | ".join(columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for metric, cells in table.items():
            lines.append(f"| {metric} | " + " | ".join(_format(cells[c]) if c in cells else "-" for c in columns) + " |")
            rows += [(title, metric, c, _format(cells[c])) for c in columns if c in cells]
        lines.append("")
    lines += [f"- {note}" for note in notes]
    md, csv_path = folder / f"{stem}.md", folder / f"{stem}.csv"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["table", "metric", "column", "value"])
        writer.writerows(rows)
    return md, csv_path


def write_textured_obj(folder: str | Path, vertices: torch.Tensor, faces: torch.Tensor, corner_uvs: torch.Tensor,
                       texture: torch.Tensor, name: str = "mesh") -> Path:
    """Write `<name>.obj`, `<name>.mtl` and `<name>.png` into `folder`.

    vertices (V, 3), faces (F, 3), corner_uvs (F, 3, 2) in the zoo convention (v down; the OBJ gets
    1 - v), texture (3, H, W) in [-1, 1]. Identical corner UVs share one `vt` line."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_png(to_uint8(texture), folder / f"{name}.png")
    (folder / f"{name}.mtl").write_text(
        f"newmtl {name}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {name}.png\n", encoding="utf-8")
    uv, index = torch.unique(corner_uvs.detach().reshape(-1, 2).cpu().float(), dim=0, return_inverse=True)
    index = index.view(-1, 3) + 1
    f = faces.detach().cpu().long() + 1
    lines = [f"mtllib {name}.mtl", f"o {name}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices.detach().cpu().tolist()]
    lines += [f"vt {u:.6f} {1.0 - v:.6f}" for u, v in uv.tolist()]
    lines.append(f"usemtl {name}")
    lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}" for (a, b, c), (ta, tb, tc) in zip(f.tolist(), index.tolist())]
    path = folder / f"{name}.obj"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
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
