"""Synthetic photos of the Anny body with known truth (for measuring preprocessing and the fit).

A person = Anny shape + pose + a procedural texture (the synthetic people's painter) rendered
with a pinhole camera over a procedural background. The truth kept: camera-space vertices,
intrinsics, the person mask, the body-frame pose / betas and the texture.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zoo.datamodules.datasets.procedural import background, paint_texture
from zoo.render import (
    composite,
    dilate_texture,
    look_at_body,
    rasterize,
    render_uv,
    sample_texture,
    to_camera,
)
from zoo.render.body_maps import body_uv_maps


@dataclass
class SyntheticPhoto:
    """image (H, W, 3) uint8; mask (H, W) bool; K (3, 3); R (3, 3), t (3,) body -> camera;
    vertices (V, 3) camera space; joints (J, 3) camera space; betas (1, B); pose (1, P);
    texture (3, T, T) in [0, 1]."""

    image: np.ndarray
    mask: np.ndarray
    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    vertices: torch.Tensor
    joints: torch.Tensor
    betas: torch.Tensor
    pose: torch.Tensor
    texture: torch.Tensor


def random_person(body, seed: int, texture_size: int = 256, stride_deg: float | None = None):
    """(betas (1, B), pose (1, P), texture (3, T, T) in [0, 1]) of one random synthetic identity."""
    g = torch.Generator().manual_seed(seed)
    maps = body_uv_maps(body, texture_size)
    texture, _ = paint_texture(maps, g)
    texture = dilate_texture(texture, maps["mask"])
    sliders = {n: 0.5 + 0.6 * (torch.rand((), generator=g).item() - 0.5) for n in body.phenotype_labels}
    betas = body.betas_from_phenotype(**sliders)
    u = lambda: float(torch.rand((), generator=g))
    stride = 25 * u() if stride_deg is None else stride_deg
    pose = body.pose_from_controls(1, walk_phase_deg=360 * u(), stride_deg=stride, arm_swing_deg=stride * 0.8,
                                   arm_abduction_deg=10 + 20 * u(), elbow_bend_deg=10 + 30 * u(),
                                   head_turn_deg=20 * (u() - 0.5))
    return betas, pose, texture


def render_photo(body, betas: torch.Tensor, pose: torch.Tensor, texture: torch.Tensor, size: tuple[int, int] = (512, 512),
                 yaw_deg: float = 0.0, pitch_deg: float = 0.0, fill: float = 0.8, distance: float = 5.0,
                 offset: tuple[float, float] = (0.0, 0.0), seed: int = 0, bg: np.ndarray | None = None) -> SyntheticPhoto:
    """Render one person into a photo. `fill`: body height / image height; `offset`: the body's
    centre moved by this fraction of the image (x, y); `bg`: an (H, W, 3) uint8 background."""
    H, W = size
    with torch.no_grad():
        out = body(betas=betas, pose=pose)
        y = out.vertices[0, :, 1]
        centre = torch.tensor([[0.0, float(y.max() + y.min()) / 2, 0.0]])
        R, t = look_at_body(torch.tensor([yaw_deg]), torch.tensor([pitch_deg]), torch.tensor([distance]), centre)
        focal = fill * H * distance / float(y.max() - y.min())
        cx, cy = (W - 1) / 2 - offset[0] * W, (H - 1) / 2 - offset[1] * H
        K = torch.tensor([[[focal, 0, cx], [0, focal, cy], [0, 0, 1.0]]])
        cam = to_camera(out.vertices, R, t)
        joints = to_camera(out.joints, R, t)
        frags = rasterize(cam, body.faces, K, (H, W))
        uv, mask = render_uv(frags, body.corner_uvs)
        person = sample_texture(texture[None].float(), uv, mask)
        back = (background(torch.Generator().manual_seed(seed), (H, W))[None] if bg is None
                else torch.from_numpy(bg).permute(2, 0, 1)[None].float() / 255)
        image = composite(person, mask, back)
    pixels = (image[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy()
    return SyntheticPhoto(pixels, mask[0, 0].bool().numpy(), K[0], R[0], t[0], cam[0], joints[0], betas, pose, texture)


__all__ = ["SyntheticPhoto", "random_person", "render_photo"]
